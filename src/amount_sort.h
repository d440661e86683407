/*-------------------------------------------------------------------------
 *
 * amount_sort.h
 *	  ORDER BY of a lone pay_amount column as a sort of 64-bit keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_AMOUNT_SORT_H
#define PAYMENTS_AMOUNT_SORT_H

/* Its GUC, its plan node's methods and its planner hook (_PG_init). */
extern void amount_sort_init(void);

#endif
