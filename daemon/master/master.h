/* The master process (design §1): binds the listeners, spawns the workers of every group,
 * supervises them (respawn with backoff, recycling, rolling restarts), serves the control socket,
 * and stops them on SIGTERM / SIGINT. It runs a libuv loop and never loads Python. */
#ifndef WD_DAEMON_MASTER_H
#define WD_DAEMON_MASTER_H

#include "config.h"
#include "status.h"

#include <stddef.h>

typedef struct wd_master wd_master_t;

/* Runs the master until it is stopped. text/len are the exact bytes of the config file, of which
 * each group's workers get their group's part (wd_config_split). Returns the process exit status: 0
 * after a graceful stop, 1 when the start failed (a listener could not be bound, an application
 * could not be loaded...). */
int wd_master_run(wd_config_t *conf, const char *text, size_t len);

/* Fills *out with a snapshot of every group and worker (status.h). Call it on the master's loop
 * thread only; the strings and arrays of the snapshot are owned by it (the score pointers point
 * into the live scoreboard) and stay valid until wd_master_status_release(out), which must be
 * called before control returns to the loop. */
void wd_master_status(wd_master_t *m, wd_status_t *out);
void wd_master_status_release(wd_status_t *out);

#endif
