/* What a worker asks of the application runtime behind its loop (the embedded Python of
 * python_glue/): a table of functions that main.c hands to wd_worker_main, so that daemon/ never
 * includes python_glue's headers and the runtime could be driven without the loop (tests).
 *
 * Thread rules: init, load, start and stop run on the worker's main thread, in that order;
 * interrupt on the loop thread, which it must never block (see python_glue/glue.h). */
#ifndef WD_DAEMON_APP_H
#define WD_DAEMON_APP_H

#include "config.h"
#include "handoff.h"
#include "request.h"
#include "scoreboard.h"

#include <stddef.h>

typedef struct wd_app_ops {
    /* Sets the runtime up for this group and slot; 0, or -1 with the reason logged and a
     * one-line summary in err (for the master: wsgictl and status show it). */
    int (*init)(const wd_config_t *conf, const wd_group_conf_t *group, int slot, char *err,
                size_t errlen);
    /* Loads the application; 0, or -1 with a one-line summary in err. Before each app it
     * imports, calls loading("app FILE (mount /m)"): the master names it if the import hangs
     * or kills the worker. */
    int (*load)(void (*loading)(const char *what), char *err, size_t errlen);
    /* Starts the threads that take requests from h; each publishes the request it runs in
     * score->running (NULL: nowhere). 0 or -1. */
    int (*start)(wd_handoff_t *h, wd_score_t *score);
    /* request-timeout: stop the thread running req (req->timed_out is set first). */
    void (*interrupt)(wd_req_t *req);
    /* After wd_handoff_close: waits for the threads and tears the runtime down. */
    void (*stop)(void);
} wd_app_ops_t;

#endif
