/* The master process (design §1): binds the listeners, spawns the workers of every group,
 * supervises them (respawn with backoff), and stops them on SIGTERM / SIGINT. It runs a libuv
 * loop and never loads Python. */
#ifndef WD_DAEMON_MASTER_H
#define WD_DAEMON_MASTER_H

#include "config.h"

#include <stddef.h>

/* Runs the master until it is stopped. text/len are the exact bytes of the config file, handed
 * to every worker. Returns the process exit status: 0 after a graceful stop, 1 when the start
 * failed (a listener could not be bound, an application could not be loaded...). */
int wd_master_run(wd_config_t *conf, const char *text, size_t len);

#endif
