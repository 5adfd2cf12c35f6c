/* The worker's end of `wsgictl stacks` (spawn.h): the pipe on WD_WORKER_FD_STACKS and the
 * signal WD_WORKER_SIG_STACKS. python_glue (dump.c) handles that signal, writing every
 * interpreter's thread stacks to wd_stacks_fd() and chaining to the handler installed here,
 * which writes WD_STACKS_END once the dump is complete: the master knows then that it has all of
 * it. Until Python is set up, the worker answers with the end line alone. */
#ifndef WD_DAEMON_STACKS_H
#define WD_DAEMON_STACKS_H

#include "spawn.h" /* WD_WORKER_SIG_STACKS, WD_STACKS_END */

/* Takes WD_WORKER_FD_STACKS if the master gave one (a pipe) and installs the end-line handler;
 * main thread, before Python starts. 0, or -1 when there is no such pipe (then wd_stacks_fd() is
 * -1 and the signal keeps its default: ignored). */
int wd_stacks_init(void);

/* The pipe's fd, or -1. */
int wd_stacks_fd(void);

#endif
