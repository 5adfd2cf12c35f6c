/* The master: periodic checks (memory-limit, restart-interval, stopped workers) and the deadlock
 * watchdog. See master_int.h. */
#include "master_int.h"
#include "log.h"
#include "utf8.h"

#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* ---- periodic checks: memory-limit, restart-interval -------------------------------------- */

/* 1 if the process is stopped (state T: SIGSTOP, SIGTSTP...; not t, a debugger's stop). */
static int proc_stopped(int pid)
{
    char path[64], buf[512], *r;
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    r = strrchr(buf, ')');
    return r != NULL && r[1] == ' ' && r[2] == 'T';
}

/* A stopped worker holds its accepted connections and its requests forever and answers nothing:
 * past WD_MASTER_STOPPED_MS it is killed, and replaced like any dead worker. */
static void check_stopped(wd_master_t *m, wd_proc_t *p, uint64_t now)
{
    if (p->pid <= 0 || !proc_stopped(p->pid)) {
        p->stopped_at = 0;
        return;
    }
    if (p->stopped_at == 0) {
        p->stopped_at = now;
        return;
    }
    if (now - p->stopped_at < WD_MASTER_STOPPED_MS)
        return;
    wd_log_error("group %s worker %d (pid %d) has been stopped (SIGSTOP?) for %.0f s: killing it",
                 p->g->name, p->slot, p->pid, (double)(now - p->stopped_at) / 1000.0);
    snprintf(p->failed, sizeof p->failed, "stopped for %.0f s, killed",
             (double)(now - p->stopped_at) / 1000.0);
    if (p->s != NULL)
        wd_utf8_copy(p->s->last_error, sizeof p->s->last_error, p->failed);
    p->stopped_at = 0;
    uv_process_kill(&p->process, SIGKILL);
}

static void deadlock_kill_cb(uv_timer_t *t)
{
    wd_proc_t *p = t->data;

    if (p->pid > 0)
        uv_process_kill(&p->process, SIGKILL);
}

/* The watchdog (deadlock-timeout, mod_wsgi's name): a worker whose loop has not ticked for that
 * long serves nobody (a bug, or a wait that should never be; a Python thread stuck in C no
 * longer stops the loop). Its slot gets a replacement at once, the Python threads' stacks are
 * dumped to the error log (on SIGUSR2: python_glue/dump.c), and the worker is killed a moment
 * later. */
static int check_deadlock(wd_master_t *m, wd_proc_t *p)
{
    const wd_group_conf_t *c = p->g->conf;
    const wd_score_t *sc;
    wd_score_running_t r;
    uint64_t now, hb;
    char why[400];
    int thread;

    sc = wd__m_record(p);
    if (c->deadlock_timeout <= 0 || sc == NULL || p->deadlocked || p->state != WD_PROC_READY ||
        p->pid <= 0)
        return 0;
    now = wd__m_now_ns();
    hb = wd_score_get(&sc->heartbeat_ns);
    if (hb == 0 || hb > now || (double)(now - hb) / 1e9 < c->deadlock_timeout)
        return 0;
    /* The oldest request its threads run: the loop dispatched it, so before it stopped. */
    thread = wd_score_oldest_running(sc, now, &r);
    p->deadlocked = 1;
    if (thread > 0)
        snprintf(why, sizeof why,
                 "deadlock-timeout: its loop stopped %.0f s ago; the oldest request running, [req "
                 "%s %s %.100s] on wsgid-py%d, has run %.1f s",
                 (double)(now - hb) / 1e9, r.id, r.method, r.path, thread,
                 (double)(now - r.start_ns) / 1e9);
    else
        snprintf(why, sizeof why, "deadlock-timeout: its loop stopped %.0f s ago, no request ran",
                 (double)(now - hb) / 1e9);
    wd_log_error("group %s worker %d (pid %d): %s; replacing it, its Python stacks follow, then "
                 "it is killed",
                 p->g->name, p->slot, p->pid, why);
    if (p->s != NULL) {
        wd_utf8_copy(p->s->last_error, sizeof p->s->last_error, why);
        p->recycling = 0;
        wd__m_proc_recycle(m, p, why);
    }
    uv_process_kill(&p->process, SIGUSR2);
    uv_timer_stop(&p->timer);
    uv_timer_start(&p->timer, deadlock_kill_cb, WD_MASTER_DUMP_MS, 0);
    return 1;
}

/* The RSS past which p is replaced: memory-limit, or for a worker over it from the moment it was
 * ready (its app alone takes more) twice what it took then. Replaced at memory-limit, such a
 * worker's replacement was too, and the group was replaced about once a second for as long as it
 * ran, at info (helper-63: 60 sub-interpreters at 60 MiB under a 40 MiB limit); never replaced,
 * it could leak without a bound (helper-69). The group says so once a config, at warn. */
static uint64_t memory_bound(wd_proc_t *p, const wd_group_conf_t *c)
{
    if (p->ready_rss <= c->memory_limit)
        return c->memory_limit;
    if (p->g->memory_warned != c) {
        p->g->memory_warned = c;
        wd_log_warn("group %s: memory-limit %.1f MiB is below what a worker takes once its app is "
                    "loaded (%.1f MiB when worker %d was ready): such a worker is replaced only "
                    "past twice what it took then; raise memory-limit",
                    p->g->name, (double)c->memory_limit / 1048576.0,
                    (double)p->ready_rss / 1048576.0, p->slot);
    }
    return 2 * p->ready_rss;
}

void wd__m_tick_cb(uv_timer_t *t)
{
    wd_master_t *m = t->data;
    uint64_t now = uv_now(&m->loop);
    wd_proc_t *p, *next;
    char why[128];

    wd__m_drain_check(m);
    wd__m_roll_back(m);
    wd__m_reload_if_pending(m);
    for (p = m->procs; p != NULL; p = next) {
        const wd_group_conf_t *c = p->g->conf;

        next = p->next;
        if (p->says != NULL)
            wd__m_proc_flush(p);
        check_stopped(m, p, now);
        if (check_deadlock(m, p))
            continue;
        if (p->s == NULL || p->s->cur != p || p->state != WD_PROC_READY || p->recycling)
            continue;
        if (p->s->recycle_ask_pid == p->pid && now >= p->s->recycle_retry_at) {
            wd__m_proc_recycle(m, p, p->s->recycle_ask); /* its ask, after a failed replacement */
            continue;
        }
        if (c->memory_limit > 0) {
            uint64_t bound = memory_bound(p, c);

            p->rss = wd__m_read_rss(p->pid);
            if (p->rss > bound) {
                snprintf(why, sizeof why, "memory-limit: RSS %.1f MiB > %.1f MiB%s",
                         (double)p->rss / 1048576.0, (double)bound / 1048576.0,
                         bound != c->memory_limit ? " (twice its size when ready)" : "");
                wd__m_proc_recycle(m, p, why);
                continue;
            }
        }
        if (p->recycle_at > 0 && now >= p->recycle_at) {
            snprintf(why, sizeof why, "restart-interval (%g s)", c->restart_interval);
            wd__m_proc_recycle(m, p, why);
        }
    }
}
