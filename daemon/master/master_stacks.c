/* The master: `wsgictl stacks GROUP`, the Python stacks of every thread of a group's workers.
 * See master_int.h.
 *
 * Each worker has a pipe to the master (spawn.h: the master keeps the read end in
 * wd_proc_t.stacks_fd). The master sends WD_WORKER_SIG_STACKS to every worker of the group; in
 * the worker, a signal handler writes the stacks of every interpreter's threads to the pipe
 * (python_glue/dump.c, with the dump faulthandler uses), without the GIL (so a thread that holds
 * the GIL in C does not stop it), then the worker's own handler, chained after it, writes
 * WD_STACKS_END
 * (daemon/worker/stacks.c). The master reads the pipes every WD_STACKS_POLL_MS until each has
 * given its end line or nothing more came for WD_STACKS_WAIT_MS (WD_STACKS_LONGEST_MS in all),
 * and answers with one section per worker,
 * each thread line naming the wsgid thread and the request it runs (from the scoreboard). Only
 * one collection runs at a time. */
#include "master_int.h"
#include "alloc.h"
#include "log.h"
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define WD_STACKS_WAIT_MS 2000
/* A worker still writing its dump (many threads, a busy CPU) is waited for, up to this in all
 * (wsgictl stacks waits 30 s by default). */
#define WD_STACKS_LONGEST_MS 20000
#define WD_STACKS_POLL_MS 20
#define WD_STACKS_MAX (4u << 20) /* bytes kept per worker */

typedef struct stacks_worker {
    int fd; /* a dup of the proc's stacks_fd: the proc may go away meanwhile */
    int pid, slot;
    const wd_score_t *sc; /* its record in its group's scoreboard (st holds the group), or NULL */
    int done;             /* 2: its end line came; 1: it exited (gone) or wrote too much (cut) */
    int gone, cut;
    int starting; /* it had not said it was ready when asked */
    char *buf;
    size_t len, cap;
} stacks_worker_t;

struct wd_stacks {
    wd_master_t *m;
    wd_control_req_t *req;
    char *group;
    wd_group_t *g; /* a reference: its scoreboard stays while the stacks come */
    uv_timer_t timer;
    uint64_t started, deadline;
    stacks_worker_t *w;
    size_t n;
};

int wd__m_stacks_pipe(int p[2])
{
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    /* The worker writes from a signal handler: it must never block there (a master that stopped
     * reading would hold that thread for ever), so its end does not block, and the pipe is
     * made big enough for a worker with many threads (at best: 1 MiB is the usual limit). */
    fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
    if (fcntl(p[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(p[1], F_SETFL, O_NONBLOCK) < 0) {
        int e = errno;

        close(p[0]);
        close(p[1]);
        p[0] = p[1] = -1;
        return -e;
    }
    return 0;
}

/* Reads what the worker wrote; done once the end line came (or the pipe closed). */
static void worker_read(stacks_worker_t *w)
{
    const size_t end_len = sizeof WD_STACKS_END - 1;
    char *end;
    ssize_t n;

    while (!w->done) {
        if (w->cap - w->len < 65536 + 1) {
            w->cap = w->cap ? w->cap * 2 : 131072;
            w->buf = xrealloc(w->buf, w->cap);
        }
        n = read(w->fd, w->buf + w->len, w->cap - w->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            w->done = w->gone = 1; /* the worker exited: its end of the pipe closed */
        if (n <= 0)
            break;
        w->len += (size_t)n;
        w->buf[w->len] = '\0';
        end = w->len >= end_len ? memmem(w->buf, w->len, WD_STACKS_END, end_len) : NULL;
        if (end != NULL) {
            w->len = (size_t)(end - w->buf);
            w->buf[w->len] = '\0';
            w->done = 2;
        } else if (w->len > WD_STACKS_MAX) {
            w->done = w->cut = 1;
        }
    }
}

/* What the scoreboard says of the thread with this ident in record r of pid: " wsgid-pyN [req
 * ID METHOD PATH, running 1.2 s]", " wsgid-pyN [idle]", " main thread (event loop)", or "". */
static void thread_note(wd_master_t *m, const stacks_worker_t *w, uint64_t ident, uint64_t now,
                        char *buf, size_t cap)
{
    const wd_score_t *sc = w->sc;
    wd_score_running_t r;

    buf[0] = '\0';
    if (sc == NULL || wd_score_get(&sc->pid) != (uint64_t)w->pid || ident == 0)
        return;
    if (ident == wd_score_get(&sc->main_ident)) {
        snprintf(buf, cap, " main thread (event loop)");
        return;
    }
    for (size_t i = 0; i < WD_SCORE_RUNNING; i++) {
        if (wd_score_get(&sc->running[i].thread_ident) != ident)
            continue;
        if (wd_score_running_read(&sc->running[i], &r))
            snprintf(buf, cap, " wsgid-py%zu [req %s %s %s, running %.1f s]", i + 1, r.id, r.method,
                     r.path, now > r.start_ns ? (double)(now - r.start_ns) / 1e9 : 0.0);
        else
            snprintf(buf, cap, " wsgid-py%zu [idle]", i + 1);
        return;
    }
}

/* head_nl: the newline ending a thread's header line. Whether the block it heads shows no Python
 * frame (its next line is faulthandler's "  <no Python frame>"). */
static int frameless_block(const char *head_nl)
{
    return head_nl[0] == '\n' && strncmp(head_nl + 1, "  <no Python frame>\n", 20) == 0;
}

/* head_nl as above: the last character of the block it heads (the newline of its blank line, or
 * of its last line at the end of the dump). */
static const char *block_end(const char *head_nl)
{
    const char *p = head_nl;

    while (p[0] == '\n' && p[1] != '\0' && p[1] != '\n') {
        const char *next = strchr(p + 1, '\n');

        if (next == NULL)
            return p + strlen(p) - 1;
        p = next;
    }
    return p[0] == '\n' && p[1] == '\n' ? p + 1 : p;
}

/* Where a header line's thread ident starts (its "0x"), or NULL for another line. */
static const char *header_hex(const char *line)
{
    if (strncmp(line, "Thread 0x", 9) == 0)
        return line + 7;
    if (strncmp(line, "Current thread 0x", 17) == 0)
        return line + 15;
    return NULL;
}

typedef struct {
    uint64_t ident;
    int framed; /* one of its blocks has Python frames */
    int shown;  /* a frameless block of it was kept */
} thread_seen_t;

static thread_seen_t *seen_find(thread_seen_t *seen, size_t n, uint64_t ident)
{
    for (size_t i = 0; i < n; i++)
        if (seen[i].ident == ident)
            return &seen[i];
    return NULL;
}

/* The dump (python_glue/dump.c: faulthandler's format) with each "Thread 0x..." / "Current
 * thread 0x..." line annotated, and each thread once.
 *
 * The worker lists each ident once already (python_glue/dump.c: a thread of ours has a state in
 * each interpreter, and the helper threads, wsgid-intr and wsgid-gil, take the GIL with states
 * the main thread made, which keep its ident). Should a dump still hold several blocks of one
 * ident, those with frames stay, or the first when none has any. */
static char *annotate(wd_master_t *m, const stacks_worker_t *w, uint64_t now)
{
    char *out = NULL, note[300];
    size_t out_len = 0, n_seen = 0, cap_seen = 0;
    FILE *f = open_memstream(&out, &out_len);
    const char *text = w->buf != NULL ? w->buf : "", *line, *nl, *hex;
    thread_seen_t *seen = NULL, *t;

    if (f == NULL)
        abort();
    for (line = text; *line != '\0' && (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        uint64_t ident;

        if ((hex = header_hex(line)) == NULL)
            continue;
        ident = strtoull(hex, NULL, 16);
        if ((t = seen_find(seen, n_seen, ident)) == NULL) {
            if (n_seen == cap_seen) {
                cap_seen = cap_seen ? cap_seen * 2 : 16;
                seen = xrealloc(seen, cap_seen * sizeof *seen);
            }
            t = &seen[n_seen++];
            *t = (thread_seen_t){.ident = ident};
        }
        t->framed |= !frameless_block(nl);
    }
    for (line = text; *line != '\0'; line = nl + 1) {
        size_t len;

        nl = strchr(line, '\n');
        if (nl == NULL)
            nl = line + strlen(line) - 1;
        len = (size_t)(nl - line) + 1;
        if ((hex = header_hex(line)) != NULL) {
            char *after;
            uint64_t ident = strtoull(hex, &after, 16);
            int frameless = frameless_block(nl);

            t = seen_find(seen, n_seen, ident);
            if (t != NULL && frameless && (t->framed || t->shown)) {
                nl = block_end(nl);
                continue;
            }
            if (t != NULL && frameless)
                t->shown = 1;
            thread_note(m, w, ident, now, note, sizeof note);
            fwrite(line, 1, (size_t)(after - line), f);
            fputs(note, f);
            fwrite(after, 1, len - (size_t)(after - line), f);
        } else {
            fwrite(line, 1, len, f);
        }
        if (nl[0] == '\0')
            break;
    }
    free(seen);
    if (fclose(f) != 0)
        abort();
    while (out_len >= 2 && out[out_len - 1] == '\n' && out[out_len - 2] == '\n')
        out[--out_len] = '\0'; /* the blank line before a block left out at the end */
    return out;
}

/* A JSON string of text, which may hold bytes that are not UTF-8 (a file path): those become
 * '?' then. */
static json_t *text_json(char *text)
{
    json_t *v = json_string(text);

    if (v != NULL)
        return v;
    for (char *p = text; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    return json_string(text);
}

static void stacks_free_cb(uv_handle_t *h)
{
    struct wd_stacks *st = h->data;

    for (size_t i = 0; i < st->n; i++) {
        if (st->w[i].fd >= 0)
            close(st->w[i].fd);
        free(st->w[i].buf);
    }
    free(st->w);
    free(st->group);
    wd__m_group_unref(st->g);
    free(st);
}

/* Why w gave no whole dump, for the log and for wsgictl (which prints it under the worker's
 * section). A worker that exited before it answered was said as one that did not answer within
 * the wait, at once ("no stacks within 0.0 s"), and wsgictl printed "no answer" and nothing more
 * (a stopped group's worker between its exit and its reaping: helper-98). */
static void why_not(const struct wd_stacks *st, const stacks_worker_t *w, char *buf, size_t cap)
{
    if (w->done == 2) /* its end line alone: no Python yet, or none any more */
        snprintf(buf, cap, "worker %d (pid %d) has no Python thread to dump: it %s", w->slot,
                 w->pid, w->starting ? "is starting (Python is being set up)" : "is stopping");
    else if (w->gone)
        snprintf(buf, cap,
                 "worker %d (pid %d) exited before it answered%s (it was stopped or replaced, or "
                 "it crashed: the error log says which); wsgictl stacks %s again dumps the "
                 "workers that run now",
                 w->slot, w->pid, w->len > 0 ? ", in the middle of its stacks" : "", st->group);
    else if (w->cut)
        snprintf(buf, cap, "worker %d (pid %d): its stacks passed %u MiB: the rest is left out",
                 w->slot, w->pid, WD_STACKS_MAX >> 20);
    else
        snprintf(buf, cap, "worker %d (pid %d)%s: no stacks within %.1f s", w->slot, w->pid,
                 w->starting ? " is starting (before Python it may not answer at all)" : "",
                 (double)(uv_now(&st->m->loop) - st->started) / 1000.0);
    if (w->starting && strlen(buf) + 1 < cap)
        snprintf(buf + strlen(buf), cap - strlen(buf), "; wsgictl status %s says when it is ready",
                 st->group);
}

/* Whether no worker answered because every one exited before it wrote anything, while its group
 * stopped (or a reload removed it): nothing to dump, as for a group stopped already. */
static int all_gone_stopped(const struct wd_stacks *st)
{
    for (size_t i = 0; i < st->n; i++)
        if (!st->w[i].gone || st->w[i].len > 0)
            return 0;
    return st->g->stopped || st->g->removed;
}

static void finish(struct wd_stacks *st)
{
    json_t *workers = json_array();
    char why[512];
    uint64_t now;

    now = wd__m_now_ns();
    if (all_gone_stopped(st)) {
        json_decref(workers);
        if (st->g->removed)
            wd_control_reply_error(st->req, "group %s was removed by a reload: no worker to dump",
                                   st->group);
        else
            wd_control_reply_error(st->req,
                                   "group %s is stopped: no worker to dump (wsgictl start %s)",
                                   st->group, st->group);
        goto done;
    }
    for (size_t i = 0; i < st->n; i++) {
        stacks_worker_t *w = &st->w[i];
        char *text = annotate(st->m, w, now);
        json_t *o;

        o = json_pack("{s:s,s:i,s:i,s:b,s:o}", "group", st->group, "slot", w->slot, "pid", w->pid,
                      "answered", w->done == 2, "stacks", text_json(text));
        /* An empty dump is not an answer either: a worker still setting Python up answered its
         * end line alone, and wsgictl printed an empty section and exited 0. */
        if (w->done != 2 || w->len == 0) {
            why_not(st, w, why, sizeof why);
            wd_log_warn("group %s %s (wsgictl stacks)", st->group, why);
            json_object_set_new(o, "error", json_string(why));
        }
        json_array_append_new(workers, o);
        free(text);
    }
    wd_control_reply(st->req, json_pack("{s:b,s:o}", "ok", 1, "workers", workers));
done:
    st->m->stacks = NULL;
    uv_timer_stop(&st->timer);
    uv_close((uv_handle_t *)&st->timer, stacks_free_cb);
}

static void poll_cb(uv_timer_t *t)
{
    struct wd_stacks *st = t->data;
    size_t done = 0;

    uint64_t now = uv_now(t->loop);

    for (size_t i = 0; i < st->n; i++) {
        size_t len = st->w[i].len;

        worker_read(&st->w[i]);
        done += st->w[i].done != 0;
        /* Still writing: not a worker that does not answer. Answering with what had come after
         * 2 s named as silent every worker of a group whose dumps shared a CPU (helper-89). */
        if (!st->w[i].done && st->w[i].len > len)
            st->deadline = now + WD_STACKS_WAIT_MS;
    }
    if (st->deadline > st->started + WD_STACKS_LONGEST_MS)
        st->deadline = st->started + WD_STACKS_LONGEST_MS;
    if (done == st->n || now >= st->deadline)
        finish(st);
}

/* Sections in slot order, the older worker of a slot (draining) first. */
static int by_slot(const void *a, const void *b)
{
    const stacks_worker_t *x = a, *y = b;

    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* Asks w's worker for its stacks, after throwing away what a stray signal may have left. */
static void worker_ask(stacks_worker_t *w)
{
    char junk[4096];

    while (read(w->fd, junk, sizeof junk) > 0)
        ;
    if (kill(w->pid, WD_WORKER_SIG_STACKS) < 0)
        w->done = w->gone = 1;
}

void wd__m_stacks(wd_master_t *m, wd_control_req_t *req, const char *group)
{
    wd_group_t *g = group != NULL ? wd__m_find_group(m, group) : NULL;
    struct wd_stacks *st;
    wd_proc_t *p;

    if (g == NULL) {
        wd_control_reply_error(req, group ? "no group %s" : "stacks: name a group", group);
        return;
    }
    if (m->stacks != NULL) {
        /* It may wait for workers still writing, up to WD_STACKS_LONGEST_MS: "try again in
         * 2 s", from when it waited 2 s at most, sent a script's retry into the same refusal. */
        wd_control_reply_error(req,
                               "another wsgictl stacks (group %s) is running, %.1f s so far: it "
                               "waits for workers still writing, %d s at most; try again once it "
                               "has answered",
                               m->stacks->group,
                               (double)(uv_now(&m->loop) - m->stacks->started) / 1000.0,
                               WD_STACKS_LONGEST_MS / 1000);
        return;
    }
    for (p = m->procs; p != NULL; p = p->next)
        if (p->g == g && p->pid > 0 && p->stacks_fd >= 0)
            break;
    /* Nothing to dump is a failure, as restart of a stopped group is: a script that collects
     * stacks got "no running worker" and exit status 0 (helper-89). */
    if (p == NULL) {
        if (g->stopped)
            wd_control_reply_error(req, "group %s is stopped: no worker to dump (wsgictl start %s)",
                                   g->name, g->name);
        else
            wd_control_reply_error(req,
                                   "group %s has no running worker (they back off after a crash: "
                                   "wsgictl status %s)",
                                   g->name, g->name);
        return;
    }
    st = xcalloc(1, sizeof *st);
    st->m = m;
    st->req = req;
    st->group = xstrdup(g->name);
    st->g = wd__m_group_ref(g);
    for (p = m->procs; p != NULL; p = p->next) {
        stacks_worker_t *w;

        if (p->g != g || p->pid <= 0 || p->stacks_fd < 0)
            continue;
        st->w = xrealloc(st->w, (st->n + 1) * sizeof *st->w);
        w = &st->w[st->n++];
        memset(w, 0, sizeof *w);
        w->fd = fcntl(p->stacks_fd, F_DUPFD_CLOEXEC, 0);
        w->pid = p->pid;
        w->slot = p->slot;
        w->starting = p->state == WD_PROC_STARTING;
        w->sc = wd__m_record(p);
        if (w->fd < 0)
            w->done = 1;
        else
            worker_ask(w);
    }
    if (st->n > 1)
        qsort(st->w, st->n, sizeof *st->w, by_slot);
    wd_log_info("group %s: stacks of %zu workers asked for (wsgictl stacks)", g->name, st->n);
    m->stacks = st;
    uv_timer_init(&m->loop, &st->timer);
    st->timer.data = st;
    st->started = uv_now(&m->loop);
    st->deadline = st->started + WD_STACKS_WAIT_MS;
    uv_timer_start(&st->timer, poll_cb, WD_STACKS_POLL_MS, WD_STACKS_POLL_MS);
}
