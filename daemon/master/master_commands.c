/* The master: status snapshots and the control socket's commands. See master_int.h. */
#include "master_int.h"
#include "alloc.h"
#include "control_proto.h"
#include "log.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* ---- status ------------------------------------------------------------------------------- */

uint64_t wd__m_read_rss(int pid)
{
    char path[64];
    unsigned long long size, rss = 0;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/statm", pid);
    f = fopen(path, "re");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &rss) != 2)
        rss = 0;
    fclose(f);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void status_proc(wd_master_t *m, wd_status_worker_t *w, wd_proc_t *p, wd_slot_t *s)
{
    static const char *const states[] = {"starting", "ready", "draining"};

    w->group = p->g->name;
    w->slot = p->slot;
    w->pid = p->pid;
    w->display_name = wd__m_display_name(p->g->conf, p->slot);
    w->state = states[p->state];
    w->uptime = (double)(uv_now(&m->loop) - p->started_at) / 1000.0;
    w->restarts = s != NULL ? s->restarts : 0;
    p->rss = wd__m_read_rss(p->pid);
    w->rss_bytes = p->rss;
    w->last_error = s != NULL && s->last_error[0] ? s->last_error : NULL;
    w->last_restart = s != NULL && s->last_restart[0] ? s->last_restart : NULL;
    w->score = wd__m_record(p);
}

void wd_master_status(wd_master_t *m, wd_status_t *out)
{
    wd_status_group_t *groups = xcalloc(m->n_groups, sizeof *groups);
    wd_status_worker_t *workers = xcalloc(m->n_alive + 64, sizeof *workers);
    size_t n = 0, cap = m->n_alive + 64, i;
    wd_proc_t *p;
    int k;

    for (i = 0; i < m->n_groups; i++) {
        wd_group_t *g = m->groups[i];

        groups[i] = g->totals;
        groups[i].name = g->name;
        groups[i].processes = g->conf->processes;
        groups[i].threads = g->conf->threads;
        groups[i].restarts = g->totals.past_restarts;
        groups[i].reload_error = g->reload_error[0] ? g->reload_error : NULL;
        groups[i].failed_op = g->failed_op;
        groups[i].stopped = g->stopped;
        groups[i].ready_queue_wait = g->conf->ready_queue_wait;
        groups[i].draining = g->drain_until != 0;
        groups[i].drain_left = g->drain_until > uv_now(&m->loop)
                                   ? (double)(g->drain_until - uv_now(&m->loop)) / 1e3
                                   : 0;
        for (k = 0; k < g->n_slots; k++) {
            wd_slot_t *s = g->slots[k];

            groups[i].restarts += s->restarts;
            if (n + 3 > cap) {
                cap *= 2;
                workers = xrealloc(workers, cap * sizeof *workers);
            }
            if (s->cur != NULL)
                status_proc(m, &workers[n++], s->cur, s);
            if (s->repl != NULL)
                status_proc(m, &workers[n++], s->repl, s);
            /* a slot without a process backs off or crashed, unless its group stopped or
             * wsgid stops: its worker drains then, and the slot said "backoff" (helper-81) */
            if (s->cur == NULL && s->repl == NULL && !g->stopped && !m->stopping) {
                memset(&workers[n], 0, sizeof workers[n]);
                workers[n].group = g->name;
                workers[n].slot = s->slot;
                workers[n].display_name = wd__m_display_name(g->conf, s->slot);
                workers[n].state = s->backing_off && s->restarts > 1 ? "crashed" : "backoff";
                workers[n].restarts = s->restarts;
                workers[n].last_error = s->last_error[0] ? s->last_error : NULL;
                workers[n].last_restart = s->last_restart[0] ? s->last_restart : NULL;
                n++;
            }
        }
        for (p = m->procs; p != NULL; p = p->next) {
            if (p->g != g || p->s != NULL || p->pid <= 0)
                continue;
            if (n + 1 > cap) {
                cap *= 2;
                workers = xrealloc(workers, cap * sizeof *workers);
            }
            status_proc(m, &workers[n++], p, NULL);
        }
    }
    memset(out, 0, sizeof *out);
    out->version = WD_VERSION;
    out->master_pid = (int)getpid();
    out->uptime = (double)(uv_now(&m->loop) - m->t0) / 1000.0;
    out->now_ns = wd__m_now_ns();
    out->groups = groups;
    out->n_groups = m->n_groups;
    out->workers = workers;
    out->n_workers = n;
}

void wd_master_status_release(wd_status_t *out)
{
    size_t i;

    for (i = 0; i < out->n_workers; i++)
        free((char *)out->workers[i].display_name);
    free((void *)out->workers);
    free((void *)out->groups);
    memset(out, 0, sizeof *out);
}

/* ---- control commands --------------------------------------------------------------------- */

static void cmd_status(wd_master_t *m, wd_control_req_t *req, const char *group)
{
    wd_status_t st;
    json_t *obj;
    char *text;

    if (group != NULL && wd__m_find_group(m, group) == NULL) {
        wd_control_reply_error(req, "no group %s", group);
        return;
    }
    wd_master_status(m, &st);
    st.with_requests = 1; /* the control socket only serves root and wsgid's user */
    text = wd_status_json(&st);
    wd_master_status_release(&st);
    obj = text != NULL ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (obj == NULL) {
        wd_control_reply_error(req, "cannot render the status");
        return;
    }
    wd_control_reply(req, json_pack("{s:b,s:o}", "ok", 1, "status", obj));
}

static int busy(wd_group_t *g, char *err, size_t len)
{
    if (g->op != NULL) {
        snprintf(err, len, "group %s: a %s is in progress; try again when it is done", g->name,
                 wd__m_op_name(g->op));
        return 1;
    }
    return 0;
}

static void cmd_restart(wd_master_t *m, wd_control_req_t *req, const char *group, int all)
{
    wd_batch_t *b;
    char err[256];
    size_t i;
    wd_group_t *g = NULL;

    if (!all && group == NULL) {
        wd_control_reply_error(req, "restart: name a group, or all");
        return;
    }
    if (all && group != NULL) { /* wsgictl refuses it; a raw request restarted every group */
        wd_control_reply_error(req, "restart: a group or all, not both");
        return;
    }
    if (!all && (g = wd__m_find_group(m, group)) == NULL) {
        wd_control_reply_error(req, "no group %s", group);
        return;
    }
    if (g != NULL && g->stopped) {
        wd_control_reply_error(req, "group %s is stopped: use start", g->name);
        return;
    }
    for (i = 0; i < m->n_groups; i++) {
        if ((all || m->groups[i] == g) && busy(m->groups[i], err, sizeof err)) {
            wd_control_reply_error(req, "%s", err);
            return;
        }
    }
    b = wd__m_batch_new(m, req, all ? "restart of every group" : "restart");
    for (i = 0; i < m->n_groups; i++) {
        wd_group_t *x = m->groups[i];

        if (all && x->stopped) { /* said in the reply: `restart --all` left it stopped */
            json_t *a = json_object_get(b->reply, "not_restarted");

            if (a == NULL)
                json_object_set_new(b->reply, "not_restarted", a = json_array());
            json_array_append_new(a, json_string(x->name));
            wd_log_info("group %s: stopped, not restarted (wsgictl start %s)", x->name, x->name);
        } else if (all || x == g) {
            wd_log_info("group %s: rolling restart of %d workers", x->name, x->conf->processes);
            wd__m_op_step(wd__m_op_new(x, b, WD_OP_RESTART, x->gen, x->conf, x->ls, x->n_ls));
        }
    }
    wd__m_batch_done_one(m, b);
}

/* The group's workers finish what they are doing and exit; none is started again until
 * `wsgictl start`. Returns the pids stopped (a new JSON array). */
static void cmd_stop(wd_master_t *m, wd_control_req_t *req, const char *group)
{
    char err[256];
    wd_group_t *g;

    if (group == NULL) {
        /* answered once every worker has exited (wd__m_finish), also when wsgid was stopping
         * already (SIGTERM, another wsgictl stop): wsgictl stop returned while they still
         * finished their requests, and a new wsgid found the addresses in use */
        m->stop_reqs = xrealloc(m->stop_reqs, sizeof *m->stop_reqs * (m->n_stop_reqs + 1));
        m->stop_reqs[m->n_stop_reqs++] = req;
        if (!m->stopping)
            wd_log_info("stop requested through the control socket: stopping gracefully");
        wd__m_begin_stop(m, m->exit_code);
        return;
    }
    g = wd__m_find_group(m, group);
    if (g == NULL || busy(g, err, sizeof err)) {
        if (g == NULL)
            wd_control_reply_error(req, "no group %s", group);
        else
            wd_control_reply_error(req, "%s", err);
        return;
    }
    wd_control_reply(
        req, json_pack("{s:b,s:o}", "ok", 1, "stopped", wd__m_group_stop(g, "stopped by wsgictl")));
}

/* wsgictl drain [GROUP]: readiness (GET /readyz) fails at once, so that load balancers and
 * orchestrators stop sending; the group keeps serving what still comes for drain-delay, then
 * stops as `wsgictl stop` does (every group: then wsgid itself stops). wsgictl undrain, before
 * that, takes it back. */
static void cmd_drain(wd_master_t *m, wd_control_req_t *req, const char *group, int on)
{
    json_t *names = json_array();
    uint64_t now = uv_now(&m->loop);
    size_t i, n = 0;

    if (group != NULL && wd__m_find_group(m, group) == NULL) {
        json_decref(names);
        wd_control_reply_error(req, "no group %s", group);
        return;
    }
    for (i = 0; i < m->n_groups; i++) {
        wd_group_t *g = m->groups[i];
        double delay = g->conf->drain_delay;

        if ((group != NULL && strcmp(g->name, group) != 0) || g->stopped)
            continue;
        if (on && g->drain_until == 0) {
            g->drain_until = now + (uint64_t)(delay * 1000.0) + 1;
            wd_log_info("group %s: draining: not ready for load balancers now, still serving; "
                        "stopping in %.1f s (wsgictl undrain %s keeps it)",
                        g->name, delay, g->name);
        } else if (!on && g->drain_until != 0) {
            g->drain_until = 0;
            wd_log_info("group %s: undrained: ready again", g->name);
        } else {
            continue;
        }
        json_array_append_new(names, json_string(g->name));
        n++;
    }
    /* The drain of every group ends wsgid once they all stopped; an undrain of one of them ends
     * that: a later stop of the last running group (wsgictl stop, to start it again) stopped
     * wsgid itself (helper-89). */
    if (group == NULL || (!on && n > 0))
        m->drain_exit = on;
    if (n == 0 && group != NULL) {
        json_decref(names);
        wd_control_reply_error(req,
                               on ? "group %s is stopped or draining already"
                                  : "group %s is not draining (a drain that ended stopped "
                                    "it: wsgictl start %s)",
                               group, group);
        return;
    }
    wd_control_reply(req, json_pack("{s:b,s:o}", "ok", 1, on ? "draining" : "undrained", names));
}

void wd__m_drain_check(wd_master_t *m)
{
    uint64_t now = uv_now(&m->loop);
    size_t i, running = 0;

    for (i = 0; i < m->n_groups; i++) {
        wd_group_t *g = m->groups[i];

        if (g->drain_until != 0 && now >= g->drain_until && g->op == NULL)
            json_decref(wd__m_group_stop(g, "drained"));
        running += !g->stopped;
    }
    if (m->drain_exit && running == 0 && !m->stopping) {
        wd_log_info("every group drained and stopped: wsgid stops");
        wd__m_begin_stop(m, m->exit_code);
    }
}

static void cmd_start(wd_master_t *m, wd_control_req_t *req, const char *group)
{
    wd_batch_t *b;
    char err[256];
    wd_group_t *g;

    g = group != NULL ? wd__m_find_group(m, group) : NULL;
    if (g == NULL) {
        wd_control_reply_error(req, group ? "no group %s" : "start: name a group", group);
        return;
    }
    if (busy(g, err, sizeof err)) {
        wd_control_reply_error(req, "%s", err);
        return;
    }
    if (!g->stopped) {
        wd_control_reply_error(req, "group %s is running already (use restart)", g->name);
        return;
    }
    if (wd__m_listeners_resume(g) < 0) {
        wd_control_reply_error(req, "%s; the group stays stopped", wd_listen_last_error());
        return;
    }
    g->stopped = 0;
    /* A group started after the drain of every group runs on: the drain no longer ends wsgid,
     * where a later stop of the last running group stopped wsgid itself. */
    m->drain_exit = 0;
    wd_log_info("group %s: starting %d workers", g->name, g->conf->processes);
    b = wd__m_batch_new(m, req, "start");
    wd__m_op_step(wd__m_op_new(g, b, WD_OP_START, g->gen, g->conf, g->ls, g->n_ls));
    wd__m_batch_done_one(m, b);
}

void wd__m_control_cb(void *data, json_t *request, wd_control_req_t *req)
{
    wd_master_t *m = data;
    wd_control_command_t c;

    wd_control_decode(request, &c);
    if (c.cmd == WD_CONTROL_NONE) {
        wd_control_reply_error(req, "no \"cmd\" in the request");
        return;
    }
    /* A "group" that is not a name (5, ["site"]) counted as none, and a stop that named a group
     * with "all": true as well was a stop of wsgid: a script's request about one group stopped
     * every group (helper-81). null is wsgictl's "no group". */
    {
        json_t *group = json_object_get(request, "group");

        if (group != NULL && !json_is_string(group) && !json_is_null(group)) {
            wd_control_reply_error(req, "%s: \"group\" is not a string", c.name);
            return;
        }
    }
    if (c.cmd == WD_CONTROL_STOP && c.all && c.group != NULL) {
        wd_control_reply_error(req, "stop: a group or all, not both");
        return;
    }
    if (m->stopping && c.cmd != WD_CONTROL_STATUS &&
        !(c.cmd == WD_CONTROL_STOP && c.group == NULL)) {
        wd_control_reply_error(req, "wsgid is stopping");
        return;
    }
    /* The end of the start counts every slot's first worker ready: a worker replaced or
     * stopped before it was ready never is, and wsgid stayed "starting" for good (a bad app
     * loaded later then stopped all of it, as at the start). */
    if (m->starting &&
        (c.cmd == WD_CONTROL_RESTART || (c.cmd == WD_CONTROL_STOP && !c.all && c.group != NULL) ||
         c.cmd == WD_CONTROL_START || c.cmd == WD_CONTROL_DRAIN || c.cmd == WD_CONTROL_UNDRAIN ||
         c.cmd == WD_CONTROL_RELOAD)) {
        wd_control_reply_error(req,
                               "wsgid is still starting (%zu of %zu workers ready); try again "
                               "once it is ready",
                               m->n_first_ready, m->n_first);
        return;
    }
    switch (c.cmd) {
    case WD_CONTROL_STATUS:
        cmd_status(m, req, c.group);
        break;
    case WD_CONTROL_RESTART:
        cmd_restart(m, req, c.group, c.all);
        break;
    case WD_CONTROL_RELOAD:
        wd__m_reload(m, req);
        break;
    case WD_CONTROL_STOP:
        cmd_stop(m, req, c.all ? NULL : c.group);
        break;
    case WD_CONTROL_START:
        cmd_start(m, req, c.group);
        break;
    case WD_CONTROL_DRAIN:
    case WD_CONTROL_UNDRAIN:
        cmd_drain(m, req, c.group, c.cmd == WD_CONTROL_DRAIN);
        break;
    case WD_CONTROL_STACKS:
        wd__m_stacks(m, req, c.group);
        break;
    case WD_CONTROL_REOPEN_LOGS: {
        char err[1024];

        /* It said "done" whatever happened: a log rotated onto a directory, or into a directory
         * removed, went on into the rotated file, or nowhere (helper-62). */
        if (wd__m_reopen_logs(m, err, sizeof err) < 0)
            wd_control_reply_error(req, "%s", err);
        else
            wd_control_reply(req, json_pack("{s:b}", "ok", 1));
    } break;
    default:
        wd_control_reply_error(req, "unknown command \"%s\"", c.name);
        break;
    }
}
