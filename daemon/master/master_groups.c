/* The master: config generations, the scoreboard, groups and their slots, worker processes. See
 * master_int.h. */
#include "master_int.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

/* ---- config generations ------------------------------------------------------------------- */

static int memfd_with(const char *text, size_t len)
{
    size_t off = 0;
    ssize_t n;
    int fd = memfd_create("wsgid-config", MFD_CLOEXEC | MFD_ALLOW_SEALING), err;

    while (fd >= 0 && off < len) {
        n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = errno;
            close(fd);
            errno = err;
            return -1;
        }
        off += (size_t)n;
    }
    /* Sealed: a worker could reopen /proc/self/fd/N for writing (a memfd is mode 0777) and
     * rewrite what its group's later workers read (helper-79). */
    if (fd >= 0 &&
        fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* Each group's workers get their part of the text (wd_config_split), not the whole: another
 * group's env: secrets, apps and paths were in every worker's memory (helper-72). */
wd_gen_t *wd__m_gen_new(wd_config_t *conf, int owned, const char *text, size_t len)
{
    wd_gen_t *gen = xcalloc(1, sizeof *gen);
    wd_config_part_t *parts = NULL;
    size_t n = 0, i;

    gen->conf = conf;
    gen->owned = owned;
    gen->refs = 1;
    if (wd_config_split(text, len, &parts, &n) < 0 || n != conf->n_groups) {
        wd_log_error("%s: cannot make each group's part of the configuration for its workers",
                     conf->path);
        goto fail;
    }
    gen->fds = xcalloc(n, sizeof *gen->fds);
    for (i = 0; i < n; i++) {
        if (strcmp(parts[i].group, conf->groups[i].name) != 0) {
            wd_log_error("%s: group %s: its part of the configuration names group %s", conf->path,
                         conf->groups[i].name, parts[i].group);
            goto fail;
        }
        gen->fds[i] = memfd_with(parts[i].text, parts[i].len);
        if (gen->fds[i] < 0) {
            wd_log_error("group %s: cannot hand the configuration to its workers (memfd): %s",
                         conf->groups[i].name, strerror(errno));
            goto fail;
        }
        gen->n_fds++;
    }
    wd_config_split_free(parts, n);
    return gen;

fail:
    wd_config_split_free(parts, n);
    for (i = 0; i < gen->n_fds; i++)
        close(gen->fds[i]);
    free(gen->fds);
    free(gen);
    return NULL;
}

int wd__m_gen_fd(const wd_gen_t *gen, const wd_group_conf_t *conf)
{
    size_t i;

    for (i = 0; i < gen->n_fds; i++)
        if (&gen->conf->groups[i] == conf)
            return gen->fds[i];
    return -1;
}

wd_gen_t *wd__m_gen_ref(wd_gen_t *gen)
{
    gen->refs++;
    return gen;
}

void wd__m_gen_unref(wd_gen_t *gen)
{
    if (gen == NULL || --gen->refs > 0)
        return;
    for (size_t i = 0; i < gen->n_fds; i++)
        close(gen->fds[i]);
    free(gen->fds);
    if (gen->owned) {
        wd_config_free(gen->conf);
        free(gen->conf);
    }
    free(gen);
}

/* ---- the scoreboards ---------------------------------------------------------------------- */

/* A group's workers and their replacements, all at once (each slot's recycling asked together),
 * fit in its scoreboard: what the config accepts always does. */
_Static_assert(WD_SCORE_MAX >= 2 * WD_CONFIG_PROCESSES_MAX, "a group's board holds its workers");

/* g's own scoreboard: its workers map it, and no other group's (scoreboard.h). The memfd is
 * sparse: a record's pages exist once a worker used it. */
static void scoreboard_open(wd_group_t *g)
{
    size_t size = WD_SCORE_MAX * sizeof(wd_score_t);
    const char *env;
    void *p;

    g->score_fd = memfd_create("wsgid-scoreboard", MFD_CLOEXEC);
    if (g->score_fd < 0 || ftruncate(g->score_fd, (off_t)size) < 0)
        goto fail;
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->score_fd, 0);
    if (p == MAP_FAILED)
        goto fail;
    g->score = p;
    g->n_records = WD_SCORE_MAX;
    if ((env = getenv("WSGID_SCORE_RECORDS")) != NULL && atoi(env) > 0 && atoi(env) < WD_SCORE_MAX)
        g->n_records = atoi(env);
    return;

fail:
    wd_log_error("group %s: cannot create its scoreboard (memfd of %zu MiB): %s; its workers "
                 "cannot start: see the memory and open-file limits of wsgid",
                 g->name, size >> 20, strerror(errno));
    if (g->score_fd >= 0)
        close(g->score_fd);
    g->score_fd = -1;
}

static void scoreboard_close(wd_group_t *g)
{
    if (g->score != NULL)
        munmap(g->score, WD_SCORE_MAX * sizeof(wd_score_t));
    if (g->score_fd >= 0)
        close(g->score_fd);
}

int wd__m_record_take(wd_group_t *g)
{
    int i;

    for (i = 0; g->score != NULL && i < g->n_records; i++) {
        if (!g->used[i]) {
            g->used[i] = 1;
            memset(&g->score[i], 0, sizeof g->score[i]);
            return i;
        }
    }
    return -1;
}

/* The counters of an exited worker go to its group's totals, then the record is free. */
void wd__m_record_release(wd_proc_t *p)
{
    wd_status_group_t *t = &p->g->totals;
    wd_score_t *sc = wd__m_record(p);
    int k;

    if (sc == NULL)
        return;
    t->past_requests += wd_score_get(&sc->requests);
    for (k = 0; k < 6; k++)
        t->past_status[k] += wd_score_get(&sc->status[k]);
    for (k = 0; k <= WD_SCORE_BUCKETS; k++)
        t->past_duration_bucket[k] += wd_score_get(&sc->duration_bucket[k]);
    t->past_duration_sum_us += wd_score_get(&sc->duration_sum_us);
    t->past_bytes_sent += wd_score_get(&sc->bytes_sent);
    t->past_timeouts += wd_score_get(&sc->timeouts);
    t->past_accept_empty += wd_score_get(&sc->accept_empty);
    t->past_balance_closes += wd_score_get(&sc->balance_closes);
    wd_score_set(&sc->ready, 0); /* no sibling to balance with (balance.h) */
    p->g->used[p->record] = 0;
    p->record = -1;
    wd__m_op_record_freed(p->g);
}

int wd__m_board_full(const wd_group_t *g)
{
    for (int i = 0; g->score != NULL && i < g->n_records; i++)
        if (!g->used[i])
            return 0;
    return g->score != NULL;
}

/* ---- groups and slots --------------------------------------------------------------------- */

static void slot_free_cb(uv_handle_t *h)
{
    free(h->data);
}

wd_slot_t *wd__m_slot_new(wd_group_t *g, int n)
{
    wd_slot_t *s = xcalloc(1, sizeof *s);

    s->g = g;
    s->slot = n;
    uv_timer_init(&g->m->loop, &s->timer);
    s->timer.data = s;
    return s;
}

void wd__m_slot_free(wd_slot_t *s)
{
    s->g->totals.past_restarts += s->restarts; /* the group's count never goes back */
    if (s->cur != NULL)
        s->cur->s = NULL;
    if (s->repl != NULL)
        s->repl->s = NULL;
    uv_close((uv_handle_t *)&s->timer, slot_free_cb);
}

wd_group_t *wd__m_group_ref(wd_group_t *g)
{
    g->refs++;
    return g;
}

void wd__m_group_unref(wd_group_t *g)
{
    if (--g->refs > 0)
        return;
    wd__m_listeners_release(g->ls, g->n_ls, NULL, 0);
    scoreboard_close(g);
    free(g->slots);
    wd__m_gen_unref(g->gen);
    free(g->name);
    free(g);
}

wd_group_t *wd__m_find_group(wd_master_t *m, const char *name)
{
    size_t i;

    for (i = 0; i < m->n_groups; i++)
        if (strcmp(m->groups[i]->name, name) == 0)
            return m->groups[i];
    return NULL;
}

int wd__m_same_address(const wd_listen_conf_t *a, const wd_listen_conf_t *b)
{
    if (a->is_unix != b->is_unix)
        return 0;
    if (a->is_unix) /* one file, however its directory is spelt: the socket can serve both */
        return wd_config_listen_same(a, b);
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* The listeners of conf: those of `reuse` with the same address are shared (same wd_listen_t,
 * same fd), the others are bound. Returns a malloc'd array, or NULL after a
 * bind error, having closed what it bound and taken nothing. */
wd_listen_t **wd__m_listeners_open(const wd_group_conf_t *conf, wd_listen_t **reuse, size_t n_reuse)
{
    wd_listen_t **ls = xcalloc(conf->n_listen, sizeof *ls);
    int *from = xcalloc(conf->n_listen, sizeof *from);
    const wd_listen_conf_t *lc;
    size_t i, k;

    for (i = 0; i < conf->n_listen; i++) {
        lc = &conf->listen[i];
        from[i] = -1;
        for (k = 0; k < n_reuse; k++) {
            if (reuse[k] != NULL && wd__m_same_address(reuse[k]->conf, lc)) {
                from[i] = (int)k;
                break;
            }
        }
        if (from[i] >= 0)
            continue;
        ls[i] = xcalloc(1, sizeof *ls[i]);
        if (wd_listen_open(ls[i], conf, lc) < 0) {
            free(ls[i]);
            ls[i] = NULL;
            goto fail;
        }
        wd_log_info("group %s: listening on %s%s", conf->name, lc->is_unix ? "unix:" : "",
                    lc->is_unix ? lc->path : lc->spec);
    }
    for (i = 0; i < conf->n_listen; i++)
        if (from[i] >= 0)
            ls[i] = reuse[from[i]]; /* shared until the old array is released */
    free(from);
    return ls;

fail:
    for (i = 0; i < conf->n_listen; i++) {
        if (ls[i] != NULL && from[i] < 0) {
            wd_listen_close(ls[i]);
            free(ls[i]);
        }
    }
    free(from);
    free(ls);
    return NULL;
}

/* A stopped group's listeners refuse connections (wd_listen_pause says why) from the moment
 * none of its workers accepts any more (each says so once it took what waited: the worker's
 * wd_accept_take_waiting), until `wsgictl start`. Called when the group stops (it may have no
 * worker left: all backing off), when one of its workers says it stopped accepting, and when one
 * exits. So do every group's while wsgid stops (SIGTERM, wsgictl stop): a proxy tries another
 * server at once, where a connection queued meanwhile was reset at the exit. */
void wd__m_listeners_refuse_if_stopped(wd_group_t *g)
{
    size_t k, n = 0;

    if ((!g->stopped && !g->m->stopping) || g->removed)
        return;
    /* Wait for a worker still accepting, and for one told to take the queue first; one stopped
     * before (replaced, recycled) took nothing and accepts no more. */
    for (wd_proc_t *q = g->m->procs; q != NULL; q = q->next) {
        if (q->g == g && !q->unlistened && (q->told_last || q->state != WD_PROC_DRAINING))
            return;
    }
    for (k = 0; k < g->n_ls; k++) {
        if (!g->ls[k]->paused && wd_listen_pause(g->ls[k]) == 0 && g->ls[k]->paused)
            n++;
    }
    if (n > 0 && !g->m->stopping)
        wd_log_info("group %s: stopped: its listeners refuse connections until it starts", g->name);
}

/* wsgictl start: the listeners take connections again. 0, or -1 when one cannot (logged, and
 * wd_listen_last_error says why): those resumed are paused again. */
int wd__m_listeners_resume(wd_group_t *g)
{
    for (size_t k = 0; k < g->n_ls; k++) {
        if (wd_listen_resume(g->ls[k]) < 0) {
            for (size_t j = 0; j < k; j++)
                wd_listen_pause(g->ls[j]);
            return -1;
        }
    }
    return 0;
}

/* Closes the listeners of ls that are not in keep, and frees the array. */
void wd__m_listeners_release(wd_listen_t **ls, size_t n, wd_listen_t **keep, size_t n_keep)
{
    size_t i, k;

    for (i = 0; i < n; i++) {
        for (k = 0; k < n_keep; k++)
            if (keep[k] == ls[i])
                break;
        if (k == n_keep) {
            if (ls[i]->conf->is_unix && ls[i]->created)
                wd__m_autoreload_socket_removed(ls[i]->conf->path);
            wd_listen_close(ls[i]);
            free(ls[i]);
        }
    }
    free(ls);
}

/* A group as configured, with its listeners (ls, or bound now) and its slots empty. */
wd_group_t *wd__m_group_new(wd_master_t *m, wd_gen_t *gen, const wd_group_conf_t *conf,
                            wd_listen_t **ls)
{
    wd_group_t *g = xcalloc(1, sizeof *g);
    int i;

    g->ls = ls != NULL ? ls : wd__m_listeners_open(conf, NULL, 0);
    if (g->ls == NULL) {
        free(g);
        return NULL;
    }
    g->m = m;
    g->name = xstrdup(conf->name);
    g->gen = wd__m_gen_ref(gen);
    g->conf = conf;
    g->n_ls = conf->n_listen;
    g->refs = 1;
    scoreboard_open(g);
    g->n_slots = conf->processes;
    g->slots = xcalloc((size_t)g->n_slots, sizeof *g->slots);
    for (i = 0; i < g->n_slots; i++)
        g->slots[i] = wd__m_slot_new(g, i + 1);
    m->groups = xrealloc(m->groups, (m->n_groups + 1) * sizeof *m->groups);
    m->groups[m->n_groups++] = g;
    wd__m_warn_nobody(g);
    return g;
}

/* ---- processes ---------------------------------------------------------------------------- */

void wd__m_proc_close_cb(uv_handle_t *h)
{
    wd_proc_t *p = h->data;

    if (--p->handles > 0)
        return;
    if (p->stacks_fd >= 0)
        close(p->stacks_fd);
    wd__m_gen_unref(p->gen);
    wd__m_group_unref(p->g);
    free(p);
}

static void say_drop(wd_proc_t *p);

void wd__m_close_pipe(wd_proc_t *p)
{
    if (p->pipe_closed)
        return;
    p->pipe_closed = 1;
    say_drop(p);
    uv_close((uv_handle_t *)&p->pipe, wd__m_proc_close_cb);
}

/* A line for a worker that its socket did not take yet, and the file that goes with its first
 * byte (-1: none). */
struct wd_say {
    wd_say_t *next;
    size_t len, off;
    int fd;
    char bytes[];
};

/* The poll of a worker's socket for room while lines wait for it (say_room_start). */
struct wd_say_room {
    uv_poll_t poll;
    int fd; /* a duplicate of the pipe's descriptor */
};

static void say_room_closed_cb(uv_handle_t *h)
{
    struct wd_say_room *r = (struct wd_say_room *)h;

    close(r->fd);
    wd__m_proc_close_cb(h); /* h->data: its worker, which counts it among its handles */
    free(r);
}

/* Nothing waits for room any more: the poll and its descriptor go (kept for the worker's life,
 * the duplicate was one descriptor more of the master's for as long). */
static void say_room_stop(wd_proc_t *p)
{
    if (p->say_room == NULL)
        return;
    uv_close((uv_handle_t *)&p->say_room->poll, say_room_closed_cb);
    p->say_room = NULL;
}

static void say_drop(wd_proc_t *p)
{
    wd_say_t *s;
    size_t files = 0;

    while ((s = p->says) != NULL) {
        p->says = s->next;
        if (s->fd >= 0) {
            close(s->fd);
            files++;
        }
        free(s);
    }
    p->says_last = NULL;
    say_room_stop(p);
    if (files > 0) /* "adopt" lines' connections: a worker that died or stopped reading */
        wd_log_warn("group %s worker %d (pid %d): %zu connections handed over to it closed: it "
                    "is gone before it read them",
                    p->g->name, p->slot, p->pid, files);
}

static void say_room_cb(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    wd__m_proc_flush(h->data);
}

/* The lines p's socket did not take go as soon as it has room: the master's tick sent them once
 * a second, and a burst of "adopt" lines (a worker stopping with hundreds of idle connections,
 * more than the socket holds) waited that long, their clients' next requests with them. libuv
 * watches a descriptor once, and the pipe's is read: the poll is of a duplicate (epoll tells
 * them apart). 0, or -1 (the tick sends them). */
static int say_room_start(wd_proc_t *p, int sock)
{
    struct wd_say_room *r = p->say_room;

    if (r != NULL)
        return 0;
    r = xmalloc(sizeof *r);
    r->fd = fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (r->fd < 0 || uv_poll_init(&p->m->loop, &r->poll, r->fd) < 0) {
        if (r->fd >= 0)
            close(r->fd);
        free(r);
        return -1;
    }
    r->poll.data = p;
    p->handles++; /* till say_room_closed_cb */
    p->say_room = r;
    if (uv_poll_start(&r->poll, UV_WRITABLE, say_room_cb) < 0) {
        say_room_stop(p);
        return -1;
    }
    return 0;
}

void wd__m_proc_flush(wd_proc_t *p)
{
    uv_os_fd_t fd;
    wd_say_t *s;
    int n;

    if (p->pipe_closed || uv_fileno((uv_handle_t *)&p->pipe, &fd) < 0) {
        say_drop(p);
        return;
    }
    while ((s = p->says) != NULL) {
        n = wd_scm_send(fd, s->bytes + s->off, s->len - s->off, s->fd >= 0 ? &s->fd : NULL,
                        s->fd >= 0, MSG_DONTWAIT);
        if (n == -EAGAIN || n == -EWOULDBLOCK) {
            (void)say_room_start(p, fd); /* else the next tick tries again */
            return;
        }
        if (n < 0) {
            wd_log_debug("group %s worker %d (pid %d): cannot send %.*s: %s", p->g->name, p->slot,
                         p->pid, (int)s->len - 1, s->bytes, strerror(-n));
            say_drop(p); /* a worker gone: its exit is seen and logged */
            return;
        }
        s->off += (size_t)n;
        if (s->fd >= 0) { /* it went with the first byte */
            close(s->fd);
            s->fd = -1;
        }
        if (s->off < s->len)
            return;
        p->says = s->next;
        if (p->says == NULL)
            p->says_last = NULL;
        free(s);
    }
    say_room_stop(p);
}

/* A line of at most a few hundred bytes on a socketpair the worker reads at every turn of its
 * loop goes whole at once, or the worker is gone (and its exit will be seen). Only a worker that
 * stopped reading (a stuck loop, which the watchdog handles, or a stopped process) leaves lines
 * waiting, in order: the master's tick sends them once the worker reads again (the first line,
 * "logs", with the worker's log pipes, goes before the worker starts: wd__m_logs_give). */
void wd__m_proc_say(wd_proc_t *p, const char *line)
{
    wd__m_proc_say_fd(p, line, -1);
}

void wd__m_proc_say_fd(wd_proc_t *p, const char *line, int fd)
{
    size_t len = strlen(line);
    wd_say_t *s = xmalloc(sizeof *s + len);

    s->next = NULL;
    s->fd = fd;
    s->len = len;
    s->off = 0;
    memcpy(s->bytes, line, len);
    if (p->says_last != NULL)
        p->says_last->next = s;
    else
        p->says = s;
    p->says_last = s;
    wd__m_proc_flush(p);
}

void wd__m_proc_kill_cb(uv_timer_t *t)
{
    wd_proc_t *p = t->data;

    if (p->pid <= 0)
        return;
    if (p->state == WD_PROC_STARTING && !p->deadlocked) {
        char loading[sizeof p->loading + 16];

        /* Which import hangs, and where: what it said it loads, and its Python stacks, dumped to
         * the log as the watchdog's (SIGUSR2: python_glue/dump.c, from the signal handler, so
         * that an import holding the GIL in C does not stop it); killed a moment later. Without
         * them, a mount whose import deadlocked (gi.repository) was one line naming none of the
         * group's mounts (helper-63). */
        snprintf(p->failed, sizeof p->failed, "not ready after %g s (startup-timeout)%s",
                 p->g->conf->startup_timeout, wd__m_proc_loading(p, loading, sizeof loading));
        wd_log_error("group %s worker %d (pid %d) %s; its Python stacks follow, then it is killed",
                     p->g->name, p->slot, p->pid, p->failed);
        p->deadlocked = 1;
        uv_process_kill(&p->process, SIGUSR2);
        uv_timer_start(&p->timer, wd__m_proc_kill_cb, WD_MASTER_DUMP_MS, 0);
        return;
    } else if (!p->deadlocked) { /* else its stacks were dumped: the kill was said then */
        wd_log_warn("group %s worker %d (pid %d) still running %.0f s after it was told to stop; "
                    "killing it",
                    p->g->name, p->slot, p->pid,
                    (double)(uv_now(&p->m->loop) - p->ready_at) / 1000.0);
    }
    uv_process_kill(&p->process, SIGKILL);
}

/* See master_int.h. */
json_t *wd__m_group_stop(wd_group_t *g, const char *why)
{
    json_t *pids = json_array();

    g->stopped = 1;
    g->drain_until = 0;
    for (int k = 0; k < g->n_slots; k++) {
        wd_slot_t *s = g->slots[k];

        uv_timer_stop(&s->timer);
        s->backing_off = 0;
        if (s->cur != NULL) {
            json_array_append_new(pids, json_integer(s->cur->pid));
            wd__m_proc_drain(s->cur, why);
        }
        if (s->repl != NULL)
            wd__m_proc_drain(s->repl, why);
    }
    wd_log_info("group %s stopped", g->name);
    wd__m_listeners_refuse_if_stopped(g);
    return pids;
}

/* Tells a worker to stop accepting, finish its requests and exit; SIGKILL after its group's
 * graceful-timeout + shutdown-timeout. It leaves its slot. */
void wd__m_proc_drain(wd_proc_t *p, const char *why)
{
    const wd_group_conf_t *conf = p->g->conf;

    if (p->s != NULL) {
        if (p->s->cur == p)
            p->s->cur = NULL;
        if (p->s->repl == p)
            p->s->repl = NULL;
        p->s = NULL;
    }
    if (p->pid <= 0 || p->state == WD_PROC_DRAINING)
        return;
    wd_log_info("group %s worker %d (pid %d): stopping (%s)", p->g->name, p->slot, p->pid, why);
    p->state = WD_PROC_DRAINING;
    p->ready_at = uv_now(&p->m->loop);
    /* Its group stopping, or wsgid: the worker takes what waits in the listen queue, then says
     * "unlistened" (wd__m_listeners_refuse_if_stopped). */
    p->told_last = p->g->stopped || p->m->stopping;
    wd__m_proc_say(p, p->told_last ? "stop last\n" : "stop\n");
    uv_process_kill(&p->process, SIGTERM);
    /* A deadlocked worker keeps the watchdog's kill, due WD_MASTER_DUMP_MS after its stacks:
     * its replacement is often ready before that, and the graceful deadline would let it live
     * graceful-timeout + shutdown-timeout more. */
    if (!p->deadlocked)
        uv_timer_start(&p->timer, wd__m_proc_kill_cb,
                       (uint64_t)((conf->graceful_timeout + conf->shutdown_timeout) * 1000.0) +
                           WD_MASTER_KILL_SLACK_MS,
                       0);
}
