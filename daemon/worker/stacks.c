/* The worker's end of `wsgictl stacks`: see stacks.h. */
#include "stacks.h"
#include "spawn.h"
#include "scoreboard.h"
#include "request.h" /* wd_now_ns */

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int stacks_fd = -1;
static _Atomic uint64_t *heartbeat;
static pthread_t loop_thread;

/* Runs after the dump (python_glue/dump.c chains to us), in the thread that got the signal: one
 * write, async-signal-safe. The pipe does not block (master_stacks.c). */
static void end_cb(int sig)
{
    int saved = errno;
    ssize_t n = write(stacks_fd, WD_STACKS_END, sizeof WD_STACKS_END - 1);

    (void)sig;
    (void)n;
    errno = saved;
}

int wd_stacks_init(void)
{
    struct sigaction sa;
    struct stat st;

    if (fstat(WD_WORKER_FD_STACKS, &st) < 0 || !S_ISFIFO(st.st_mode))
        return -1;
    /* Not for the app's child processes. */
    fcntl(WD_WORKER_FD_STACKS, F_SETFD, FD_CLOEXEC);
    stacks_fd = WD_WORKER_FD_STACKS;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = end_cb;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(WD_WORKER_SIG_STACKS, &sa, NULL) < 0) {
        stacks_fd = -1;
        return -1;
    }
    return 0;
}

int wd_stacks_fd(void)
{
    return stacks_fd;
}

void wd_stacks_heartbeat(_Atomic uint64_t *heartbeat_ns)
{
    loop_thread = pthread_self();
    heartbeat = heartbeat_ns;
}

/* The heartbeat moves on by the time the dump has taken, not to now: a loop stuck before the
 * dump (the very case an operator takes the stacks for) stays as stale as it was. Set to now,
 * each wsgictl stacks made a stuck loop look alive: taken every few seconds, it kept the
 * watchdog (deadlock-timeout) from ever replacing the worker, and GET /livez answered 200
 * (helper-98). Only the loop thread writes the heartbeat, and it is here. */
void wd_stacks_progress(int first)
{
    static uint64_t started_ns, beat_ns; /* at the start of the dump in progress */
    uint64_t now;

    if (heartbeat == NULL || !pthread_equal(pthread_self(), loop_thread))
        return;
    now = wd_now_ns();
    if (first) {
        started_ns = now;
        beat_ns = wd_score_get(heartbeat);
        return;
    }
    wd_score_set(heartbeat, beat_ns + (now - started_ns));
}
