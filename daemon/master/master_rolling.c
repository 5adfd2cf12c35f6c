/* The master: rolling operations (restart, start, reload's changes) and reload. See master_int.h.
 */
#include "master_int.h"
#include "alloc.h"
#include "notify.h"
#include "log.h"
#include "utf8.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* ---- rolling operations ------------------------------------------------------------------- */

wd_batch_t *wd__m_batch_new(wd_master_t *m, wd_control_req_t *req, const char *what)
{
    wd_batch_t *b = xcalloc(1, sizeof *b);

    b->req = req;
    b->reply = json_object();
    b->replaced = json_array();
    b->errors = json_array();
    b->t0 = uv_now(&m->loop);
    b->what = xstrdup(what);
    b->pending = 1; /* until batch_done_one() after the operations are started */
    return b;
}

/* READY=1 after a reload (systemd's RELOADING=1 ends), with what serves, and why the reload
 * failed if it did. */
static void notify_ready(const wd_master_t *m, const char *failed)
{
    char status[512];
    size_t workers = 0, running = 0;

    if (m->stopping) /* a reload abandoned by a stop: STOPPING=1 is said already (helper-79) */
        return;

    for (size_t i = 0; i < m->n_groups; i++) {
        if (!m->groups[i]->stopped) {
            running++;
            workers += (size_t)m->groups[i]->conf->processes;
        }
    }
    if (failed != NULL)
        snprintf(status, sizeof status,
                 "serving %zu groups, %zu workers; the last reload failed (the old workers keep "
                 "serving): %.200s",
                 running, workers, failed);
    else
        snprintf(status, sizeof status, "serving %zu groups, %zu workers", running, workers);
    wd_notify_ready(status);
}

void wd__m_batch_done_one(wd_master_t *m, wd_batch_t *b)
{
    json_t *r = b->reply;
    size_t n_err = json_array_size(b->errors);
    char *msg = NULL;
    size_t i;

    if (--b->pending > 0)
        return;
    json_object_set_new(r, "ok", json_boolean(n_err == 0));
    json_object_set(r, "replaced", b->replaced);
    json_object_set_new(r, "elapsed", json_real((double)(uv_now(&m->loop) - b->t0) / 1000.0));
    if (n_err > 0) {
        size_t size = 0;
        FILE *f = open_memstream(&msg, &size);

        for (i = 0; i < n_err; i++)
            fprintf(f, "%s%s", i ? "\n" : "", json_string_value(json_array_get(b->errors, i)));
        fclose(f);
        json_object_set_new(r, "error", json_string(msg));
        wd_log_error("%s failed: %s", b->what, msg);
        /* READY=1 ends systemd's "reloading" once the new workers are ready or the reload
         * failed, and says which: it came at once, whatever the reload then did (helper-72) */
        if (b->notify)
            notify_ready(m, msg);
        free(msg);
    } else {
        wd_log_info("%s done: %zu workers replaced in %.2f s", b->what,
                    json_array_size(b->replaced), (double)(uv_now(&m->loop) - b->t0) / 1000.0);
        if (b->notify)
            notify_ready(m, NULL);
    }
    if (b->req != NULL)
        wd_control_reply(b->req, r);
    else
        json_decref(r);
    json_decref(b->replaced);
    json_decref(b->errors);
    free(b->what);
    free(b);
}

void wd__m_op_step(wd_op_t *op);

/* The group takes its target config and listeners; slots beyond the new `processes` drain. */
static void op_commit(wd_op_t *op)
{
    wd_group_t *g = op->g;
    int n = op->conf->processes, k;

    if (op->gen != g->gen) {
        wd__m_gen_unref(g->gen);
        g->gen = wd__m_gen_ref(op->gen);
        g->conf = op->conf;
    }
    if (op->ls != g->ls) {
        size_t i;

        for (i = 0; i < op->n_ls; i++) {
            op->ls[i]->group = op->conf;
            op->ls[i]->conf = &op->conf->listen[i];
            /* a unix socket kept from the old config: its mode and owner as the new one says */
            (void)wd_listen_reapply(op->ls[i], op->conf, &op->conf->listen[i]);
        }
        wd__m_listeners_release(g->ls, g->n_ls, op->ls, op->n_ls);
        g->ls = op->ls;
        g->n_ls = op->n_ls;
        op->ls = NULL;
        /* A stopped group's new listener refuses connections as its others do (it took
         * them into its backlog, where they waited for a worker that does not run) */
        wd__m_listeners_refuse_if_stopped(g);
    }
    for (k = n; k < g->n_slots; k++) {
        if (g->slots[k]->cur != NULL)
            wd__m_proc_drain(g->slots[k]->cur, "no longer configured");
        if (g->slots[k]->repl != NULL)
            wd__m_proc_drain(g->slots[k]->repl, "no longer configured");
        wd__m_slot_free(g->slots[k]);
    }
    if (n < g->n_slots)
        g->n_slots = n;
}

/* A reload's change failed at slot op->next: the slots before it run the new config (on
 * listeners that close now, when they changed), and one past the group's processes the change
 * added is not the group's. wd__m_roll_back takes them back. */
static void mark_roll_back(wd_op_t *op)
{
    wd_group_t *g = op->g;

    if (op->kind != WD_OP_CHANGE || g->stopped)
        return;
    for (int k = 0; k < g->n_slots && k <= op->next; k++)
        if (k < op->next || k >= g->conf->processes)
            g->slots[k]->roll_back = 1;
}

void wd__m_roll_back(wd_master_t *m)
{
    for (size_t i = 0; i < m->n_groups && !m->stopping; i++) {
        wd_group_t *g = m->groups[i];
        int n = g->conf->processes;

        if (g->op != NULL || g->stopped || g->removed)
            continue;
        for (int k = 0; k < g->n_slots && k < n; k++) {
            wd_slot_t *s = g->slots[k];

            if (!s->roll_back)
                continue;
            s->roll_back = 0;
            if (s->repl != NULL && s->repl->gen != g->gen) {
                /* a replacement of the failed config (a recycle during the operation) */
                s->repl_cb = NULL;
                wd__m_proc_drain(s->repl, "not in the configuration in force");
            }
            if (s->cur == NULL || s->repl != NULL)
                continue; /* respawned, or being replaced: with the group's config */
            wd_log_info("group %s worker %d (pid %d): back to the configuration in force", g->name,
                        s->slot, s->cur->pid);
            s->repl_cb = NULL;
            s->repl_ctx = NULL;
            s->repl = wd__m_spawn(m, s, g->gen, g->conf, g->ls, g->n_ls);
        }
        while (g->n_slots > n && g->slots[g->n_slots - 1]->roll_back) {
            wd_slot_t *s = g->slots[g->n_slots - 1];

            uv_timer_stop(&s->timer);
            if (s->cur != NULL)
                wd__m_proc_drain(s->cur, "not in the configuration in force");
            if (s->repl != NULL)
                wd__m_proc_drain(s->repl, "not in the configuration in force");
            wd__m_slot_free(s);
            g->n_slots--;
        }
    }
}

static void op_finish(wd_op_t *op, const char *err)
{
    wd_master_t *m = op->g->m;
    wd_group_t *g = op->g;

    g->board_wait = 0; /* a record freed from now on steps no operation of the group's */
    if (err != NULL) {
        char *msg = NULL;
        json_t *e;

        if (asprintf(&msg, "group %s: %s", g->name, err) < 0)
            abort();
        /* a message that is not UTF-8 would be NULL to jansson, lost, and the batch ok */
        e = json_string(msg);
        if (e == NULL) {
            char safe[1024];

            wd_utf8_copy(safe, sizeof safe, msg);
            e = json_string(safe);
        }
        if (e == NULL) /* never lost: the batch would be ok */
            e = json_string("the error message could not be read (not UTF-8): see the log");
        json_array_append_new(op->batch->errors, e);
        free(msg);
        mark_roll_back(op);
        /* A start (wsgictl start, a group a reload added) that failed leaves the group stopped,
         * as it was: its slots started already drain, and its listeners refuse connections
         * once they are gone. It ran the slots before the failure and crash-looped the failing
         * one, never filled those after it, and took no second `wsgictl start` (helper-62). */
        if (op->kind == WD_OP_START && !m->stopping && !g->removed)
            json_decref(wd__m_group_stop(g, "its start failed"));
        if (op->kind == WD_OP_CHANGE && strcmp(g->name, g->conf->name) != 0) {
            /* renamed (reload_renames): the name goes back with the config in force */
            wd_log_warn("group %s: back to the name %s, with the configuration in force", g->name,
                        g->conf->name);
            free(g->name);
            g->name = xstrdup(g->conf->name);
        }
        /* The roll-back runs on the tick (wd__m_roll_back), which comes at once now rather than
         * up to a second later; it goes on every second from there. */
        if (!m->stopping)
            uv_timer_start(&m->tick, wd__m_tick_cb, 0, WD_MASTER_TICK_MS);
    } else {
        /* The group's code loaded (a stopped group's config change starts nothing). */
        if (!(op->kind == WD_OP_CHANGE && g->stopped))
            g->reload_error[0] = '\0';
        op_commit(op);
    }
    g->op = NULL;
    wd__m_batch_done_one(m, op->batch);
    wd__m_autoreload_op_done(g); /* a change seen meanwhile rolls the group now */
    wd__m_gen_unref(op->gen);
    if (op->ls != NULL && op->ls != g->ls)
        wd__m_listeners_release(op->ls, op->n_ls, g->ls, g->n_ls);
    wd__m_group_unref(g);
    free(op);
}

void wd__m_op_abandon(wd_op_t *op)
{
    wd_group_t *g = op->g;
    char msg[160];

    if (op->next < g->n_slots && g->slots[op->next]->repl_ctx == op) {
        g->slots[op->next]->repl_cb = NULL;
        g->slots[op->next]->repl_ctx = NULL;
    }
    snprintf(msg, sizeof msg, "wsgid is stopping: abandoned after %d of %d workers", op->next,
             op->conf->processes);
    op_finish(op, msg);
}

/* See master_int.h; also wd_group_t.failed_op, for `wsgictl status`. A restart without a
 * control request is reload-on-change's (master_autoreload.c). */
const char *wd__m_op_name(const wd_op_t *op)
{
    if (op->kind == WD_OP_START)
        return "start";
    if (op->kind == WD_OP_RESTART)
        return op->batch->req != NULL ? "restart" : "reload on change";
    return "reload";
}

/* Whether the worker's failure left a Python traceback in the log: not when it was killed, exited
 * without saying why, was not ready in time, or could not chdir or start Python (wd_py_init and a
 * mount's chdir say so in err, before any Python code runs). */
static int has_traceback(const char *err)
{
    return strncmp(err, "killed by signal", 16) != 0 && strncmp(err, "exited with", 11) != 0 &&
           strstr(err, "startup-timeout") == NULL && strstr(err, ": cannot chdir to ") == NULL &&
           strstr(err, ": cannot pre-initialise Python") == NULL &&
           strstr(err, ": cannot initialise Python") == NULL;
}

static void op_slot_done(wd_slot_t *s, void *ctx, int ok, const char *err, int old_pid, int new_pid)
{
    wd_op_t *op = ctx;
    char *msg = NULL;

    if (!ok) {
        const char *hint = has_traceback(err) ? " (see the error log for the traceback)" : "";

        wd_utf8_copy(s->g->reload_error, sizeof s->g->reload_error, err);
        s->g->failed_op = wd__m_op_name(op);
        if (op->kind == WD_OP_START) {
            if (asprintf(&msg,
                         "worker %d (pid %d) could not start: %s; the group stays stopped "
                         "(wsgictl start %s once it is fixed)%s",
                         s->slot, new_pid, err, s->g->name, hint) < 0)
                abort();
        } else if (asprintf(&msg,
                            "the replacement of worker %d (pid %d) failed: %s; the old workers "
                            "keep serving%s%s",
                            s->slot, new_pid, err,
                            op->kind == WD_OP_CHANGE && op->next > 0
                                ? ", and those replaced already go back to the configuration in "
                                  "force"
                                : "",
                            hint) < 0) {
            abort();
        }
        op_finish(op, msg);
        free(msg);
        return;
    }
    if (old_pid > 0) {
        wd_log_info("group %s worker %d: pid %d replaced by pid %d", s->g->name, s->slot, old_pid,
                    new_pid);
        /* counted as a recycle or a crash is: `restarts` is every worker replaced */
        s->restarts++;
        snprintf(s->last_restart, sizeof s->last_restart, "pid %d: replaced by a %s", old_pid,
                 wd__m_op_name(op));
    }
    json_array_append_new(op->batch->replaced,
                          json_pack("{s:s,s:i,s:i,s:i}", "group", s->g->name, "slot", s->slot,
                                    "old_pid", old_pid, "new_pid", new_pid));
    s->roll_back = 0; /* it runs the operation's config now */
    op->next++;
    wd__m_op_step(op);
}

/* A record of g's board was freed (wd__m_record_release, as a worker of g is reaped): an
 * operation that waits for one goes on once the exit has been handled (wd__m_op_board_go). */
void wd__m_op_record_freed(wd_group_t *g)
{
    if (g->board_wait == WD_BOARD_WAITING)
        g->board_wait = WD_BOARD_FREED;
}

/* At the end of wd__m_exit_cb. The wait used to go on from the slot's timer, armed at the
 * release; when the exited worker was that slot's own, its respawn's backoff re-armed the same
 * timer, and the operation never stepped again: wsgictl waited for ever (helper-85). */
void wd__m_op_board_go(wd_group_t *g)
{
    if (g->board_wait != WD_BOARD_FREED)
        return;
    g->board_wait = 0;
    if (g->op != NULL && !g->m->stopping &&
        (g->op->next >= g->n_slots || g->slots[g->op->next]->repl == NULL))
        wd__m_op_step(g->op);
}

/* Replaces (or fills) the next slot with a worker of the target config. */
void wd__m_op_step(wd_op_t *op)
{
    wd_group_t *g = op->g;
    wd_master_t *m = g->m;
    wd_slot_t *s;

    if (m->stopping) {
        op_finish(op, "wsgid is stopping");
        return;
    }
    if (op->next >= op->conf->processes) {
        op_finish(op, NULL);
        return;
    }
    if (op->next >= g->n_slots) {
        g->slots = xrealloc(g->slots, (size_t)(op->next + 1) * sizeof *g->slots);
        g->slots[op->next] = wd__m_slot_new(g, op->next + 1);
        g->n_slots = op->next + 1;
    }
    s = g->slots[op->next];
    if (s->repl != NULL) {
        /* A recycling replacement is on its way: this one replaces it (and should it fail, the
         * worker may be recycled again: the tick skips one that is recycling). */
        s->repl_cb = NULL;
        wd__m_proc_drain(s->repl, "superseded");
        if (s->cur != NULL)
            s->cur->recycling = 0;
    }
    uv_timer_stop(&s->timer);
    s->backing_off = 0;
    s->repl_cb = op_slot_done;
    s->repl_ctx = op;
    s->repl = wd__m_spawn(m, s, op->gen, op->conf, op->ls, op->n_ls);
    if (s->repl == NULL && wd__m_board_full(g)) {
        /* Every record taken, by old workers still draining: the next exit goes on (it used to
         * fail the operation, half done: "no free record", helper-79). */
        s->repl_cb = NULL;
        s->repl_ctx = NULL;
        g->board_wait = WD_BOARD_WAITING;
        return;
    }
    if (s->repl == NULL) {
        s->repl_cb = NULL;
        s->repl_ctx = NULL;
        wd_utf8_copy(g->reload_error, sizeof g->reload_error, s->last_error);
        g->failed_op = wd__m_op_name(op);
        op_finish(op, s->last_error);
    }
}

wd_op_t *wd__m_op_new(wd_group_t *g, wd_batch_t *b, wd_op_kind_t kind, wd_gen_t *gen,
                      const wd_group_conf_t *conf, wd_listen_t **ls, size_t n_ls)
{
    wd_op_t *op = xcalloc(1, sizeof *op);

    op->g = wd__m_group_ref(g);
    op->batch = b;
    op->kind = kind;
    op->gen = wd__m_gen_ref(gen);
    op->conf = conf;
    op->ls = ls;
    op->n_ls = n_ls;
    g->op = op;
    b->pending++;
    return op;
}

/* ---- reload -------------------------------------------------------------------------------
 */

static int env_cmp(const void *a, const void *b)
{
    const wd_env_conf_t *x = *(const wd_env_conf_t *const *)a,
                        *y = *(const wd_env_conf_t *const *)b;

    return strcmp(x->name, y->name);
}

/* env as name=value lines in name order. The worker sets them in the order written, which
 * os.environ keeps, but names are unique (a duplicate is refused) and an app reads them by name:
 * a reload that only reordered them restarted the group for nothing. */
static void env_canon(FILE *f, const char *lead, const wd_env_conf_t *env, size_t n)
{
    const wd_env_conf_t **sorted = xcalloc(n + 1, sizeof *sorted);
    size_t i;

    for (i = 0; i < n; i++)
        sorted[i] = &env[i];
    qsort(sorted, n, sizeof *sorted, env_cmp);
    for (i = 0; i < n; i++)
        fprintf(f, "%senv %s=%s\n", lead, sorted[i]->name, sorted[i]->value);
    free(sorted);
}

/* Everything a worker of the group reads from the config, as one string: two groups whose
 * strings are equal run the same way (the log settings are in it: workers log themselves).
 * Values are as parsed, not as written: `127.0.0.1:08080` is `127.0.0.1:8080`. */
static char *group_canon(const wd_config_t *c, const wd_group_conf_t *g)
{
    char *out = NULL;
    size_t size = 0, i;
    FILE *f = open_memstream(&out, &size);

#define S(x) ((x) != NULL ? (x) : "\\0")
    fprintf(f, "log %d %s %s\n", (int)c->log_level, S(c->log_file), S(c->access_log));
    fprintf(f, "app %s %d %s %d %d %d %s %d\n", S(g->app), g->app_is_script, S(g->callable),
            g->processes, g->processes_set, g->threads, S(g->display_name), (int)g->protocol);
    for (i = 0; i < g->n_listen; i++) {
        const wd_listen_conf_t *l = &g->listen[i];

        if (l->is_unix)
            fprintf(f, "listen unix %s\n", l->path);
        else
            fprintf(f, "listen tcp %s %d\n", l->host, l->port);
    }
    fprintf(f, "socket %o %s %s\n", g->socket_mode, S(g->socket_user), S(g->socket_group));
    for (i = 0; i < g->n_python_path; i++)
        fprintf(f, "python-path %s\n", g->python_path[i]);
    fprintf(f, "home %s chdir %s user %s group %s\n", S(g->python_home), S(g->chdir), S(g->user),
            S(g->group));
    env_canon(f, "", g->env, g->n_env);
    wd_config_group_numbers(f, g);
    fprintf(f, "access-log %s %d\n", S(g->access_log), g->access_log_json);
    fprintf(f, "application-group %s pin-threads %d\n", S(g->application_group), g->pin_threads);
    fprintf(f, "strip-forwarded %d proxy-protocol %d rfc7239 %d\n", g->strip_forwarded,
            g->proxy_protocol, g->forwarded_rfc7239);
    for (i = 0; i < g->n_trusted_proxies; i++) {
        const wd_cidr_t *c = &g->trusted_proxies[i];

        fprintf(f, "trusted %d/%u", c->family, c->prefix);
        for (size_t k = 0; k < sizeof c->addr; k++)
            fprintf(f, "%02x", c->addr[k]);
        fputc('\n', f);
    }
    for (i = 0; i < g->n_mounts; i++) {
        const wd_mount_conf_t *mc = &g->mounts[i];

        fprintf(f, "mount %s %s %d %s %s %s\n", mc->prefix, mc->app, mc->app_is_script,
                S(mc->callable), S(mc->application_group), S(mc->chdir));
        for (size_t j = 0; j < mc->n_python_path; j++)
            fprintf(f, " python-path %s\n", mc->python_path[j]);
        env_canon(f, " ", mc->env, mc->n_env);
    }
#undef S
    fclose(f);
    return out;
}

int wd__m_group_changed(const wd_config_t *a, const wd_group_conf_t *ga, const wd_config_t *b,
                        const wd_group_conf_t *gb)
{
    char *x = group_canon(a, ga), *y = group_canon(b, gb);
    int rc = strcmp(x, y) != 0;

    free(x);
    free(y);
    return rc;
}

/* A removed group: its workers drain, its listeners close (socket files removed). */
static void group_remove(wd_master_t *m, wd_group_t *g)
{
    int k;

    g->removed = 1;
    for (k = 0; k < g->n_slots; k++) {
        uv_timer_stop(&g->slots[k]->timer);
        if (g->slots[k]->cur != NULL)
            wd__m_proc_drain(g->slots[k]->cur, "group removed");
        if (g->slots[k]->repl != NULL)
            wd__m_proc_drain(g->slots[k]->repl, "group removed");
        wd__m_slot_free(g->slots[k]);
    }
    g->n_slots = 0;
    wd__m_listeners_release(g->ls, g->n_ls, NULL, 0);
    g->ls = NULL;
    g->n_ls = 0;
    wd__m_group_unref(g);
}

static void reload_refuse(wd_control_req_t *req, const char *msg)
{
    wd_log_error("reload refused: %s", msg);
    wd_notify_status("serving; the last reload was refused: %.200s", msg);
    if (req != NULL)
        wd_control_reply_error(req, "reload refused: %s", msg);
}

/* A group busy with a rolling operation cannot take a new config now, nor be removed (its
 * operation would never end, nor answer): 1 with why in err. */
static int reload_busy(wd_master_t *m, char *err, size_t cap)
{
    for (size_t i = 0; i < m->n_groups; i++) {
        wd_group_t *g = m->groups[i];

        if (g->op != NULL) {
            snprintf(err, cap, "group %s: a %s is in progress; try again when it is done", g->name,
                     wd__m_op_name(g->op));
            return 1;
        }
    }
    return 0;
}

void wd__m_reload_if_pending(wd_master_t *m)
{
    char err[256];

    if (!m->hup_pending || m->stopping || reload_busy(m, err, sizeof err))
        return;
    m->hup_pending = 0;
    wd_log_info("reloading for the SIGHUP that came during a rolling operation");
    wd__m_reload(m, NULL);
}

/* Closes what reload_bind bound for the new file's groups (those groups, and those they are
 * renamed from, keep their own). */
static void reload_unbind(wd_master_t *m, const wd_config_t *conf, wd_listen_t ***new_ls,
                          wd_group_t **from, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        wd_group_t *g = wd__m_find_group(m, conf->groups[k].name);

        if (g == NULL)
            g = from[k];
        if (new_ls[k] != NULL)
            wd__m_listeners_release(new_ls[k], conf->groups[k].n_listen, g ? g->ls : NULL,
                                    g ? g->n_ls : 0);
        new_ls[k] = NULL;
    }
}

/* Whether group og has an address of gc's. */
static int shares_address(const wd_group_t *og, const wd_group_conf_t *gc)
{
    for (size_t k = 0; k < og->n_ls; k++)
        for (size_t j = 0; j < gc->n_listen; j++)
            if (wd_config_listen_same(og->ls[k]->conf, &gc->listen[j]))
                return 1;
    return 0;
}

/* A group the new file adds on an address of a group it removes is that group renamed: the two
 * cannot hold the address at once, and the new one might not load. So the group takes the new
 * name at once and rolls onto its new config as a changed group does: its listeners kept where
 * the address is the same, its workers replaced one at a time, and the replaced ones back on the
 * config in force, with the old name, if the new one cannot load (op_finish). A stopped group
 * stays stopped, as a changed one does. Before this, such a reload was refused ("rename a group
 * in two reloads"). from[i]: the group new group i is renamed from, or NULL. 0, or -1 with err
 * when it is not one group for one (a removed group's addresses in two new groups, or a new
 * group on the addresses of two removed ones). */
static int reload_renames(wd_master_t *m, const wd_config_t *conf, wd_group_t **from, char *err,
                          size_t cap)
{
    char *removed = xcalloc(m->n_groups, 1);
    int rc = 0;

    for (size_t o = 0; o < m->n_groups; o++)
        removed[o] = wd_config_group(conf, m->groups[o]->name) == NULL;
    for (size_t i = 0; i < conf->n_groups && rc == 0; i++) {
        const wd_group_conf_t *gc = &conf->groups[i];

        if (wd__m_find_group(m, gc->name) != NULL)
            continue;
        for (size_t o = 0; o < m->n_groups && rc == 0; o++) {
            wd_group_t *og = m->groups[o];

            if (!removed[o] || !shares_address(og, gc))
                continue;
            if (from[i] != NULL) {
                snprintf(err, cap,
                         "group %s is on addresses of groups %s and %s, which the file removes: "
                         "one group can be renamed %s, not two",
                         gc->name, from[i]->name, og->name, gc->name);
                rc = -1;
                break;
            }
            for (size_t k = 0; k < i && rc == 0; k++) {
                if (from[k] == og) {
                    snprintf(err, cap,
                             "groups %s and %s are on addresses of group %s, which the file "
                             "removes: a group can be renamed once, not twice",
                             conf->groups[k].name, gc->name, og->name);
                    rc = -1;
                }
            }
            from[i] = og;
        }
    }
    free(removed);
    return rc;
}

/* An address of gc that a listener of wsgid's holds now, and that gc cannot take over from it (g:
 * the group gc is, or is renamed from, or NULL), said plainly: 1, the error logged. A wildcard
 * and an address it takes (127.0.0.1:80 becoming 0.0.0.0:80 in one group), or an address going
 * from one group to another in one reload, cannot be bound until the listener that holds it
 * closes, when the group that has it ends its change: it failed with "Address already in use".
 * A stopped group's listener (paused: wd_listen_pause) does not stand in the way: the bind
 * succeeds beside it, as before this check (a unix socket's path is taken over: the stopped group
 * cannot start on it again, and says so). */
static int held_now(const wd_master_t *m, const wd_group_t *g, const wd_group_conf_t *gc, char *err,
                    size_t cap)
{
    for (size_t i = 0; i < m->n_groups; i++) {
        const wd_group_t *og = m->groups[i];

        for (size_t k = 0; k < og->n_ls; k++) {
            const wd_listen_conf_t *held = og->ls[k]->conf;

            for (size_t j = 0; j < gc->n_listen && !og->ls[k]->paused; j++) {
                const wd_listen_conf_t *lc = &gc->listen[j];

                if (!wd_config_listen_same(held, lc) || (og == g && wd__m_same_address(held, lc)))
                    continue;
                snprintf(err, cap,
                         "group %s: %s cannot be bound while group %s listens on %s: move it in "
                         "two reloads (first to an address no group has), or restart wsgid",
                         gc->name, lc->spec, og->name, held->spec);
                return 1;
            }
        }
    }
    return 0;
}

/* The listeners of every new or changed group (NULL for the others), all bound before anything
 * changes: NULL, with nothing kept and why in err, unless all of them can be had. The reason goes
 * to wsgictl too: it said "a listener could not be bound (see above)", above it nothing
 * (helper-62). */
static wd_listen_t ***reload_bind(wd_master_t *m, const wd_config_t *oldc, wd_config_t *conf,
                                  wd_group_t **from, char *err, size_t cap)
{
    wd_listen_t ***new_ls = xcalloc(conf->n_groups, sizeof *new_ls);
    wd_group_t *g;

    for (size_t i = 0; i < conf->n_groups; i++) {
        g = wd__m_find_group(m, conf->groups[i].name);
        if (g != NULL && !wd__m_group_changed(oldc, g->conf, conf, &conf->groups[i]))
            continue;
        if (g == NULL)
            g = from[i];
        if (held_now(m, g, &conf->groups[i], err, cap)) {
            new_ls[i] = NULL;
        } else {
            new_ls[i] = wd__m_listeners_open(&conf->groups[i], g ? g->ls : NULL, g ? g->n_ls : 0);
            snprintf(err, cap, "%s",
                     *wd_listen_last_error() ? wd_listen_last_error()
                                             : "a listener could not be bound (see the log)");
        }
        if (new_ls[i] != NULL)
            continue;
        reload_unbind(m, conf, new_ls, from, i);
        free(new_ls);
        return NULL;
    }
    return new_ls;
}

/* An unchanged group takes the new generation's copy of its config. */
static void group_take_conf(wd_group_t *g, wd_gen_t *gen, const wd_group_conf_t *gc)
{
    wd__m_gen_unref(g->gen);
    g->gen = wd__m_gen_ref(gen);
    g->conf = gc;
    for (size_t k = 0; k < g->n_ls; k++) {
        g->ls[k]->group = gc;
        g->ls[k]->conf = &gc->listen[k];
    }
}

/* A changed group rolls onto its new config (a stopped one only takes it). */
static void group_roll(wd_group_t *g, wd_batch_t *b, wd_gen_t *gen, const wd_group_conf_t *gc,
                       wd_listen_t **ls)
{
    wd_op_t *op = wd__m_op_new(g, b, WD_OP_CHANGE, gen, gc, ls, gc->n_listen);

    g->warned = 0;
    if (g->stopped) {
        wd_log_info("reload: group %s changed: stopped, it runs the new config when started",
                    gc->name);
        op->next = gc->processes; /* nothing runs: only the config changes */
    } else {
        wd_log_info("reload: group %s changed: rolling restart", gc->name);
    }
    wd__m_op_step(op);
}

static int differ(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") != 0;
}

/* The top-level keys a reload does not apply (the master opened them once, at its start): each
 * one that differs from what runs is logged and listed in the reply (wsgictl prints it), at
 * every reload until wsgid starts again. A new `metrics:` went unsaid: the old port kept
 * answering, the new one refused. */
static json_t *not_applied(const wd_master_t *m, const wd_config_t *newc)
{
    const struct {
        const char *key, *was, *now;
    } keys[] = {{"control", m->run_control, newc->control},
                {"pidfile", m->pidfile, newc->pidfile},
                {"metrics", m->run_metrics, newc->metrics},
                {"agent-check", m->run_agent, newc->agent_check},
                {"health", m->run_health, newc->health}};
    json_t *later = json_array();

    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (!differ(keys[i].was, keys[i].now))
            continue;
        wd_log_warn("reload: `%s:` %s (running: %s) takes effect at the next start of wsgid",
                    keys[i].key, keys[i].now != NULL ? keys[i].now : "none",
                    keys[i].was != NULL ? keys[i].was : "none");
        json_array_append_new(later, json_string(keys[i].key));
    }
    return later;
}

/* A group a reload adds during the drain of every group drains too, as a changed or renamed
 * group keeps its drain: it ran on, ready, and the drain's mark stayed, so that wsgid never
 * stopped while it ran and stopped at a later `wsgictl stop` of it (helper-98). */
static void drain_added(wd_master_t *m, wd_group_t *g)
{
    if (!m->drain_exit)
        return;
    g->drain_until = uv_now(&m->loop) + (uint64_t)(g->conf->drain_delay * 1000.0) + 1;
    wd_log_info("group %s: added during the drain of every group: draining too, stopping in "
                "%.1f s (wsgictl undrain %s keeps it, and wsgid)",
                g->name, g->conf->drain_delay, g->name);
}

/* The new generation takes over: new groups start, changed ones roll, unchanged ones take the new
 * copy of their config, removed ones drain. The reply lists each kind; a changed group that is
 * stopped (wsgictl stop) restarts nothing and is listed apart: it was listed as restarted. */
static void reload_apply(wd_master_t *m, wd_batch_t *b, wd_gen_t *gen, wd_listen_t ***new_ls,
                         wd_group_t **from)
{
    json_t *added = json_array(), *removed = json_array(), *restarted = json_array(),
           *unchanged = json_array(), *renamed = json_array(), *stopped = json_array(), *later;
    wd_group_t **groups = xcalloc(gen->conf->n_groups, sizeof *groups), *g;
    size_t i, k;

    for (i = 0; i < gen->conf->n_groups; i++) {
        const wd_group_conf_t *gc = &gen->conf->groups[i];

        g = wd__m_find_group(m, gc->name);
        if (g == NULL && from[i] != NULL) {
            g = from[i];
            wd_log_info("reload: group %s renamed %s", g->name, gc->name);
            json_array_append_new(renamed, json_pack("{s:s,s:s}", "from", g->name, "to", gc->name));
            free(g->name);
            g->name = xstrdup(gc->name);
            json_array_append_new(g->stopped ? stopped : restarted, json_string(gc->name));
            group_roll(g, b, gen, gc, new_ls[i]);
        } else if (g == NULL) {
            g = wd__m_group_new(m, gen, gc, new_ls[i]);
            m->n_groups--; /* the array is rebuilt below */
            wd_log_info("reload: group %s added", gc->name);
            json_array_append_new(added, json_string(gc->name));
            wd__m_op_step(wd__m_op_new(g, b, WD_OP_START, gen, gc, g->ls, g->n_ls));
            drain_added(m, g);
        } else if (new_ls[i] == NULL) {
            json_array_append_new(unchanged, json_string(gc->name));
            group_take_conf(g, gen, gc);
            /* The file asks for the config in force again: a failed change of it is no longer
             * asked for, and status no longer says it failed (helper-62). */
            if (g->failed_op != NULL && strcmp(g->failed_op, "reload") == 0)
                g->reload_error[0] = '\0';
        } else {
            json_array_append_new(g->stopped ? stopped : restarted, json_string(gc->name));
            group_roll(g, b, gen, gc, new_ls[i]);
        }
        wd__m_warn_nobody(g);
        groups[i] = g;
    }
    for (i = 0; i < m->n_groups; i++) {
        g = m->groups[i];
        for (k = 0; k < gen->conf->n_groups; k++)
            if (groups[k] == g)
                break;
        if (k < gen->conf->n_groups)
            continue;
        wd_log_info("reload: group %s removed", g->name);
        json_array_append_new(removed, json_string(g->name));
        group_remove(m, g);
    }
    free(m->groups);
    m->groups = groups;
    m->n_groups = gen->conf->n_groups;
    later = not_applied(m, gen->conf);
    wd__m_gen_unref(m->gen);
    m->gen = gen;
    wd__m_autoreload_update(m);
    json_object_set_new(b->reply, "added", added);
    json_object_set_new(b->reply, "removed", removed);
    json_object_set_new(b->reply, "restarted", restarted);
    json_object_set_new(b->reply, "unchanged", unchanged);
    json_object_set_new(b->reply, "renamed", renamed);
    json_object_set_new(b->reply, "changed_stopped", stopped); /* none of its workers runs */
    json_object_set_new(b->reply, "at_next_start", later);
}

void wd__m_reload(wd_master_t *m, wd_control_req_t *req)
{
    wd_config_t *conf = xcalloc(1, sizeof *conf), *oldc = m->gen->conf;
    wd_listen_t ***new_ls = NULL;
    wd_group_t **from = NULL;
    char err[1024], *text = NULL;
    size_t len = 0;
    wd_gen_t *gen = NULL;
    wd_batch_t *b;

    if (m->stopping) {
        reload_refuse(req, "wsgid is stopping");
        goto fail;
    }
    if (m->starting) { /* SIGHUP (the control command is refused before): master_commands.c */
        snprintf(err, sizeof err, "wsgid is still starting (%zu of %zu workers ready)",
                 m->n_first_ready, m->n_first);
        reload_refuse(req, err);
        goto fail;
    }
    wd_log_info("reloading %s", oldc->path);
    if (wd_config_load_file(conf, oldc->path, &text, &len, err, sizeof err) < 0 ||
        wd__m_check_privileges(conf, err, sizeof err) < 0) {
        reload_refuse(req, err);
        goto fail;
    }
    if (reload_busy(m, err, sizeof err)) {
        if (req == NULL) {
            /* A SIGHUP (config management's, reload-on-change's restart under way) was refused
             * and lost: nothing reloaded it later (helper-62). It waits for the operation. */
            m->hup_pending = 1;
            wd_log_info("SIGHUP: %s: reloading once it is done", err);
        } else {
            reload_refuse(req, err);
        }
        goto fail;
    }
    from = xcalloc(conf->n_groups, sizeof *from);
    if (reload_renames(m, conf, from, err, sizeof err) < 0) {
        reload_refuse(req, err);
        goto fail;
    }
    new_ls = reload_bind(m, oldc, conf, from, err, sizeof err);
    if (new_ls == NULL) {
        reload_refuse(req, err);
        goto fail;
    }
    gen = wd__m_gen_new(conf, 1, text, len);
    if (gen == NULL) {
        /* what was bound for it goes (it stayed bound: a later reload found it in use) */
        reload_unbind(m, conf, new_ls, from, conf->n_groups);
        reload_refuse(req, "cannot hand the configuration to the workers");
        goto fail;
    }
    conf = NULL;
    wd_notify_reloading();
    wd_log_init("master", gen->conf->log_level);
    if (wd__m_logs_open_error(gen->conf->log_file) < 0)
        wd_log_warn("reload: cannot reopen the error log %s", gen->conf->log_file);

    b = wd__m_batch_new(m, req, "reload");
    b->notify = 1;
    reload_apply(m, b, gen, new_ls, from);
    wd__m_batch_done_one(m, b);

fail:
    if (conf != NULL) {
        wd_config_free(conf);
        free(conf);
    }
    free(new_ls);
    free(from);
    free(text);
}
