/* The worker's end of `wsgictl stacks` (spawn.h): the pipe on WD_WORKER_FD_STACKS and the
 * signal WD_WORKER_SIG_STACKS. python_glue (dump.c) handles that signal, writing every
 * interpreter's thread stacks to wd_stacks_fd() and chaining to the handler installed here,
 * which writes WD_STACKS_END once the dump is complete: the master knows then that it has all of
 * it. Until Python is set up, the worker answers with the end line alone. */
#ifndef WD_DAEMON_STACKS_H
#define WD_DAEMON_STACKS_H

#include "spawn.h" /* WD_WORKER_SIG_STACKS, WD_STACKS_END */

#include <stdatomic.h>
#include <stdint.h>

/* Takes WD_WORKER_FD_STACKS if the master gave one (a pipe) and installs the end-line handler;
 * main thread, before Python starts. 0, or -1 when there is no such pipe (then wd_stacks_fd() is
 * -1 and the signal keeps its default: ignored). */
int wd_stacks_init(void);

/* The pipe's fd, or -1. */
int wd_stacks_fd(void);

/* The worker's heartbeat (its scoreboard record's heartbeat_ns), which the dump keeps beating
 * while it runs on the calling thread, the loop thread: a dump of many threads' deep stacks may
 * take seconds there, and GET /livez failed for it (helper-89). */
void wd_stacks_heartbeat(_Atomic uint64_t *heartbeat_ns);

/* From the dump's signal handler, before each thread's stacks (first: the dump's first thread):
 * when the handler runs on the loop thread, moves the heartbeat on by the time the dump has
 * taken so far, so that the dump's own time does not count as a stall, and a loop stuck before
 * it still does. Async-signal-safe. */
void wd_stacks_progress(int first);

#endif
