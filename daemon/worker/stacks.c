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

void wd_stacks_progress(void)
{
    if (heartbeat != NULL && pthread_equal(pthread_self(), loop_thread))
        wd_score_set(heartbeat, wd_now_ns());
}
