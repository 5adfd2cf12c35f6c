/* Names shared by the files of the connection module only (conn.c: lifecycle, parsing, dispatch,
 * writing; conn_body.c: request bodies; conn_log.c: the access log). Loop thread. */
#ifndef WD_DAEMON_CONN_INT_H
#define WD_DAEMON_CONN_INT_H

#include "conn.h"

#include <stddef.h>
#include <stdint.h>

/* The peer's address for messages ("unix" on a unix socket). */
const char *wd__conn_peer(const wd_conn_t *c);

/* Appends body bytes (413 past limit-request-body, 500 when the temp file fails: c->body_error);
 * 0 or -1. */
int wd__conn_body_append(wd_conn_t *c, const char *p, size_t n);
/* The body is done with: its temp file goes back to the worker, a large buffer is freed. */
void wd__conn_body_clear(wd_conn_t *c);

/* How long the dispatched request ran: to its finish, which the loop may learn later. */
uint64_t wd__conn_ran_ns(const wd_conn_t *c);
/* Writes the request's access log line (when the access log is on). */
void wd__conn_access_log(wd_conn_t *c, int status, uint64_t bytes);

#endif
