/*-------------------------------------------------------------------------
 *
 * audit_horizon.h
 *	  The audit ids transactions still running hold: what sealing may cover.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_AUDIT_HORIZON_H
#define PAYMENTS_AUDIT_HORIZON_H

#include "datatype/timestamp.h"

/* shared memory: the size to reserve, and attaching (under AddinShmemInitLock) */
extern Size audit_horizon_shmem_size(void);
extern void audit_horizon_shmem_init(void);

/* around taking an audit id from the sequence */
extern void audit_horizon_taking(int64 merchant);
extern void audit_horizon_took(int64 audit_id);

/* before PREPARE TRANSACTION hands the transaction over */
extern void audit_horizon_preparing(void);

/* at the end of the transaction (commit, abort, prepare) */
extern void audit_horizon_release(void);

/*
 * The highest audit id below which no transaction still running can hold
 * one of merchant (0: of any), given the sequence's last value; false when a prepared transaction
 * not noted (made before the server started) is still in progress at
 * deadline.
 */
extern bool audit_horizon(int64 last_value, TimestampTz deadline, int64 merchant, int64 *horizon);

#endif
