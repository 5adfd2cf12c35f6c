/* The master process: see master.h.
 *
 * The runtime model:
 *   - a wd_gen_t is one loaded config file (each group's part of its text in a memfd for that
 *     group's workers: wd_config_split); a reload makes a new one; groups and processes hold
 *     references to theirs;
 *   - a wd_group_t is a group as it runs: its listeners, its slots, its counters of past workers;
 *   - a wd_slot_t is one process slot (1-based) of a group; it outlives the processes that fill
 *     it: `cur` serves, `repl` is a replacement being started (rolling restart, recycling);
 *   - a wd_proc_t is one worker process: its uv_process_t, our end of its socketpair and a timer
 *     (startup-timeout, then the kill deadline when it drains); it is freed once the three handles
 *     are closed, so a respawn never reuses a handle that libuv still knows about. A replaced
 *     worker leaves its slot and drains on its own.
 * A rolling operation (wd_op_t) replaces the slots of one group one after the other; a control
 * request (wd_batch_t) waits for one or more operations and answers when they are all done.
 *
 * This file is the master's life: setup, the signals, teardown. The types and the other files
 * (groups and processes, spawning, a worker's life, rolling operations, commands, the watchdog):
 * master_int.h. */
#include "master_int.h"
#include "alloc.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

static const int handled_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};

const char *wd__m_signame(int sig)
{
    static char buf[32];
    const char *abbrev = sigabbrev_np(sig);

    if (abbrev == NULL)
        snprintf(buf, sizeof buf, "%d", sig);
    else
        snprintf(buf, sizeof buf, "SIG%s", abbrev);
    return buf;
}

/* The metrics listener's view of the master. */
static void metrics_snapshot(void *data, wd_status_t *st)
{
    wd_master_status(data, st);
}

static void metrics_release(void *data, wd_status_t *st)
{
    (void)data;
    wd_master_status_release(st);
}

wd_metrics_t wd__m_metrics, wd__m_agent, wd__m_health;

/* ---- signals ------------------------------------------------------------------------------ */

static void signal_cb(uv_signal_t *handle, int signum)
{
    wd_master_t *m = handle->data;

    switch (signum) {
    case SIGTERM:
    case SIGINT:
        if (m->stopping) {
            wd_log_warn("received %s again: killing every worker now", wd__m_signame(signum));
            wd__m_kill_all(m);
            break;
        }
        wd_log_info("received %s: stopping gracefully (%zu workers)", wd__m_signame(signum),
                    m->n_alive);
        wd__m_begin_stop(m, m->exit_code);
        break;
    case SIGHUP:
        wd_log_info("received SIGHUP: reloading the configuration");
        wd__m_reload(m, NULL);
        break;
    case SIGUSR1: {
        char err[1024];

        wd_log_info("received SIGUSR1: reopening the log files");
        if (wd__m_reopen_logs(m, err, sizeof err) < 0)
            wd_log_error("reopening the logs: %s", err);
        break;
    }
    }
}

/* ---- setup and teardown ------------------------------------------------------------------- */

/* The pidfile's directory may be one a group's user can write (README's run/wsgid.pid beside
 * the config): it is written through no symbolic link, into nothing but a regular file of its
 * own, or root would truncate and write whatever file the app linked there before a restart
 * (helper-72). */
static int write_pidfile(wd_master_t *m)
{
    const char *why = NULL;
    struct stat st;
    char buf[32];
    int fd, n, rc = 0;

    if (m->pidfile == NULL)
        return 0;
    fd =
        open(m->pidfile, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0) {
        rc = -errno;
        if (rc == -ELOOP)
            why = "it is a symbolic link, which wsgid does not write through (whoever may write "
                  "its directory could point it at any file): remove it, or name the file itself";
        goto fail;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_nlink > 1) {
        rc = -EINVAL;
        why = !S_ISREG(st.st_mode) ? "it is not a regular file: remove it, or name another"
                                   : "it has other hard links, which wsgid does not write through "
                                     "(one could be any file): remove it";
        goto fail;
    }
    n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n)
        rc = errno ? -errno : -EIO;
    if (rc == 0) {
        m->pidfile_written = 1;
        m->pidfile_dev = st.st_dev;
        m->pidfile_ino = st.st_ino;
    }

fail:
    if (fd >= 0 && close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        wd_log_error("cannot write the pidfile %s: %s", m->pidfile,
                     why != NULL ? why : strerror(-rc));
    return rc;
}

/* Removes the pidfile if it is still the file written: another wsgid may have taken the path
 * since, or the app put something else there. */
static void remove_pidfile(wd_master_t *m)
{
    struct stat st;

    if (!m->pidfile_written)
        return;
    if (lstat(m->pidfile, &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != m->pidfile_dev ||
        st.st_ino != m->pidfile_ino) {
        wd_log_warn("the pidfile %s is no longer the file wsgid wrote: leaving it", m->pidfile);
        return;
    }
    if (unlink(m->pidfile) < 0)
        wd_log_warn("cannot remove the pidfile %s: %s", m->pidfile, strerror(errno));
}

/* Descriptors inherited from whoever started us (a shell, a test harness) are not the workers'
 * business: mark them close-on-exec. Those of socket activation ($LISTEN_FDS from fd 3) are
 * kept for listen.c. */
static void cloexec_inherited(void)
{
    const char *listen_fds = getenv("LISTEN_FDS");
    int keep = listen_fds != NULL ? 3 + atoi(listen_fds) : 3;
    struct dirent *de;
    DIR *dir;
    int fd;

    dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        fd = atoi(de->d_name);
        if (fd >= keep && fd != dirfd(dir))
            fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
    }
    closedir(dir);
}

static int find_exe(wd_master_t *m)
{
    ssize_t n = readlink("/proc/self/exe", m->exe, sizeof m->exe - 1);

    if (n < 0) {
        wd_log_error("cannot find my own executable (/proc/self/exe): %s", strerror(errno));
        return -1;
    }
    m->exe[n] = '\0';
    if (stat(m->exe, &m->exe_st) < 0) /* (then every spawn takes /proc/self/exe) */
        memset(&m->exe_st, 0, sizeof m->exe_st);
    return 0;
}

static int open_groups(wd_master_t *m)
{
    const wd_config_t *conf = m->gen->conf;
    char err[1024];
    size_t i;

    if (wd__m_check_privileges(conf, err, sizeof err) < 0) {
        wd_log_error("%s", err);
        return -1;
    }
    for (i = 0; i < conf->n_groups; i++)
        if (wd__m_group_new(m, m->gen, &conf->groups[i], NULL) == NULL)
            return -1;
    return 0;
}

void wd__m_start(wd_master_t *m)
{
    size_t i, k;
    int j;

    for (i = 0; i < sizeof handled_signals / sizeof handled_signals[0]; i++) {
        uv_signal_init(&m->loop, &m->signals[i]);
        m->signals[i].data = m;
        uv_signal_start(&m->signals[i], signal_cb, handled_signals[i]);
        m->n_signals++;
    }
    uv_timer_init(&m->loop, &m->tick);
    m->tick.data = m;
    uv_timer_start(&m->tick, wd__m_tick_cb, WD_MASTER_TICK_MS, WD_MASTER_TICK_MS);
    m->t0 = uv_now(&m->loop);
    for (i = 0; i < m->n_groups; i++)
        m->n_first += (size_t)m->groups[i]->n_slots;
    m->starting = 1;
    wd_log_info("wsgid %s master (pid %d) starting %zu groups, %zu processes", WD_VERSION,
                (int)getpid(), m->n_groups, m->n_first);
    wd__m_autoreload_update(m);
    /* A failed spawn stops wsgid, and when nothing runs yet that frees the groups at once:
     * m->stopping is read first. */
    for (i = 0; !m->stopping && i < m->n_groups; i++) {
        wd_group_t *g = m->groups[i];

        for (j = 0; !m->stopping && j < g->n_slots; j++) {
            k = (size_t)j;
            g->slots[k]->cur = wd__m_spawn(m, g->slots[k], g->gen, g->conf, g->ls, g->n_ls);
            if (g->slots[k]->cur == NULL)
                wd__m_abort_start(m, g, "cannot start its workers");
        }
    }
}

/* Each connection costs a worker a file descriptor, and Linux's default soft limit (1024) is far
 * below what the hard limit allows: raise it, for the master and the workers it starts. */
static void raise_nofile(void)
{
    struct rlimit rl;
    rlim_t was;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        wd_log_info("open-file limit raised from %llu to the hard limit, %llu",
                    (unsigned long long)was, (unsigned long long)rl.rlim_max);
}

int wd_master_run(wd_config_t *conf, const char *text, size_t len)
{
    wd_master_t *m = xcalloc(1, sizeof *m);
    int rc, loop_ready = 0;
    size_t i;

    m->exit_code = 1;
    wd_log_init("master", conf->log_level);
    if (wd_log_open(conf->log_file, "off") < 0)
        goto out;
    signal(SIGPIPE, SIG_IGN);
    cloexec_inherited();
    raise_nofile();
    m->pidfile = conf->pidfile != NULL ? xstrdup(conf->pidfile) : NULL;
    m->run_control = conf->control != NULL ? xstrdup(conf->control) : NULL;
    m->run_metrics = conf->metrics != NULL ? xstrdup(conf->metrics) : NULL;
    m->run_agent = conf->agent_check != NULL ? xstrdup(conf->agent_check) : NULL;
    m->run_health = conf->health != NULL ? xstrdup(conf->health) : NULL;
    rc = uv_loop_init(&m->loop);
    if (rc < 0) {
        wd_log_error("cannot create the event loop: %s", uv_strerror(rc));
        goto out;
    }
    loop_ready = 1;
    m->loop.data = m;
    m->gen = wd__m_gen_new(conf, 0, text, len);
    if (m->gen == NULL || find_exe(m) < 0 || open_groups(m) < 0)
        goto out;
    wd_listen_activation_done();
    if (conf->metrics_port > 0 &&
        wd_metrics_start(&wd__m_metrics, &m->loop, conf->metrics_host, conf->metrics_port,
                         metrics_snapshot, metrics_release, m) < 0)
        goto out;
    if (conf->agent_port > 0 &&
        wd_metrics_start_agent(&wd__m_agent, &m->loop, conf->agent_host, conf->agent_port,
                               metrics_snapshot, metrics_release, m) < 0)
        goto out;
    if (conf->health_port > 0 &&
        wd_metrics_start_health(&wd__m_health, &m->loop, conf->health_host, conf->health_port,
                                metrics_snapshot, metrics_release, m) < 0)
        goto out;
    if (conf->control != NULL &&
        wd_control_open(&m->control, &m->loop, conf->control, wd__m_control_cb, m) < 0)
        goto out;
    if (write_pidfile(m) < 0)
        goto out;
    m->exit_code = 0;
    wd__m_logs_start(m); /* the start's errors went at once; from now on nothing waits for a log */
    wd__m_start(m);
    uv_run(&m->loop, UV_RUN_DEFAULT);

out:
    if (!m->finished && loop_ready) {
        /* The start failed before the loop ran: close what was opened. */
        m->stopping = 1;
        if (m->n_signals == 0)
            uv_timer_init(&m->loop, &m->tick);
        wd__m_finish(m);
        uv_run(&m->loop, UV_RUN_DEFAULT);
    }
    if (loop_ready && uv_loop_close(&m->loop) != 0)
        wd_log_warn("the event loop still had handles at exit");
    for (i = 0; i < m->n_groups; i++)
        wd__m_group_unref(m->groups[i]);
    free(m->groups);
    wd__m_gen_unref(m->gen);
    remove_pidfile(m);
    free(m->pidfile);
    free(m->run_control);
    free(m->run_metrics);
    free(m->run_agent);
    free(m->run_health);
    rc = m->exit_code;
    wd_log_info("master exiting with status %d", rc);
    wd__m_logs_end();
    free(m);
    return rc;
}
