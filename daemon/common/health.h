/* Health for load balancers and orchestrators (design §6, issue #14): `GET /livez` and
 * `GET /readyz[/GROUP]` on the metrics listener, judged from a status snapshot. Pure: no I/O,
 * tests/unit/test_health.c drives it.
 *
 * - live: the master answers (it is the one rendering this) and the loop of every ready worker
 *   ran within WD_HEALTH_STALE_NS (its heartbeat in the scoreboard, written every 250 ms): a
 *   frozen worker fails it, a crashing app does not (restarting the host would not help).
 * - ready: every group asked about (all, or the one named) is neither stopped nor draining
 *   (`wsgictl drain`), has at least one worker that loaded its app and accepts, and is not
 *   jammed: a request waiting for a thread longer than readiness-queue-wait while no such worker
 *   has a thread free (the app hangs or is swamped: a load balancer should send elsewhere). */
#ifndef WD_COMMON_HEALTH_H
#define WD_COMMON_HEALTH_H

#include "status.h"

#include <stddef.h>
#include <stdint.h>

/* The loop writes its heartbeat every 250 ms and never blocks by design: 2 s without one is a
 * frozen worker (the master's watchdog kills a stopped one after 3 s, a stuck one after
 * deadlock-timeout). */
#define WD_HEALTH_STALE_NS (2ull * 1000 * 1000 * 1000)

typedef enum wd_health_kind { WD_HEALTH_LIVE, WD_HEALTH_READY } wd_health_kind_t;

/* The HTTP status (200, 503, or 404 for a group that does not exist) and, in body, "ok\n" or one
 * line per reason. group (glen bytes, not NUL-terminated) is NULL for all groups; now_ns is
 * CLOCK_MONOTONIC, as the heartbeats are. */
int wd_health_eval(const wd_status_t *st, uint64_t now_ns, wd_health_kind_t kind, const char *group,
                   size_t glen, char *body, size_t cap);

/* The answer to a HAProxy agent check (the `agent-check:` listener), one line:
 * - "up ready N%": the group serves; N is the share of its threads free now (idle, with no request
 *   waiting for them), at least 1%, which HAProxy applies to the server's weight ("ready" ends a
 *   drain the agent asked for before);
 * - "drain #REASON": readiness fails but the workers still serve (the group drains, or is jammed
 *   past readiness-queue-wait): no new sessions, the open ones go on;
 * - "down #REASON": the group cannot serve (stopped, no worker has its app loaded), or there is
 *   no such group.
 * group (glen bytes) NULL: every group, the worst of their states and the lowest share. Returns
 * the line's length (it ends with '\n'; cut to cap - 1 bytes at most). */
size_t wd_health_agent(const wd_status_t *st, uint64_t now_ns, const char *group, size_t glen,
                       char *out, size_t cap);

#endif
