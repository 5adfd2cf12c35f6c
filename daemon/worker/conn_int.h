/* Names shared by the files of the connection module only (conn.c: lifecycle, reading, dispatch,
 * writing; conn_parse.c: uwsgi and HTTP requests; conn_fcgi.c: FastCGI records; conn_answer.c:
 * the answers the loop makes itself; conn_timeout.c: the timeouts; conn_body.c: request bodies;
 * conn_log.c: the access log; conn_park.c: a connection its Python thread keeps). Loop thread, or
 * a Python thread holding the loop lock for the connection it keeps (conn_park.c). */
#ifndef WD_DAEMON_CONN_INT_H
#define WD_DAEMON_CONN_INT_H

#include "conn.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* conn.c */

/* An HTTP connection's parser, or NULL (another protocol; or an idle connection's, given back). */
static inline const wd_http_t *wd__conn_http(const wd_conn_t *c)
{
    return c->proto == WD_REQ_HTTP ? c->http : NULL;
}

/* The peer's address for messages ("unix" on a unix socket). */
const char *wd__conn_peer(const wd_conn_t *c);
/* What the connection's poll watches (UV_READABLE, UV_WRITABLE, UV_DISCONNECT; 0: nothing). */
void wd__conn_set_events(wd_conn_t *c, int events);
/* Sends what the response buffer holds; completes the response when it is all out. */
void wd__conn_send(wd_conn_t *c);
/* The client is gone or stuck: drops the response (the connection closes once the app thread has
 * let go of the request). */
void wd__conn_abandon(wd_conn_t *c);
/* Reads what the connection has and goes on with it (parse, dispatch, answer). */
void wd__conn_read(wd_conn_t *c);

/* conn_park.c */

/* out.h's park callback: the Python thread that finished the response (out->lock held) may keep
 * the connection; 1 when it does (the loop lock is then held), else 0, or -1 when its end must
 * wake the loop. */
int wd__conn_park(wd_out_t *out, void *data, void *thread, int whole);
/* out.h's parked callback, after a 1 (the loop lock held): completes the response, then parks
 * the thread on the connection or hands the connection back to the loop. */
void wd__conn_parked(wd_out_t *out, void *data, void *thread);

/* conn_answer.c */

/* Finishes the response from the loop thread when no Python thread owns it (none took the
 * request, or none will): no wake-up. */
void wd__conn_finish_here(wd_conn_t *c, int keep_alive);
/* Answers a dispatched request that no Python thread took, with a canned response of status. */
void wd__conn_answer(wd_conn_t *c, int status);
/* Answers an error before any request was dispatched (a canned response, or one with text as its
 * body), and closes the connection after it (lingering: wd__conn_linger). */
void wd__conn_fail(wd_conn_t *c, int status);
void wd__conn_fail_text(wd_conn_t *c, int status, const char *text);
/* After an error answer: stops sending, drops what the client still sends (wd__conn_drain, on
 * each read event) and closes when it stops or after a moment. */
void wd__conn_linger(wd_conn_t *c);
void wd__conn_drain(wd_conn_t *c);

/* conn_parse.c */

/* The request on c so far, uwsgi or HTTP: 1 when it is complete, 0 when more bytes are needed, -1
 * when answered (refused: logged, and the connection failed or closed). */
int wd__conn_uwsgi_process(wd_conn_t *c);
int wd__conn_http_process(wd_conn_t *c);
/* The HTTP parser refused the request: logged and answered. */
void wd__conn_http_failed(wd_conn_t *c);

/* conn_fcgi.c */

/* Takes the FastCGI records in c->buf: 1 when a request is complete (dispatch it), 0 when more
 * bytes are needed, -1 when the connection was answered or closed. */
int wd__conn_fcgi_process(wd_conn_t *c);
/* n bytes of the STDIN record being taken were read straight into the body's buffer. */
void wd__conn_fcgi_stdin_read(wd_conn_t *c, size_t n);
/* The content of the STDIN record being taken was read whole, and n bytes after it, at p: its
 * padding and the next record's header, read where the next record was guessed to have the same
 * content length and padding. 1 when it does (a STDIN record of this request, within its
 * CONTENT_LENGTH): that record is being taken now, its content read next; 0 when not, and
 * nothing changed (the bytes go through the read buffer). */
int wd__conn_fcgi_stdin_guessed(wd_conn_t *c, const char *p, size_t n);
/* While the app runs: reads what the buffer has room for and looks for the request's end from
 * the proxy (an ABORT_REQUEST of its id, the connection closed, a malformed record). 1 when the
 * request is aborted, else 0 (the records read wait for the next request). A unix socket's
 * peer that only shut its sending side down (its FIN, and no hang-up) has not aborted: it reads
 * the answer, and peer_shut is set. */
int wd__conn_fcgi_watch(wd_conn_t *c);
/* Whether the peer closed both ways (conn.c): a unix socket's hang-up, or a TCP reset. */
int wd__conn_peer_gone(const wd_conn_t *c);
/* A request just complete, not dispatched yet: 1 when the records read after it end it (its
 * ABORT_REQUEST came in the same read as its last STDIN record, or a malformed record did):
 * logged; close the connection, as for an abort while the request waits in the queue. */
int wd__conn_fcgi_aborted_early(wd_conn_t *c);
/* Whether bytes the client sent wait in the socket, unread. */
int wd__conn_bytes_waiting(const wd_conn_t *c);
/* A stopping worker's idle kept connection to a running worker of the group: 1 = done, closed. */
int wd__conn_hand_over(wd_conn_t *c);
/* How long a connection may stay idle between requests: keepalive-timeout, or WD_STOP_IDLE_S
 * once the worker stops. */
double wd__conn_idle_timeout(const wd_conns_t *cs);
/* Whether answers the loop made itself wait for the socket (send_now): no record is taken and
 * nothing read until they are sent. */
int wd__conn_fcgi_unsent(const wd_conn_t *c);
/* At POLLOUT: sends them; 0 when all went (the records after them can be taken), 1 when some are
 * still waiting, -1 when the connection was closed. */
int wd__conn_fcgi_send_unsent(wd_conn_t *c);
/* The connection is freed: what it kept. */
void wd__conn_fcgi_free(wd_conn_t *c);
/* After a response: the connection is ready for the next BEGIN_REQUEST. */
void wd__conn_fcgi_reset(wd_conn_t *c);
/* Between requests: gives back PARAMS' buffer if it grew past the usual size (whole: at any
 * size); returns the bytes given back. */
size_t wd__conn_fcgi_idle(wd_conn_t *c, int whole);

/* conn_timeout.c */

/* The connection's timer fired: header-, body- or send-timeout, or the end of a linger, by state.
 */
void wd__conn_timer_cb(uv_timer_t *t);
/* (Re)starts the connection's one timer; what it means follows from the state when it fires. */
static inline void wd__conn_timer(wd_conn_t *c, double secs)
{
    if (secs > 0)
        uv_timer_start(&c->timer, wd__conn_timer_cb, (uint64_t)(secs * 1000) + 1, 0);
    else
        uv_timer_stop(&c->timer);
}

/* conn_body.c */

/* Appends body bytes (413 past limit-request-body, 500 when the temp file fails: c->body_error);
 * 0 or -1. */
int wd__conn_body_append(wd_conn_t *c, const char *p, size_t n);
/* Where the next bytes of a body of known length can be read straight into its memory buffer,
 * and (*room) how many may go there, never past the body's end; NULL when they go through the
 * read buffer (see conn_body.c). Bytes read there are then given to wd__conn_body_append (or
 * the parser that calls it) in place, which copies nothing. */
char *wd__conn_body_direct(wd_conn_t *c, size_t *room);
/* After wd__conn_body_direct: how many bytes from where it said fit in the body's buffer and
 * within the body announced (room or more: a FastCGI read may guess at the records after). */
size_t wd__conn_body_direct_space(const wd_conn_t *c);
/* A body announced (Content-Length, CONTENT_LENGTH) over limit-request-body: answered 413, 1;
 * else 0. */
int wd__conn_body_refused(wd_conn_t *c, uint64_t announced);
/* The body is done with: its temp file goes back to the worker, a large buffer is freed. */
void wd__conn_body_clear(wd_conn_t *c);
/* Frees the body buffer (the connection is freed). */
void wd__conn_body_free(wd_conn_t *c);
/* Between requests: gives back a body buffer larger than a small body's (whole: any); returns
 * the bytes given back. */
size_t wd__conn_body_idle(wd_conn_t *c, int whole);
/* A keep-alive connection idle for a while (wd_conns_tick): gives back every buffer it keeps for
 * its next request (they are made again when it comes). Returns the bytes given back. */
size_t wd__conn_trim_idle(wd_conn_t *c);

/* conn_log.c */

/* How long the dispatched request ran: to its finish, which the loop may learn later. */
uint64_t wd__conn_ran_ns(const wd_conn_t *c);
/* Writes the request's access log line (when the access log is on), once its thread is done
 * with it or it had none: bytes, all those its client got. */
void wd__conn_access_log(wd_conn_t *c, int status, uint64_t bytes);
/* ... and of a request abandoned to its stuck thread (conn_timeout.c), which may still write to
 * it: seen, its response buffer as it was aborted; bytes, all those its client got. */
void wd__conn_access_log_abandoned(wd_conn_t *c, const wd_out_seen_t *seen, uint64_t bytes);

#endif
