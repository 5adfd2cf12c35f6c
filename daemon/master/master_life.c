/* The master: messages from a worker, stopping workers, exits and respawns. See master_int.h. */
#include "master_int.h"
#include "alloc.h"
#include "notify.h"
#include "log.h"
#include "utf8.h"
#include "spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static void slot_respawn(wd_slot_t *s);

/* A new worker for s, with its group's config; during a rolling operation, for a slot the
 * operation has replaced already, with the operation's (one of the old config there stayed
 * after the operation said every worker was replaced, on listeners it may have closed). */
static wd_proc_t *spawn_for(wd_master_t *m, wd_slot_t *s)
{
    const wd_group_t *g = s->g;
    const wd_op_t *op = g->op;

    if (op != NULL && s->slot - 1 < op->next)
        return wd__m_spawn(m, s, op->gen, op->conf, op->ls, op->n_ls);
    return wd__m_spawn(m, s, g->gen, g->conf, g->ls, g->n_ls);
}

/* ---- messages from a worker --------------------------------------------------------------- */

static void start_progress(wd_master_t *m)
{
    char msg[128];

    if (!m->starting || ++m->n_first_ready < m->n_first)
        return;
    m->starting = 0;
    wd_log_info("all workers ready (%zu groups, %zu processes)", m->n_groups, m->n_first);
    snprintf(msg, sizeof msg, "serving %zu groups, %zu workers", m->n_groups, m->n_first);
    wd_notify_ready(msg);
}

void wd__m_abort_start(wd_master_t *m, wd_group_t *g, const char *why);

/* A replacement that became ready takes the slot; the worker it replaces drains. */
static void repl_ready(wd_slot_t *s, wd_proc_t *p)
{
    wd_proc_t *old = s->cur;
    wd_repl_cb cb = s->repl_cb;
    void *ctx = s->repl_ctx;
    int old_pid = old != NULL ? old->pid : 0;

    s->repl = NULL;
    s->repl_cb = NULL;
    s->repl_ctx = NULL;
    s->cur = p;
    if (old != NULL) {
        old->s = NULL;
        wd__m_proc_drain(old, "replaced");
    }
    if (cb != NULL)
        cb(s, ctx, 1, NULL, old_pid, p->pid);
}

static void repl_failed(wd_slot_t *s, wd_proc_t *p, int pid, const char *why)
{
    wd_repl_cb cb = s->repl_cb;
    void *ctx = s->repl_ctx;

    s->repl = NULL;
    s->repl_cb = NULL;
    s->repl_ctx = NULL;
    p->s = NULL;
    wd_utf8_copy(s->last_error, sizeof s->last_error, why);
    if (cb != NULL)
        cb(s, ctx, 0, why, s->cur != NULL ? s->cur->pid : 0, pid);
}

/* Tells every ready or stopping worker of g which workers of g are ready ("siblings", spawn.h),
 * for the keep-alive balance (daemon/worker/balance.h) and the hand-over of a stopping worker's
 * idle connections (master_life.c: adopt), a group of one process too: its replacement takes
 * them. The workers that left since need no message: their records no longer say ready, or no
 * longer hold their pid. A stopping worker hands over as long as its list names a ready worker,
 * a kept FastCGI connection busy at the stop once its answer is sent: told only while it was
 * ready, it knew none once the workers it had been told of were replaced in turn (a restart
 * after a restart, maximum-requests under load), served such a connection on for
 * WD_STOP_FCGI_S and then closed it, behind an answer or once idle, where nginx's next request
 * met the close (a POST answered 502; helper-100). */
static void tell_siblings(wd_master_t *m, wd_group_t *g)
{
    char line[16 + WD_SIBLINGS_MAX * 24];
    size_t len = (size_t)snprintf(line, sizeof line, "siblings");
    int n = 0;
    wd_proc_t *p;

    for (p = m->procs; p != NULL && n < WD_SIBLINGS_MAX; p = p->next) {
        if (p->g != g || p->state != WD_PROC_READY || p->pid <= 0 || p->record < 0)
            continue;
        len += (size_t)snprintf(line + len, sizeof line - len, " %d:%d", p->record, p->pid);
        n++;
    }
    snprintf(line + len, sizeof line - len, "\n");
    for (p = m->procs; p != NULL; p = p->next)
        if (p->g == g && (p->state == WD_PROC_READY || p->state == WD_PROC_DRAINING) &&
            p->pid > 0 && !p->told_last && !p->pipe_closed)
            wd__m_proc_say(p, line);
}

static void proc_ready(wd_master_t *m, wd_proc_t *p)
{
    wd_slot_t *s = p->s;
    int first;

    /* Past startup-timeout, its stacks dumped and its kill due (wd__m_proc_kill_cb): a "ready"
     * now must not cancel that kill, which left a worker that no deadline could kill any more
     * (helper-69). */
    if (p->state != WD_PROC_STARTING || p->deadlocked)
        return;
    uv_timer_stop(&p->timer);
    p->state = WD_PROC_READY;
    p->ready_at = uv_now(&m->loop);
    if (p->g->conf->memory_limit > 0)
        p->ready_rss = wd__m_read_rss(p->pid);
    /* Its own lines first ("serving ... with N threads on CPU c"): they come through a pipe the
     * master may read 20 ms later (master_logpipe.c), and came after this line (helper-85's 7;
     * test_pin_threads read the log at "ready" and missed one). */
    if (p->logs[0] != NULL)
        wd__m_logpipe_drain(p->logs[0]);
    wd_log_info("group %s worker %d (pid %d) ready", p->g->name, p->slot, p->pid);
    if (s == NULL) {
        wd__m_proc_drain(p, "no longer needed");
        return;
    }
    s->last_error[0] = '\0';
    first = s->repl != p && !s->ever_ready;
    /* Before start_progress: known when wsgid says it is ready; and before the worker it takes
     * over from is told to stop, which then knows a worker to hand its idle connections to
     * (daemon/worker/conn.c: wd__conn_hand_over); its record says ready no more once it stops,
     * so that the others do not balance with it. */
    tell_siblings(m, p->g);
    if (s->repl == p)
        repl_ready(s, p); /* the worker it takes over from drains */
    s->ever_ready = 1;
    if (first)
        start_progress(m);
}

void wd__m_recycle_done(wd_slot_t *s, void *ctx, int ok, const char *err, int old_pid, int new_pid)
{
    const char *reason = s->recycle_why;

    (void)ctx;

    if (ok) {
        wd_log_info("group %s worker %d (pid %d) recycled: %s; its replacement is pid %d",
                    s->g->name, s->slot, old_pid, reason, new_pid);
        s->recycle_ask_pid = 0;
        s->restarts++;
        snprintf(s->last_restart, sizeof s->last_restart, "pid %d: %s", old_pid, reason);
    } else {
        wd_log_error("group %s worker %d (pid %d): its replacement failed (%s); it keeps serving",
                     s->g->name, s->slot, old_pid, err);
        if (s->cur != NULL)
            s->cur->recycling = 0;
        s->recycle_retry_at = uv_now(&s->g->m->loop) + WD_MASTER_RECYCLE_RETRY_MS;
    }
}

/* Starts a replacement for the slot of p; once it is ready p drains (the rolling-restart path). */
void wd__m_proc_recycle(wd_master_t *m, wd_proc_t *p, const char *reason)
{
    wd_slot_t *s = p->s;
    wd_group_t *g = p->g;

    if (s == NULL || s->cur != p || p->state != WD_PROC_READY || m->stopping || g->stopped ||
        g->removed || p->recycling)
        return;
    if (s->repl != NULL || uv_now(&m->loop) < s->recycle_retry_at)
        return;
    p->recycling = 1;
    wd_log_info("group %s worker %d (pid %d) asks to be recycled: %s", g->name, s->slot, p->pid,
                reason);
    /* The reason is kept in the slot, not allocated: a replacement drained before it is ready
     * (wsgid stopping, a reload superseding it) never calls back. */
    snprintf(s->recycle_why, sizeof s->recycle_why, "%s", reason);
    s->repl_cb = wd__m_recycle_done;
    s->repl_ctx = NULL;
    s->repl = spawn_for(m, s);
    if (s->repl == NULL) {
        s->repl_cb = NULL;
        s->repl_ctx = NULL;
        p->recycling = 0;
        s->recycle_retry_at = uv_now(&m->loop) + WD_MASTER_RECYCLE_RETRY_MS;
    }
}

static void adopted_closed_cb(uv_handle_t *h)
{
    free(h);
}

/* The file that came with p's "adopt" line (spawn.h), as a descriptor of ours: -1 = none. */
static int adopt_take(wd_proc_t *p)
{
    uv_pipe_t *h;
    uv_os_fd_t fd;
    int dup_fd = -1;

    if (uv_pipe_pending_count(&p->pipe) == 0) {
        if (p->n_adopt_fds == 0)
            return -1;
        dup_fd = p->adopt_fds[0];
        memmove(p->adopt_fds, p->adopt_fds + 1, --p->n_adopt_fds * sizeof(int));
        return dup_fd;
    }
    h = xmalloc(sizeof *h);
    uv_pipe_init(&p->m->loop, h, 0);
    if (uv_accept((uv_stream_t *)&p->pipe, (uv_stream_t *)h) == 0 &&
        uv_fileno((uv_handle_t *)h, &fd) == 0)
        dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    uv_close((uv_handle_t *)h, adopted_closed_cb);
    return dup_fd;
}

/* A running worker of p's group that listens on p's listener index as p does, and reads its
 * socket (nothing waits there for it, unless queued), or NULL: in turn, so that a stopping
 * worker's connections spread over the group, and one that is not being replaced itself (a
 * rolling restart replaces one worker after the other) if any. Not one of the n_tried in tried
 * (their sockets full). */
static wd_proc_t *adopter(wd_proc_t *p, size_t index, wd_proc_t *const *tried, size_t n_tried,
                          int queued)
{
    static unsigned turn;
    wd_proc_t *some[2][WD_SIBLINGS_MAX];
    size_t n[2] = {0, 0};

    for (wd_proc_t *q = p->m->procs; q != NULL; q = q->next) {
        int going, skip = 0;

        for (size_t i = 0; i < n_tried; i++)
            skip |= tried[i] == q;
        if (skip || q == p || q->g != p->g || q->state != WD_PROC_READY || q->pid <= 0 ||
            q->exited || q->pipe_closed || (q->says != NULL && !queued) ||
            index >= q->gconf->n_listen || index >= p->gconf->n_listen ||
            !wd_config_listen_same(&q->gconf->listen[index], &p->gconf->listen[index]))
            continue;
        /* Of the same configuration: a reload may have changed what a connection is to the
         * group (proxy-protocol turned on: the adopter waited for a PROXY header and closed the
         * connection behind the proxy's request, helper-96; another user). A reload that left
         * the group as it was gives its new workers another copy of the same. */
        if (q->gconf != p->gconf &&
            wd__m_group_changed(p->gen->conf, p->gconf, q->gen->conf, q->gconf))
            continue;
        going = q->recycling || q->s == NULL || q->s->cur != q || q->s->repl != NULL;
        if (n[going] < WD_SIBLINGS_MAX)
            some[going][n[going]++] = q;
    }
    turn++;
    return n[0] > 0 ? some[0][turn % n[0]] : n[1] > 0 ? some[1][turn % n[1]] : NULL;
}

/* A stopping worker hands an idle kept connection, or one that has sent nothing yet (" new"),
 * over ("adopt INDEX" with its file: spawn.h): it goes to a running worker of the group, which
 * serves the proxy's next request on it, so that no close meets one (daemon/worker/conn.c:
 * wd__conn_hand_over). One whose socket is full takes it as soon as it has room. When none runs
 * (the others stop too: the worker saw one ready that the master has told to stop since), it goes
 * back to the worker that sent it, which keeps it as it would have (closed once idle 0.5 s). */
static void adopt(wd_proc_t *p, const char *args)
{
    char *end;
    unsigned long index = strtoul(args, &end, 10);
    unsigned long long idle_ms = 0; /* how long it has waited for a request (spawn.h) */
    int fd = adopt_take(p), n = -1;
    wd_proc_t *q = NULL, *tried[WD_SIBLINGS_MAX];
    size_t n_tried = 0;
    uv_os_fd_t sock;
    const char *tail;
    char line[192];
    size_t len = 0;

    if (fd < 0) {
        wd_log_warn("group %s worker %d (pid %d): \"adopt %s\" came without its connection",
                    p->g->name, p->slot, p->pid, args);
        if (!p->exited && !p->pipe_closed)
            wd__m_proc_say(p, "handed\n");
        return;
    }
    if (*end == ' ' && end[1] >= '0' && end[1] <= '9')
        idle_ms = strtoull(end + 1, &end, 10);
    /* What the worker that takes it needs besides (spawn.h): " new" (it has sent nothing yet),
     * " peer ..." (the client its PROXY header named), passed on as it is. */
    tail = end;
    if (strncmp(end, " new", 4) == 0)
        end += 4;
    if (strncmp(end, " peer ", 6) == 0 && strlen(end) < 100)
        end += strlen(end);
    /* An adopter whose socket is full (a worker held up: some 280 lines with their connections
     * fill it) cannot take it now: the next one. It was closed, under the proxy's next request. */
    len = (size_t)snprintf(line, sizeof line, "adopt %lu %llu%s\n", index, idle_ms, tail);
    while (*end == '\0' && !p->m->stopping && n <= 0 && n_tried < WD_SIBLINGS_MAX &&
           (q = adopter(p, index, tried, n_tried, 0)) != NULL) {
        tried[n_tried++] = q;
        if (uv_fileno((uv_handle_t *)&q->pipe, &sock) == 0)
            n = wd_scm_send(sock, line, len, &fd, 1, MSG_DONTWAIT);
    }
    /* None takes it now, as a burst fills their sockets (a worker stopping with 700 idle
     * connections, the adopter reading a line a turn), or lines wait for them already: it waits
     * in one's queue, and goes as soon as that one has room (wd__m_proc_say_fd). Given back, it
     * was closed by its worker 0.5 s later, under its client's next request. */
    if (n <= 0 && *end == '\0' && !p->m->stopping && (q = adopter(p, index, NULL, 0, 1)) != NULL) {
        wd__m_proc_say_fd(q, line, fd);
        fd = -1;
        n = (int)len;
    }
    if (n <= 0 && *end == '\0' && !p->exited && !p->pipe_closed) {
        /* Back, after what waits for it already; when its socket is full too, once it reads:
         * the worker waits for it before it exits. */
        q = p;
        len = (size_t)snprintf(line, sizeof line, "adopt %lu back%s\n", index, tail);
        wd__m_proc_say_fd(p, line, fd);
        fd = -1;
        n = (int)len;
    }
    if (n > 0 && (size_t)n < len)
        wd__m_proc_say(q, line + n); /* the file went with the first byte */
    if (n > 0 && q != p)
        wd_log_debug("group %s: an idle connection of worker %d (pid %d) handed over to worker "
                     "%d (pid %d)",
                     p->g->name, p->slot, p->pid, q->slot, q->pid);
    else
        wd_log_debug("group %s: an idle connection of worker %d (pid %d) %s: no running worker "
                     "to take it",
                     p->g->name, p->slot, p->pid, n > 0 ? "given back" : "closed");
    if (fd >= 0)
        close(fd);
    /* The sender waits for each connection's fate before it exits (one given back then died
     * unread in its socket): this, or the connection back. */
    if ((n <= 0 || q != p) && *end == '\0' && !p->exited && !p->pipe_closed)
        wd__m_proc_say(p, "handed\n");
}

static void on_line(wd_proc_t *p, char *line)
{
    wd_master_t *m = p->m;

    if (p->pid <= 0 && p->state != WD_PROC_STARTING && p->state != WD_PROC_READY)
        return;
    if (strcmp(line, "ready") == 0) {
        if (!m->stopping && !p->exited) /* a dead replacement must not take its slot */
            proc_ready(m, p);
    } else if (strncmp(line, "failed", 6) == 0 && (line[6] == ' ' || line[6] == '\0')) {
        const char *msg = line[6] ? line + 7 : "failed";

        wd_utf8_copy(p->failed, sizeof p->failed, msg);
        wd_log_error("group %s worker %d (pid %d): %s", p->g->name, p->slot, p->pid, msg);
        if (p->s != NULL)
            wd_utf8_copy(p->s->last_error, sizeof p->s->last_error, msg);
        if (m->starting && p->s != NULL && !p->s->ever_ready)
            wd__m_abort_start(m, p->g,
                              "the application could not be loaded (see the Python error above)");
    } else if (strncmp(line, "loading ", 8) == 0) {
        wd_utf8_copy(p->loading, sizeof p->loading, line + 8);
    } else if (strcmp(line, "loaded") == 0) {
        p->loading[0] = '\0';
    } else if (strncmp(line, "adopt ", 6) == 0) {
        adopt(p, line + 6);
    } else if (strcmp(line, "unlistened") == 0) {
        p->unlistened = 1;
        wd__m_listeners_refuse_if_stopped(p->g);
    } else if (strncmp(line, "recycle", 7) == 0 && (line[7] == ' ' || line[7] == '\0')) {
        if (p->s != NULL && p->s->cur == p) {
            p->s->recycle_ask_pid = p->pid;
            snprintf(p->s->recycle_ask, sizeof p->s->recycle_ask, "%s",
                     line[7] ? line + 8 : "asked by the worker");
        }
        wd__m_proc_recycle(m, p, line[7] ? line + 8 : "asked by the worker");
    } else {
        wd_log_warn("group %s worker %d (pid %d): unexpected message \"%s\"", p->g->name, p->slot,
                    p->pid, line);
    }
}

const char *wd__m_proc_loading(const wd_proc_t *p, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (p->state == WD_PROC_STARTING && p->loading[0] != '\0')
        snprintf(buf, cap, " while loading %s", p->loading);
    return buf;
}

static void take_lines(wd_proc_t *p, int eof)
{
    char *nl;
    size_t n;

    while ((nl = memchr(p->line, '\n', p->line_len)) != NULL) {
        n = (size_t)(nl - p->line);
        *nl = '\0';
        if (!p->skipping)
            on_line(p, p->line);
        p->skipping = 0;
        memmove(p->line, nl + 1, p->line_len - n - 1);
        p->line_len -= n + 1;
    }
    /* An overlong line is cut (the rest of it is dropped), and a last line without '\n' still
     * counts. */
    if (p->line_len == sizeof p->line || (eof && p->line_len > 0)) {
        p->line[p->line_len == sizeof p->line ? p->line_len - 1 : p->line_len] = '\0';
        if (!p->skipping)
            on_line(p, p->line);
        p->skipping = !eof;
        p->line_len = 0;
    }
}

void wd__m_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    wd_proc_t *p = h->data;

    buf->base = p->line + p->line_len;
    buf->len = sizeof p->line - p->line_len;
}

/* What is left on p's socket, read now with the files that come with it (its last "adopt"
 * lines' connections: adopt_take). libuv reads a line that brings a file alone, and when the
 * worker has closed its end it reports the end after such a short read, with lines and their
 * files still unread (a worker that handed 3 connections over and exited: the master read the
 * first, and the proxy's requests on the other two were reset). */
static void drain_socket(wd_proc_t *p)
{
    uv_os_fd_t sock;
    ssize_t n;

    if (p->pipe_closed || uv_fileno((uv_handle_t *)&p->pipe, &sock) < 0)
        return;
    for (;;) {
        n = wd_scm_recv(sock, p->line + p->line_len, sizeof p->line - p->line_len, MSG_DONTWAIT,
                        p->adopt_fds, &p->n_adopt_fds, WD_MASTER_ADOPT_FDS);
        if (n <= 0)
            break;
        p->line_len += (size_t)n;
        take_lines(p, 0);
    }
    take_lines(p, 1);
    while (p->n_adopt_fds > 0) /* none of its lines took them */
        close(p->adopt_fds[--p->n_adopt_fds]);
}

/* The files that came with p's socket and that no "adopt" line took: closed, all of them once
 * every line read is taken, all but the newest while a line is still partial (an "adopt" line's
 * file comes with its first byte). A worker runs the app: it could send files with other lines,
 * or with none, and libuv keeps each until it is taken, so that an app filled the master's table
 * of files (20,000 in a loop of sendmsg; wsgictl lost, no worker could start: helper-96). */
static void drop_stray_files(wd_proc_t *p)
{
    size_t keep = p->line_len > 0 ? 1 : 0, left;

    while ((left = (size_t)uv_pipe_pending_count(&p->pipe) + p->n_adopt_fds) > keep) {
        int fd = adopt_take(p);

        if (fd >= 0)
            close(fd);
        if ((size_t)uv_pipe_pending_count(&p->pipe) + p->n_adopt_fds >= left)
            break; /* libuv would not give it: it goes with the pipe's close */
    }
}

void wd__m_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    wd_proc_t *p = st->data;

    if (n > 0) {
        p->line_len += (size_t)n;
        take_lines(p, 0);
        drop_stray_files(p);
    } else if (n < 0) {
        drain_socket(p);
        take_lines(p, 1);
        wd__m_close_pipe(p);
    }
}

/* ---- stopping ----------------------------------------------------------------------------- */

void wd__m_finish(wd_master_t *m)
{
    sigset_t mask, was;
    size_t i;
    int k;

    if (m->finished)
        return;
    m->finished = 1;
    wd_log_info("all workers stopped");
    /* Closing a signal handle gives the signal its default action back, which for these is to
     * kill: a SIGTERM now (systemd's, or a second stop's) would end the master with status -15
     * instead of its own. Every worker has stopped; there is nothing left for one to stop: they
     * are ignored, and blocked meanwhile, or one coming as libuv unblocks them would kill. */
    sigemptyset(&mask);
    for (i = 0; i < m->n_signals; i++)
        sigaddset(&mask, m->signals[i].signum);
    sigprocmask(SIG_BLOCK, &mask, &was);
    for (i = 0; i < m->n_signals; i++) {
        int signum = m->signals[i].signum; /* uv_close zeroes it */

        uv_close((uv_handle_t *)&m->signals[i], NULL);
        signal(signum, SIG_IGN);
    }
    sigprocmask(SIG_SETMASK, &was, NULL); /* what came meanwhile is ignored */
    uv_close((uv_handle_t *)&m->tick, NULL);
    wd__m_logpipe_close_all();
    wd__m_logs_stop();
    wd__m_output_close_all(m);
    wd__m_autoreload_stop(m);
    for (i = 0; i < m->n_stop_reqs; i++)
        wd_control_reply(m->stop_reqs[i], json_pack("{s:b}", "ok", 1));
    free(m->stop_reqs);
    m->stop_reqs = NULL;
    m->n_stop_reqs = 0;
    wd_control_close(m->control);
    m->control = NULL;
    wd_metrics_stop(&wd__m_metrics);
    wd_metrics_stop(&wd__m_agent);
    wd_metrics_stop(&wd__m_health);
    for (i = 0; i < m->n_groups; i++) {
        wd_group_t *g = m->groups[i];

        for (k = 0; k < g->n_slots; k++)
            wd__m_slot_free(g->slots[k]);
        g->n_slots = 0;
        g->removed = 1;
        wd__m_group_unref(g);
    }
    m->n_groups = 0;
}

/* Every worker drains; each one still alive after its group's graceful-timeout +
 * shutdown-timeout gets SIGKILL. The loop ends once every handle is closed. */
void wd__m_begin_stop(wd_master_t *m, int exit_code)
{
    wd_proc_t *p;
    size_t i;
    int k;

    if (m->stopping)
        return;
    m->stopping = 1;
    m->exit_code = exit_code;
    wd_notify_stopping();
    for (i = 0; i < m->n_groups; i++)
        if (m->groups[i]->op != NULL)
            wd__m_op_abandon(m->groups[i]->op);
    for (i = 0; i < m->n_groups; i++)
        for (k = 0; k < m->groups[i]->n_slots; k++)
            uv_timer_stop(&m->groups[i]->slots[k]->timer);
    for (p = m->procs; p != NULL; p = p->next) {
        if (p->state != WD_PROC_DRAINING)
            wd__m_proc_drain(p, "wsgid is stopping");
    }
    if (m->n_alive == 0)
        wd__m_finish(m);
}

void wd__m_kill_all(wd_master_t *m)
{
    wd_proc_t *p;

    for (p = m->procs; p != NULL; p = p->next)
        if (p->pid > 0)
            uv_process_kill(&p->process, SIGKILL);
}

void wd__m_abort_start(wd_master_t *m, wd_group_t *g, const char *why)
{
    if (m->stopping)
        return;
    wd_log_error("group %s: %s; stopping", g->name, why);
    wd__m_begin_stop(m, 1);
}

/* why, then what the worker was loading (" while loading app X (mount /m)", or ""). */
static void abort_start_with(wd_master_t *m, wd_group_t *g, const char *why, const char *loading)
{
    char buf[1200];

    snprintf(buf, sizeof buf, "%s%s", why, loading);
    wd__m_abort_start(m, g, buf);
}

/* ---- exits and respawns ------------------------------------------------------------------- */

static void describe_exit(char *buf, size_t len, int64_t status, int sig)
{
    if (sig != 0)
        snprintf(buf, len, "killed by signal %d (%s)", sig, wd__m_signame(sig));
    else
        snprintf(buf, len, "exited with status %d", (int)status);
}

/* Whether p's exit was asked for: wsgid is stopping, or p was told to stop (a restart, a
 * recycle, a drain: wd__m_proc_drain). A worker stops on its own only when it dies: an exit with
 * status 0 that was not asked for is an app's os._exit(0) or a C library's exit(0), as much a
 * death as os._exit(1) (helper-63: said without its request). */
static int exit_asked(const wd_master_t *m, const wd_proc_t *p)
{
    return m->stopping || p->state == WD_PROC_DRAINING;
}

/* A worker killed by a signal (a crash in an extension module, the kernel's OOM killer, a kill -9)
 * or that exited with a failure (an app's os._exit(1), a sanitizer's report) or unasked (an
 * app's os._exit(0)) leaves in the scoreboard the requests its threads were running: "; running
 * [req ID] GET /path on wsgid-py2 for 0.004 s, ...", said with its death, so that the request that
 * killed it can be found and reproduced. Empty when none ran. */
static void running_at_death(const wd_master_t *m, const wd_proc_t *p, char *buf, size_t len)
{
    const wd_score_t *sc = wd__m_record(p);
    wd_score_running_t r;
    uint64_t now;
    size_t used = 0;
    int i, shown = 0, more = 0;

    buf[0] = '\0';
    if (sc == NULL)
        return;
    now = wd__m_now_ns();
    for (i = 0; i < WD_SCORE_RUNNING; i++) {
        int n;

        if (!wd_score_running_read(&sc->running[i], &r))
            continue;
        if (shown == WD_MASTER_DEATH_REQUESTS) {
            more++;
            continue;
        }
        n = snprintf(buf + used, len - used, "%s [req %s] %s %.100s on wsgid-py%d for %.3f s",
                     shown == 0 ? "; running" : ",", r.id, r.method, r.path, i + 1,
                     now > r.start_ns ? (double)(now - r.start_ns) / 1e9 : 0.0);
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
        shown++;
    }
    if (more > 0)
        snprintf(buf + used, len - used, " and %d more", more);
}

static void log_exit(wd_master_t *m, wd_proc_t *p, const char *how, int64_t status, int sig)
{
    wd_log_level_t level = WD_LOG_ERROR;
    char running[WD_MASTER_DEATH_REQUESTS * 256];
    int failed = sig != 0 || status != 0, asked = exit_asked(m, p);

    if (asked)
        level = failed ? WD_LOG_WARN : WD_LOG_INFO;
    else if (!failed)
        level = WD_LOG_WARN;
    running[0] = '\0';
    if (failed || !asked)
        running_at_death(m, p, running, sizeof running);
    wd_log(level, "group %s worker %d (pid %d) %s%s", p->g->name, p->slot, p->pid, how, running);
}

static void backoff_cb(uv_timer_t *t)
{
    wd_slot_t *s = t->data;

    s->backing_off = 0;
    slot_respawn(s);
}

static void respawn_later(wd_slot_t *s, unsigned delay)
{
    s->backing_off = 1;
    wd_log_info("group %s worker %d: respawning in %u s", s->g->name, s->slot, delay);
    uv_timer_start(&s->timer, backoff_cb, (uint64_t)delay * 1000, 0);
}

static int group_active(wd_group_t *g)
{
    return !g->m->stopping && !g->stopped && !g->removed;
}

/* Fills an empty slot again (after a crash, or a backoff). */
static void slot_respawn(wd_slot_t *s)
{
    wd_group_t *g = s->g;

    if (!group_active(g) || s->cur != NULL || s->repl != NULL || s->backing_off)
        return;
    s->cur = spawn_for(g->m, s);
    if (s->cur == NULL) {
        s->backoff = s->backoff ? s->backoff : 1;
        respawn_later(s, s->backoff);
    }
}

static void slot_crashed(wd_master_t *m, wd_slot_t *s, wd_proc_t *p, int was_ready)
{
    uint64_t now = uv_now(&m->loop);

    if (was_ready && now - p->ready_at >= WD_MASTER_STABLE_MS) {
        s->backoff = 0;
        s->quick_respawned = 0;
    }
    s->restarts++;
    if (was_ready && !s->quick_respawned && now - p->started_at < WD_MASTER_QUICK_DEATH_MS) {
        /* The first death of a worker that was serving (kill -9, a crashing request): it is
         * replaced at once so that its siblings are not left alone with the load; only a
         * second quick death in a row is a crash loop and backs off. */
        s->quick_respawned = 1;
        slot_respawn(s);
    } else if (!was_ready || now - p->started_at < WD_MASTER_QUICK_DEATH_MS) {
        s->backoff = s->backoff == 0 ? 1 : s->backoff * 2;
        if (s->backoff > WD_MASTER_BACKOFF_MAX)
            s->backoff = WD_MASTER_BACKOFF_MAX;
        respawn_later(s, s->backoff);
    } else {
        slot_respawn(s);
    }
}

void wd__m_exit_cb(uv_process_t *process, int64_t status, int sig)
{
    wd_proc_t *p = process->data;
    wd_master_t *m = p->m;
    wd_slot_t *s;
    char how[128 + sizeof p->loading + 16], loading[sizeof p->loading + 16];
    int was_ready, died, pid = p->pid;

    p->exited = 1;
    drain_socket(p); /* its exit may be seen before its last lines */
    wd__m_close_pipe(p);
    /* Its last log lines, and what it wrote to its stdout and stderr as it died (a fatal error's
     * dump), come first. */
    wd__m_logpipe_detach(&p->logs[0]);
    wd__m_logpipe_detach(&p->logs[1]);
    died = sig != 0 || status != 0 || !exit_asked(m, p);
    wd__m_output_detach(&p->out[0], died);
    wd__m_output_detach(&p->out[1], died);
    s = p->s;
    was_ready = p->state == WD_PROC_READY;
    describe_exit(how, sizeof how, status, sig);
    /* A worker that dies in an import says which app it was loading (helper-63: a SIGSEGV in one
     * of 100 mounts said only "killed by signal 11"). */
    snprintf(how + strlen(how), sizeof how - strlen(how), "%s",
             wd__m_proc_loading(p, loading, sizeof loading));
    log_exit(m, p, how, status, sig);
    /* Nobody may signal this pid any more: it has been reaped and could be reused. */
    p->pid = 0;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, wd__m_proc_close_cb);
    uv_close((uv_handle_t *)process, wd__m_proc_close_cb);
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        m->procs = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    m->n_alive--;
    wd__m_record_release(p);
    p->s = NULL;

    if (s != NULL && s->repl == p) {
        repl_failed(s, p, pid, p->failed[0] ? p->failed : how);
        if (s->cur == NULL && !s->backing_off && group_active(s->g))
            slot_crashed(m, s, p, 0);
    } else if (s != NULL && s->cur == p) {
        s->cur = NULL;
        if (!p->failed[0])
            wd_utf8_copy(s->last_error, sizeof s->last_error, how);
        if (m->starting && !s->ever_ready) {
            if (sig == 0 && status == WD_WORKER_EXIT_APP)
                wd__m_abort_start(
                    m, s->g, "the application could not be loaded (see the Python error above)");
            else if (p->failed[0] && strstr(p->failed, "startup-timeout") != NULL)
                abort_start_with(m, s->g, "the application could not be loaded in time", loading);
            else
                abort_start_with(m, s->g, "a worker exited before it was ready", loading);
        } else if (group_active(s->g) && s->repl == NULL) {
            slot_crashed(m, s, p, was_ready);
        }
    }
    wd__m_listeners_refuse_if_stopped(p->g);
    wd__m_op_board_go(p->g); /* its record freed: an operation waiting for one goes on */
    if (m->stopping && m->n_alive == 0)
        wd__m_finish(m);
}
