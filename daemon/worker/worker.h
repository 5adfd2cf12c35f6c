/* A worker process: one libuv loop thread in front, a pool of Python threads behind it. How the
 * master starts one, and what they say to each other: spawn.h. */
#ifndef WD_DAEMON_WORKER_H
#define WD_DAEMON_WORKER_H

#include "app.h"
#include "spawn.h"

/* Entered from main() when WSGID_WORKER is set, with the application runtime to run (main.c
 * passes python_glue's). Returns the process exit status. */
int wd_worker_main(int argc, char **argv, const wd_app_ops_t *app);

#endif
