/* The optional `metrics: HOST:PORT` listener of the master: a tiny HTTP/1.1 server in the master's
 * libuv loop. `GET /metrics` answers the Prometheus text format 0.0.4, `GET /status` the JSON of
 * `wsgictl status --json`, `GET /livez` and `GET /readyz[/GROUP]` 200 or 503 for load balancers
 * and orchestrators (common/health.h); any other path 404, a malformed or oversized request 400.
 * Every connection is closed after its one response; nothing here ever blocks the loop. */
#ifndef WD_DAEMON_METRICS_H
#define WD_DAEMON_METRICS_H

#include "status.h"

#include <uv.h>

/* Fills *st with a snapshot of the daemon, as wsgictl status would show it. Called on the loop
 * thread; what *st points to must stay valid until the release callback (or, when there is none,
 * until control returns to the loop). In the master these are two one-line wrappers:
 *     static void metrics_snapshot(void *data, wd_status_t *st) { wd_master_status(data, st); }
 *     static void metrics_release(void *data, wd_status_t *st) { wd_master_status_release(st); } */
typedef void (*wd_metrics_snapshot_fn)(void *data, wd_status_t *st);
/* Called once the snapshot has been rendered; may be NULL. */
typedef void (*wd_metrics_release_fn)(void *data, wd_status_t *st);

typedef struct wd_metrics {
    uv_loop_t *loop;
    uv_tcp_t server;
    int running; /* 1 between a successful start and stop */
    int agent;   /* the agent-check listener (wd_metrics_start_agent) */
    int health;  /* the health listener (wd_metrics_start_health): /livez and /readyz alone */
    wd_metrics_snapshot_fn snapshot;
    wd_metrics_release_fn release;
    void *data;
    void *conns;    /* open client connections (internal list) */
    char addr[128]; /* "HOST:PORT", for messages */
} wd_metrics_t;

/* Binds HOST:PORT (a numeric IPv4 / IPv6 address or a name) and starts accepting on loop.
 * The caller owns *m; it must stay valid until the loop has run the close callbacks after
 * wd_metrics_stop. Returns 0 or -errno, having logged the error. */
int wd_metrics_start(wd_metrics_t *m, uv_loop_t *loop, const char *host, int port,
                     wd_metrics_snapshot_fn snapshot, wd_metrics_release_fn release, void *data);

/* The same for the `agent-check:` listener, HAProxy's agent check: a connection may send a line
 * naming a group (agent-send "site1\n") as it opens; after it, or after 200 ms without one (for
 * every group), it gets one line (wd_health_agent) and is closed. */
int wd_metrics_start_agent(wd_metrics_t *m, uv_loop_t *loop, const char *host, int port,
                           wd_metrics_snapshot_fn snapshot, wd_metrics_release_fn release,
                           void *data);

/* The same for the `health:` listener: GET /livez and /readyz[/GROUP] as on the metrics listener,
 * 404 for /metrics and /status (what the workers do, their pids and errors stay off an address
 * that load balancers and orchestrators reach). */
int wd_metrics_start_health(wd_metrics_t *m, uv_loop_t *loop, const char *host, int port,
                            wd_metrics_snapshot_fn snapshot, wd_metrics_release_fn release,
                            void *data);

/* Closes the listener and every open client connection (the handles are closed asynchronously:
 * let the loop run once more). Safe to call when not running. */
void wd_metrics_stop(wd_metrics_t *m);

/* The request side, pure (tests/unit/test_metrics.c): whether buf[0, len) holds a whole head (it
 * ends at the first empty line, "\r\n\r\n" or "\n\n"), and what a whole head asks for. */
int wd_metrics_head_complete(const char *buf, size_t len);

typedef enum wd_metrics_route {
    WD_METRICS_BAD = 0,    /* not "METHOD SP /TARGET SP HTTP/1.d": 400 */
    WD_METRICS_METHOD,     /* not GET or HEAD: 405 */
    WD_METRICS_PROMETHEUS, /* /metrics (a query string is ignored) */
    WD_METRICS_STATUS,     /* /status */
    WD_METRICS_LIVEZ,      /* /livez */
    WD_METRICS_READYZ,     /* /readyz, or /readyz/GROUP (*group set) */
    WD_METRICS_NOT_FOUND,  /* 404 */
} wd_metrics_route_t;

/* *head_only: a HEAD request. *group, *glen: the GROUP of /readyz/GROUP (inside buf), else NULL. */
wd_metrics_route_t wd_metrics_route(const char *buf, size_t len, int *head_only, const char **group,
                                    size_t *glen);

#endif
