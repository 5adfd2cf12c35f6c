/* The control socket of the master (`control:` in the config): a unix stream socket, mode 0600,
 * that wsgictl talks to. Requests and replies are one JSON object per line (jansson):
 *     {"cmd": "status", "group": null}           -> {"ok": true, "status": {...}}
 *     {"cmd": "restart", "group": "site1"}       -> {"ok": true, "replaced": [...]} once done
 *     {"cmd": "restart", "all": true}
 *     {"cmd": "reload"} {"cmd": "stop", "group": G or null} {"cmd": "start", "group": G}
 *     {"cmd": "reopen-logs"}
 * and on failure {"ok": false, "error": "..."}. A "group" that is neither a string nor null, and a
 * stop with both a group and "all": true, are refused. A peer whose uid is neither 0 nor ours is
 * refused.
 *
 * This module owns the socket and the connections; what a command does is up to the master
 * (wd_master_control in master.c), which may answer at once or later: a long operation (a rolling
 * restart) keeps its wd_control_req_t and answers when it is finished, without blocking the loop.
 * A client that goes away meanwhile only makes the answer go nowhere. */
#ifndef WD_DAEMON_CONTROL_H
#define WD_DAEMON_CONTROL_H

#include <jansson.h>
#include <uv.h>

typedef struct wd_control wd_control_t;
typedef struct wd_control_req wd_control_req_t;

/* Called for every request line that is a JSON object; must eventually call wd_control_reply
 * exactly once for req. */
typedef void (*wd_control_cb)(void *data, json_t *request, wd_control_req_t *req);

/* Binds path (a stale socket file is replaced; one a live process answers on is an error),
 * mode 0600, and accepts on loop. Returns 0 or -errno, having logged the error. */
int wd_control_open(wd_control_t **out, uv_loop_t *loop, const char *path, wd_control_cb cb,
                    void *data);

/* Closes the listener and every client, and removes the socket file (handles are closed
 * asynchronously: let the loop run once more). */
void wd_control_close(wd_control_t *c);

/* Sends reply (a JSON object; the reference is stolen) and forgets req. */
void wd_control_reply(wd_control_req_t *req, json_t *reply);

/* {"ok": false, "error": MESSAGE}, sent with wd_control_reply. */
void wd_control_reply_error(wd_control_req_t *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
