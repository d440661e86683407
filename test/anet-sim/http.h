/*-------------------------------------------------------------------------
 *
 * http.h
 *		libmicrohttpd daemons for the API and control endpoints.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANET_SIM_HTTP_H
#define ANET_SIM_HTTP_H

#include <microhttpd.h>
#include <netinet/in.h>

extern struct MHD_Daemon *http_start_api(struct in_addr addr, int port,
										 const char *cert, const char *key,
										 int threads);
extern struct MHD_Daemon *http_start_control(struct in_addr addr, int port);
extern int	http_port(struct MHD_Daemon *d);
extern void http_timer_start(void);
extern void http_timer_stop(void);
extern void http_release_held(void);
extern int	http_peak_suspended(void);

/* control.c */
extern enum MHD_Result control_handler(void *cls, struct MHD_Connection *c,
									   const char *url, const char *method,
									   const char *version,
									   const char *upload, size_t *upload_size,
									   void **con_cls);

extern void control_completed(void *cls, struct MHD_Connection *c,
							  void **con_cls,
							  enum MHD_RequestTerminationCode toe);

#endif
