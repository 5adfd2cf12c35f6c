/* The master process: see master.h.
 *
 * The runtime model:
 *   - a wd_gen_t is one loaded config file (its text in a memfd for the workers); a reload makes
 *     a new one; groups and processes hold references to theirs;
 *   - a wd_group_t is a group as it runs: its listeners, its slots, its counters of past workers;
 *   - a wd_slot_t is one process slot (1-based) of a group; it outlives the processes that fill
 *     it: `cur` serves, `repl` is a replacement being started (rolling restart, recycling);
 *   - a wd_proc_t is one worker process: its uv_process_t, our end of its socketpair and a timer
 *     (startup-timeout, then the kill deadline when it drains); it is freed once the three handles
 *     are closed, so a respawn never reuses a handle that libuv still knows about. A replaced
 *     worker leaves its slot and drains on its own.
 * A rolling operation (wd_op_t) replaces the slots of one group one after the other; a control
 * request (wd_batch_t) waits for one or more operations and answers when they are all done. */
#include "master.h"
#include "alloc.h"
#include "control.h"
#include "control_proto.h"
#include "metrics.h"
#include "notify.h"
#include "listen.h"
#include "log.h"
#include "scoreboard.h"
#include "spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define WD_MASTER_LINE_MAX 4096
#define WD_MASTER_QUICK_DEATH_MS 10000   /* a worker dying sooner than this is a crash loop */
#define WD_MASTER_STABLE_MS 30000        /* ready this long: the backoff starts over */
#define WD_MASTER_BACKOFF_MAX 60         /* seconds */
#define WD_MASTER_TICK_MS 1000           /* memory-limit, restart-interval, stopped checks */
#define WD_MASTER_STOPPED_MS 3000        /* a worker stopped (SIGSTOP) this long is killed */
#define WD_MASTER_RECYCLE_RETRY_MS 30000 /* a failed replacement of a recycling worker: retry */
#define WD_MASTER_KILL_SLACK_MS 1000     /* past a draining worker's timeouts, before SIGKILL */
#define WD_MASTER_DUMP_MS 1000 /* a deadlocked worker's stack dump (SIGUSR2), then SIGKILL */

extern char **environ;

typedef struct wd_gen wd_gen_t;
typedef struct wd_group wd_group_t;
typedef struct wd_slot wd_slot_t;
typedef struct wd_proc wd_proc_t;
typedef struct wd_op wd_op_t;
typedef struct wd_batch wd_batch_t;

struct wd_gen {
    wd_config_t *conf;
    int owned; /* conf was loaded by us (a reload), not handed by main() */
    int fd;    /* memfd with the text */
    int refs;
};

typedef enum wd_proc_state {
    WD_PROC_STARTING, /* spawned, has not reported ready yet */
    WD_PROC_READY,
    WD_PROC_DRAINING, /* told to stop, finishing its requests */
} wd_proc_state_t;

struct wd_proc {
    uv_process_t process;
    uv_pipe_t pipe;   /* our end of the socketpair */
    uv_timer_t timer; /* startup-timeout, then the kill deadline */
    wd_master_t *m;
    wd_group_t *g; /* holds a reference */
    wd_gen_t *gen; /* the config it was started with (a reference) */
    wd_slot_t *s;  /* NULL once it has left its slot */
    int slot;
    int pid;    /* 0 once reaped */
    int record; /* scoreboard record, -1 once freed */
    wd_proc_state_t state;
    uint64_t started_at; /* uv_now(), ms */
    uint64_t ready_at;
    uint64_t recycle_at; /* restart-interval deadline, 0 = none */
    uint64_t rss;
    uint64_t stopped_at; /* first seen in state T (stopped), 0 = running */
    int recycling;       /* a replacement was asked for */
    int deadlocked;      /* the watchdog found its loop stopped; killed shortly */
    int handles;         /* not closed yet; freed at 0 */
    int pipe_closed;
    int skipping; /* dropping the rest of an overlong line */
    char failed[512];
    wd_proc_t *next, *prev;
    size_t line_len;
    char line[WD_MASTER_LINE_MAX];
};

/* Called when a replacement of a slot is ready (ok = 1) or has failed (ok = 0, err says why). */
typedef void (*wd_repl_cb)(wd_slot_t *s, void *ctx, int ok, const char *err, int old_pid,
                           int new_pid);

struct wd_slot {
    uv_timer_t timer; /* respawn backoff */
    wd_group_t *g;
    int slot; /* 1-based */
    wd_proc_t *cur;
    wd_proc_t *repl;
    wd_repl_cb repl_cb;
    void *repl_ctx;
    int backing_off;
    unsigned restarts;
    unsigned backoff;    /* seconds waited before the last respawn after a quick death */
    int quick_respawned; /* a worker that was serving died soon after its start and was
                          * replaced at once; the next such death backs off */
    int ever_ready;
    uint64_t recycle_retry_at;
    char last_error[512];
    char last_restart[512]; /* why its worker was last replaced while serving (recycled) */
};

struct wd_group {
    wd_master_t *m;
    char *name;
    wd_gen_t *gen;               /* a reference */
    const wd_group_conf_t *conf; /* in gen */
    wd_listen_t **ls;
    size_t n_ls;
    wd_slot_t **slots;
    int n_slots;
    int stopped; /* by `wsgictl stop GROUP` */
    int removed; /* by a reload */
    int refs;    /* the master's list + its processes */
    int warned;
    wd_op_t *op; /* the rolling operation in progress */
    wd_status_group_t totals;
};

typedef enum wd_op_kind { WD_OP_RESTART, WD_OP_START, WD_OP_CHANGE } wd_op_kind_t;

struct wd_op {
    wd_group_t *g;
    wd_batch_t *batch;
    wd_op_kind_t kind;
    wd_gen_t *gen; /* target config (a reference) */
    const wd_group_conf_t *conf;
    wd_listen_t **ls; /* target listeners */
    size_t n_ls;
    int next; /* index of the slot being replaced */
};

struct wd_batch {
    wd_control_req_t *req; /* NULL: nobody waits (SIGHUP) */
    int pending;
    json_t *reply;    /* the object being built */
    json_t *replaced; /* [{group, slot, old_pid, new_pid}] */
    json_t *errors;   /* [string] */
    uint64_t t0;
    const char *what;
};

struct wd_master {
    uv_loop_t loop;
    wd_gen_t *gen; /* the current config */
    wd_group_t **groups;
    size_t n_groups;
    wd_proc_t *procs;
    wd_score_t *score;
    int score_fd;
    unsigned char used[WD_SCORE_MAX];
    char exe[PATH_MAX];
    uv_signal_t signals[4];
    size_t n_signals;
    uv_timer_t tick;
    wd_control_t *control;
    size_t n_alive;
    size_t n_first; /* workers of the initial start */
    size_t n_first_ready;
    int starting; /* until every worker has been ready once */
    int stopping;
    int finished;
    int exit_code;
    int pidfile_written;
    char *pidfile;
    uint64_t t0;
    wd_control_req_t *stop_req;
};

static const int handled_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};

static wd_proc_t *spawn(wd_master_t *m, wd_slot_t *s, wd_gen_t *gen, const wd_group_conf_t *conf,
                        wd_listen_t **ls, size_t n_ls);
static void slot_respawn(wd_slot_t *s);
static void listeners_release(wd_listen_t **ls, size_t n, wd_listen_t **keep, size_t n_keep);
static void batch_done_one(wd_master_t *m, wd_batch_t *b);

static const char *signame(int sig)
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

static wd_metrics_t the_metrics;

/* ---- config generations ------------------------------------------------------------------- */

static wd_gen_t *gen_new(wd_config_t *conf, int owned, const char *text, size_t len)
{
    wd_gen_t *gen = xcalloc(1, sizeof *gen);
    size_t off = 0;
    ssize_t n;

    gen->conf = conf;
    gen->owned = owned;
    gen->refs = 1;
    gen->fd = memfd_create("wsgid-config", MFD_CLOEXEC);
    if (gen->fd < 0)
        goto fail;
    while (off < len) {
        n = write(gen->fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        off += (size_t)n;
    }
    return gen;

fail:
    wd_log_error("cannot hand the configuration to the workers (memfd): %s", strerror(errno));
    if (gen->fd >= 0)
        close(gen->fd);
    free(gen);
    return NULL;
}

static wd_gen_t *gen_ref(wd_gen_t *gen)
{
    gen->refs++;
    return gen;
}

static void gen_unref(wd_gen_t *gen)
{
    if (gen == NULL || --gen->refs > 0)
        return;
    close(gen->fd);
    if (gen->owned) {
        wd_config_free(gen->conf);
        free(gen->conf);
    }
    free(gen);
}

/* ---- privileges --------------------------------------------------------------------------- */

/* Which uid/gid the workers of a group run as. As root: `user` (default nobody) and `group`
 * (default the user's group; nogroup for nobody). Otherwise `user` / `group` may only name who we
 * already are. *set says whether uv_spawn must switch (libuv then drops the supplementary
 * groups with setgroups(0), and the worker has only its primary group). Returns 0 or -1 with a
 * message in err. */
static int privileges(const wd_group_conf_t *g, uid_t *uid, gid_t *gid, int *set, char *err,
                      size_t errlen)
{
    const char *user = g->user != NULL ? g->user : "nobody";
    struct passwd *pw;
    struct group *gr;

    *set = 0;
    if (geteuid() != 0) {
        if (g->user != NULL && ((pw = getpwnam(g->user)) == NULL || pw->pw_uid != geteuid())) {
            snprintf(err, errlen, "group %s: user %s needs wsgid to be started as root", g->name,
                     g->user);
            return -1;
        }
        if (g->group != NULL && ((gr = getgrnam(g->group)) == NULL || gr->gr_gid != getegid())) {
            snprintf(err, errlen, "group %s: group %s needs wsgid to be started as root", g->name,
                     g->group);
            return -1;
        }
        return 0;
    }
    pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(err, errlen, "group %s: unknown user %s", g->name, user);
        return -1;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    if (g->group != NULL || g->user == NULL) {
        const char *name = g->group != NULL ? g->group : "nogroup";

        gr = getgrnam(name);
        if (gr == NULL && g->group != NULL) {
            snprintf(err, errlen, "group %s: unknown group %s", g->name, name);
            return -1;
        }
        if (gr != NULL)
            *gid = gr->gr_gid;
    }
    *set = 1;
    return 0;
}

/* Workers that run as another user open the log files by name, as that user, at their start and
 * at reopen-logs: in a directory only root may write (/var/log/...) that fails, and a rotated
 * file would never be created again. As nginx does, the master creates the file and gives it to
 * the user (a root-owned file only; one that already belongs to someone else is left alone). */
static void give_log_file(const wd_group_conf_t *g, const char *path, uid_t uid, gid_t gid)
{
    struct stat st;
    int fd;

    if (path == NULL || uid == 0 || strcmp(path, "-") == 0 || strcmp(path, "off") == 0)
        return;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0)
        return; /* the worker says why when it opens it */
    if (fstat(fd, &st) == 0 && st.st_uid != uid) {
        if (st.st_uid == 0) {
            if (fchown(fd, uid, gid) < 0)
                wd_log_warn("group %s: cannot give the log file %s to uid %u: %s", g->name, path,
                            (unsigned)uid, strerror(errno));
        } else if (!(st.st_mode & S_IWOTH) && !(st.st_gid == gid && (st.st_mode & S_IWGRP))) {
            wd_log_warn("group %s: the log file %s belongs to uid %u; the group's workers (uid "
                        "%u) may not be able to write it",
                        g->name, path, (unsigned)st.st_uid, (unsigned)uid);
        }
    }
    close(fd);
}

static void give_log_files(const wd_group_conf_t *g, const wd_config_t *conf)
{
    uid_t uid;
    gid_t gid;
    int set;
    char err[256];

    if (privileges(g, &uid, &gid, &set, err, sizeof err) < 0 || !set)
        return;
    give_log_file(g, g->access_log != NULL ? g->access_log : conf->access_log, uid, gid);
    give_log_file(g, conf->log_file, uid, gid);
}

static int check_privileges(const wd_config_t *conf, char *err, size_t errlen)
{
    uid_t uid;
    gid_t gid;
    int set;
    size_t i;

    for (i = 0; i < conf->n_groups; i++)
        if (privileges(&conf->groups[i], &uid, &gid, &set, err, errlen) < 0)
            return -1;
    return 0;
}

static void warn_nobody(wd_group_t *g)
{
    if (geteuid() != 0 || g->conf->user != NULL || g->warned)
        return;
    g->warned = 1;
    wd_log_warn("group %s: no `user:` set; running its workers as nobody — say `user: root` to "
                "run the app as root",
                g->name);
}

/* ---- names and environment of a worker ---------------------------------------------------- */

/* "%{GROUP}" alone (the default) gives "(wsgi:NAME)" as in mod_wsgi; otherwise the string is
 * taken literally with %{GROUP} and %{PROCESS} replaced. Returns a malloc'd string. */
static char *display_name(const wd_group_conf_t *g, int slot)
{
    const char *fmt = g->display_name != NULL ? g->display_name : "%{GROUP}";
    char *out = NULL;
    size_t size = 0;
    FILE *f;

    f = open_memstream(&out, &size);
    if (f == NULL)
        abort();
    if (strcmp(fmt, "%{GROUP}") == 0) {
        fprintf(f, "(wsgi:%s)", g->name);
    } else {
        while (*fmt != '\0') {
            if (strncmp(fmt, "%{GROUP}", 8) == 0) {
                fputs(g->name, f);
                fmt += 8;
            } else if (strncmp(fmt, "%{PROCESS}", 10) == 0) {
                fprintf(f, "%d", slot);
                fmt += 10;
            } else {
                fputc(*fmt++, f);
            }
        }
    }
    if (fclose(f) != 0)
        abort();
    return out;
}

static int env_skip(const char *var)
{
    static const char *const names[] = {"WSGID_WORKER=", "WSGID_CONFIG=", "NOTIFY_SOCKET=",
                                        "LISTEN_FDS=",   "LISTEN_PID=",   "LISTEN_FDNAMES="};
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strncmp(var, names[i], strlen(names[i])) == 0)
            return 1;
    return 0;
}

/* Our environment, without what concerns only the master, plus WSGID_WORKER and WSGID_CONFIG.
 * Returns a NULL-terminated array whose last two strings are malloc'd (see env_free). */
static char **worker_env(const char *group, int slot, int record, const char *path)
{
    size_t n = 0, i, j = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    env = xcalloc(n + 3, sizeof *env);
    for (i = 0; i < n; i++)
        if (!env_skip(environ[i]))
            env[j++] = environ[i];
    if (asprintf(&env[j++], "WSGID_WORKER=%s %d %d", group, slot, record) < 0 ||
        asprintf(&env[j++], "WSGID_CONFIG=%s", path) < 0)
        abort();
    env[j] = NULL;
    return env;
}

static void env_free(char **env)
{
    size_t n = 0;

    while (env[n] != NULL)
        n++;
    free(env[n - 1]);
    free(env[n - 2]);
    free(env);
}

/* ---- the scoreboard ----------------------------------------------------------------------- */

static int scoreboard_open(wd_master_t *m)
{
    size_t size = WD_SCORE_MAX * sizeof(wd_score_t);
    void *p;

    m->score_fd = memfd_create("wsgid-scoreboard", MFD_CLOEXEC);
    if (m->score_fd < 0 || ftruncate(m->score_fd, (off_t)size) < 0)
        goto fail;
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->score_fd, 0);
    if (p == MAP_FAILED)
        goto fail;
    m->score = p;
    return 0;

fail:
    wd_log_error("cannot create the scoreboard (memfd): %s", strerror(errno));
    return -1;
}

static int record_take(wd_master_t *m)
{
    int i;

    for (i = 0; i < WD_SCORE_MAX; i++) {
        if (!m->used[i]) {
            m->used[i] = 1;
            memset(&m->score[i], 0, sizeof m->score[i]);
            return i;
        }
    }
    return -1;
}

/* The counters of an exited worker go to its group's totals, then the record is free. */
static void record_release(wd_master_t *m, wd_proc_t *p)
{
    wd_status_group_t *t = &p->g->totals;
    const wd_score_t *sc;
    int k;

    if (p->record < 0)
        return;
    sc = &m->score[p->record];
    t->past_requests += wd_score_get(&sc->requests);
    for (k = 0; k < 6; k++)
        t->past_status[k] += wd_score_get(&sc->status[k]);
    for (k = 0; k <= WD_SCORE_BUCKETS; k++)
        t->past_duration_bucket[k] += wd_score_get(&sc->duration_bucket[k]);
    t->past_duration_sum_us += wd_score_get(&sc->duration_sum_us);
    t->past_bytes_sent += wd_score_get(&sc->bytes_sent);
    t->past_timeouts += wd_score_get(&sc->timeouts);
    t->past_accept_empty += wd_score_get(&sc->accept_empty);
    m->used[p->record] = 0;
    p->record = -1;
}

/* ---- groups and slots --------------------------------------------------------------------- */

static void slot_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static wd_slot_t *slot_new(wd_group_t *g, int n)
{
    wd_slot_t *s = xcalloc(1, sizeof *s);

    s->g = g;
    s->slot = n;
    uv_timer_init(&g->m->loop, &s->timer);
    s->timer.data = s;
    return s;
}

static void slot_free(wd_slot_t *s)
{
    if (s->cur != NULL)
        s->cur->s = NULL;
    if (s->repl != NULL)
        s->repl->s = NULL;
    uv_close((uv_handle_t *)&s->timer, slot_free_cb);
}

static wd_group_t *group_ref(wd_group_t *g)
{
    g->refs++;
    return g;
}

static void group_unref(wd_group_t *g)
{
    if (--g->refs > 0)
        return;
    listeners_release(g->ls, g->n_ls, NULL, 0);
    free(g->slots);
    gen_unref(g->gen);
    free(g->name);
    free(g);
}

static wd_group_t *find_group(wd_master_t *m, const char *name)
{
    size_t i;

    for (i = 0; i < m->n_groups; i++)
        if (strcmp(m->groups[i]->name, name) == 0)
            return m->groups[i];
    return NULL;
}

static int same_address(const wd_listen_conf_t *a, const wd_listen_conf_t *b)
{
    if (a->is_unix != b->is_unix)
        return 0;
    if (a->is_unix)
        return strcmp(a->path, b->path) == 0;
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* The listeners of conf: those of `reuse` with the same address are shared (same wd_listen_t,
 * same fd), the others are bound. Returns a malloc'd array, or NULL after a
 * bind error, having closed what it bound and taken nothing. */
static wd_listen_t **listeners_open(const wd_group_conf_t *conf, wd_listen_t **reuse,
                                    size_t n_reuse)
{
    wd_listen_t **ls = xcalloc(conf->n_listen, sizeof *ls);
    int *from = xcalloc(conf->n_listen, sizeof *from);
    const wd_listen_conf_t *lc;
    size_t i, k;

    for (i = 0; i < conf->n_listen; i++) {
        lc = &conf->listen[i];
        from[i] = -1;
        for (k = 0; k < n_reuse; k++) {
            if (reuse[k] != NULL && same_address(reuse[k]->conf, lc)) {
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

/* Closes the listeners of ls that are not in keep, and frees the array. */
static void listeners_release(wd_listen_t **ls, size_t n, wd_listen_t **keep, size_t n_keep)
{
    size_t i, k;

    for (i = 0; i < n; i++) {
        for (k = 0; k < n_keep; k++)
            if (keep[k] == ls[i])
                break;
        if (k == n_keep) {
            wd_listen_close(ls[i]);
            free(ls[i]);
        }
    }
    free(ls);
}

/* A group as configured, with its listeners (ls, or bound now) and its slots empty. */
static wd_group_t *group_new(wd_master_t *m, wd_gen_t *gen, const wd_group_conf_t *conf,
                             wd_listen_t **ls)
{
    wd_group_t *g = xcalloc(1, sizeof *g);
    int i;

    g->ls = ls != NULL ? ls : listeners_open(conf, NULL, 0);
    if (g->ls == NULL) {
        free(g);
        return NULL;
    }
    g->m = m;
    g->name = xstrdup(conf->name);
    g->gen = gen_ref(gen);
    g->conf = conf;
    g->n_ls = conf->n_listen;
    g->refs = 1;
    g->n_slots = conf->processes;
    g->slots = xcalloc((size_t)g->n_slots, sizeof *g->slots);
    for (i = 0; i < g->n_slots; i++)
        g->slots[i] = slot_new(g, i + 1);
    m->groups = xrealloc(m->groups, (m->n_groups + 1) * sizeof *m->groups);
    m->groups[m->n_groups++] = g;
    warn_nobody(g);
    return g;
}

/* ---- processes ---------------------------------------------------------------------------- */

static void proc_close_cb(uv_handle_t *h)
{
    wd_proc_t *p = h->data;

    if (--p->handles > 0)
        return;
    gen_unref(p->gen);
    group_unref(p->g);
    free(p);
}

static void close_pipe(wd_proc_t *p)
{
    if (p->pipe_closed)
        return;
    p->pipe_closed = 1;
    uv_close((uv_handle_t *)&p->pipe, proc_close_cb);
}

static void proc_say(wd_proc_t *p, const char *line)
{
    uv_os_fd_t fd;

    /* A line of a few bytes on a socketpair with an empty buffer: it goes at once or the
     * worker is gone (and its exit will be seen). */
    if (!p->pipe_closed && uv_fileno((uv_handle_t *)&p->pipe, &fd) == 0)
        if (send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            wd_log_debug("group %s worker %d (pid %d): cannot send %s", p->g->name, p->slot, p->pid,
                         line);
}

static void proc_kill_cb(uv_timer_t *t)
{
    wd_proc_t *p = t->data;

    if (p->pid <= 0)
        return;
    if (p->state == WD_PROC_STARTING) {
        snprintf(p->failed, sizeof p->failed, "not ready after %g s (startup-timeout)",
                 p->g->conf->startup_timeout);
        wd_log_error("group %s worker %d (pid %d) %s; killing it", p->g->name, p->slot, p->pid,
                     p->failed);
    } else {
        wd_log_warn("group %s worker %d (pid %d) still running %.0f s after it was told to stop; "
                    "killing it",
                    p->g->name, p->slot, p->pid,
                    (double)(uv_now(&p->m->loop) - p->ready_at) / 1000.0);
    }
    uv_process_kill(&p->process, SIGKILL);
}

/* Tells a worker to stop accepting, finish its requests and exit; SIGKILL after its group's
 * graceful-timeout + shutdown-timeout. It leaves its slot. */
static void proc_drain(wd_proc_t *p, const char *why)
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
    proc_say(p, "stop\n");
    uv_process_kill(&p->process, SIGTERM);
    uv_timer_start(&p->timer, proc_kill_cb,
                   (uint64_t)((conf->graceful_timeout + conf->shutdown_timeout) * 1000.0) +
                       WD_MASTER_KILL_SLACK_MS,
                   0);
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

static void abort_start(wd_master_t *m, wd_group_t *g, const char *why);

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
        proc_drain(old, "replaced");
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
    snprintf(s->last_error, sizeof s->last_error, "%s", why);
    if (cb != NULL)
        cb(s, ctx, 0, why, s->cur != NULL ? s->cur->pid : 0, pid);
}

static void proc_ready(wd_master_t *m, wd_proc_t *p)
{
    wd_slot_t *s = p->s;

    if (p->state != WD_PROC_STARTING)
        return;
    uv_timer_stop(&p->timer);
    p->state = WD_PROC_READY;
    p->ready_at = uv_now(&m->loop);
    wd_log_info("group %s worker %d (pid %d) ready", p->g->name, p->slot, p->pid);
    if (s == NULL) {
        proc_drain(p, "no longer needed");
        return;
    }
    s->last_error[0] = '\0';
    if (s->repl == p) {
        repl_ready(s, p);
    } else if (!s->ever_ready) {
        s->ever_ready = 1;
        start_progress(m);
    }
    s->ever_ready = 1;
}

static void recycle_done(wd_slot_t *s, void *ctx, int ok, const char *err, int old_pid, int new_pid)
{
    char *reason = ctx;

    if (ok) {
        wd_log_info("group %s worker %d (pid %d) recycled: %s; its replacement is pid %d",
                    s->g->name, s->slot, old_pid, reason, new_pid);
        s->restarts++;
        snprintf(s->last_restart, sizeof s->last_restart, "pid %d: %s", old_pid, reason);
    } else {
        wd_log_error("group %s worker %d (pid %d): its replacement failed (%s); it keeps serving",
                     s->g->name, s->slot, old_pid, err);
        if (s->cur != NULL)
            s->cur->recycling = 0;
        s->recycle_retry_at = uv_now(&s->g->m->loop) + WD_MASTER_RECYCLE_RETRY_MS;
    }
    free(reason);
}

/* Starts a replacement for the slot of p; once it is ready p drains (the rolling-restart path). */
static void proc_recycle(wd_master_t *m, wd_proc_t *p, const char *reason)
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
    s->repl_cb = recycle_done;
    s->repl_ctx = xstrdup(reason);
    s->repl = spawn(m, s, g->gen, g->conf, g->ls, g->n_ls);
    if (s->repl == NULL) {
        free(s->repl_ctx);
        s->repl_cb = NULL;
        s->repl_ctx = NULL;
        p->recycling = 0;
        s->recycle_retry_at = uv_now(&m->loop) + WD_MASTER_RECYCLE_RETRY_MS;
    }
}

static void on_line(wd_proc_t *p, char *line)
{
    wd_master_t *m = p->m;

    if (p->pid <= 0 && p->state != WD_PROC_STARTING && p->state != WD_PROC_READY)
        return;
    if (strcmp(line, "ready") == 0) {
        if (!m->stopping)
            proc_ready(m, p);
    } else if (strncmp(line, "failed", 6) == 0 && (line[6] == ' ' || line[6] == '\0')) {
        const char *msg = line[6] ? line + 7 : "failed";

        snprintf(p->failed, sizeof p->failed, "%s", msg);
        wd_log_error("group %s worker %d (pid %d): %s", p->g->name, p->slot, p->pid, msg);
        if (p->s != NULL)
            snprintf(p->s->last_error, sizeof p->s->last_error, "%s", msg);
        if (m->starting && p->s != NULL && !p->s->ever_ready)
            abort_start(m, p->g,
                        "the application could not be loaded (see the Python error above)");
    } else if (strncmp(line, "recycle", 7) == 0 && (line[7] == ' ' || line[7] == '\0')) {
        proc_recycle(m, p, line[7] ? line + 8 : "asked by the worker");
    } else {
        wd_log_warn("group %s worker %d (pid %d): unexpected message \"%s\"", p->g->name, p->slot,
                    p->pid, line);
    }
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

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    wd_proc_t *p = h->data;

    buf->base = p->line + p->line_len;
    buf->len = sizeof p->line - p->line_len;
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    wd_proc_t *p = st->data;

    if (n > 0) {
        p->line_len += (size_t)n;
        take_lines(p, 0);
    } else if (n < 0) {
        take_lines(p, 1);
        close_pipe(p);
    }
}

/* The exit of a worker may be seen before its last line: read what is left synchronously. */
static void drain_pipe(wd_proc_t *p)
{
    uv_os_fd_t fd;
    ssize_t n;

    if (p->pipe_closed || uv_fileno((uv_handle_t *)&p->pipe, &fd) < 0)
        return;
    for (;;) {
        n = read(fd, p->line + p->line_len, sizeof p->line - p->line_len);
        if (n <= 0)
            break;
        p->line_len += (size_t)n;
        take_lines(p, 0);
    }
    take_lines(p, 1);
}

/* ---- stopping ----------------------------------------------------------------------------- */

static void finish(wd_master_t *m)
{
    size_t i;
    int k;

    if (m->finished)
        return;
    m->finished = 1;
    wd_log_info("all workers stopped");
    for (i = 0; i < m->n_signals; i++)
        uv_close((uv_handle_t *)&m->signals[i], NULL);
    uv_close((uv_handle_t *)&m->tick, NULL);
    if (m->stop_req != NULL) {
        wd_control_reply(m->stop_req, json_pack("{s:b}", "ok", 1));
        m->stop_req = NULL;
    }
    wd_control_close(m->control);
    m->control = NULL;
    wd_metrics_stop(&the_metrics);
    for (i = 0; i < m->n_groups; i++) {
        wd_group_t *g = m->groups[i];

        for (k = 0; k < g->n_slots; k++)
            slot_free(g->slots[k]);
        g->n_slots = 0;
        g->removed = 1;
        group_unref(g);
    }
    m->n_groups = 0;
}

/* Every worker drains; each one still alive after its group's graceful-timeout +
 * shutdown-timeout gets SIGKILL. The loop ends once every handle is closed. */
static void begin_stop(wd_master_t *m, int exit_code)
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
        for (k = 0; k < m->groups[i]->n_slots; k++)
            uv_timer_stop(&m->groups[i]->slots[k]->timer);
    for (p = m->procs; p != NULL; p = p->next) {
        if (p->state != WD_PROC_DRAINING)
            proc_drain(p, "wsgid is stopping");
    }
    if (m->n_alive == 0)
        finish(m);
}

static void kill_all(wd_master_t *m)
{
    wd_proc_t *p;

    for (p = m->procs; p != NULL; p = p->next)
        if (p->pid > 0)
            uv_process_kill(&p->process, SIGKILL);
}

static void abort_start(wd_master_t *m, wd_group_t *g, const char *why)
{
    if (m->stopping)
        return;
    wd_log_error("group %s: %s; stopping", g->name, why);
    begin_stop(m, 1);
}

/* ---- exits and respawns ------------------------------------------------------------------- */

static void describe_exit(char *buf, size_t len, int64_t status, int sig)
{
    if (sig != 0)
        snprintf(buf, len, "killed by signal %d (%s)", sig, signame(sig));
    else
        snprintf(buf, len, "exited with status %d", (int)status);
}

static void log_exit(wd_master_t *m, wd_proc_t *p, const char *how, int64_t status, int sig)
{
    wd_log_level_t level = WD_LOG_ERROR;

    if (m->stopping || p->state == WD_PROC_DRAINING)
        level = sig == 0 && status == 0 ? WD_LOG_INFO : WD_LOG_WARN;
    else if (sig == 0 && status == 0)
        level = WD_LOG_WARN;
    wd_log(level, "group %s worker %d (pid %d) %s", p->g->name, p->slot, p->pid, how);
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
    s->cur = spawn(g->m, s, g->gen, g->conf, g->ls, g->n_ls);
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

static void exit_cb(uv_process_t *process, int64_t status, int sig)
{
    wd_proc_t *p = process->data;
    wd_master_t *m = p->m;
    wd_slot_t *s;
    char how[128];
    int was_ready, pid = p->pid;

    drain_pipe(p);
    close_pipe(p);
    s = p->s;
    was_ready = p->state == WD_PROC_READY;
    describe_exit(how, sizeof how, status, sig);
    log_exit(m, p, how, status, sig);
    /* Nobody may signal this pid any more: it has been reaped and could be reused. */
    p->pid = 0;
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, proc_close_cb);
    uv_close((uv_handle_t *)process, proc_close_cb);
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        m->procs = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    m->n_alive--;
    record_release(m, p);
    p->s = NULL;

    if (s != NULL && s->repl == p) {
        repl_failed(s, p, pid, p->failed[0] ? p->failed : how);
        if (s->cur == NULL && !s->backing_off && group_active(s->g))
            slot_crashed(m, s, p, 0);
    } else if (s != NULL && s->cur == p) {
        s->cur = NULL;
        if (!p->failed[0])
            snprintf(s->last_error, sizeof s->last_error, "%s", how);
        if (m->starting && !s->ever_ready) {
            if (sig == 0 && status == WD_WORKER_EXIT_APP)
                abort_start(m, s->g,
                            "the application could not be loaded (see the Python error above)");
            else if (p->failed[0] && strstr(p->failed, "startup-timeout") != NULL)
                abort_start(m, s->g, "the application could not be loaded in time");
            else
                abort_start(m, s->g, "a worker exited before it was ready");
        } else if (group_active(s->g) && s->repl == NULL) {
            slot_crashed(m, s, p, was_ready);
        }
    }
    if (m->stopping && m->n_alive == 0)
        finish(m);
}

/* ---- spawning ----------------------------------------------------------------------------- */

/* Each worker gets its own read-only open file description of the memfd, so that its reads
 * neither move a sibling's offset nor can change the text. */
static int open_fd_again(int fd)
{
    char path[64];
    int nfd;

    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    nfd = open(path, O_RDONLY | O_CLOEXEC);
    return nfd < 0 ? -errno : nfd;
}

static wd_proc_t *spawn(wd_master_t *m, wd_slot_t *s, wd_gen_t *gen, const wd_group_conf_t *conf,
                        wd_listen_t **ls, size_t n_ls)
{
    wd_group_t *g = s->g;
    size_t n_stdio = WD_WORKER_FD_LISTEN + n_ls, i;
    uv_stdio_container_t *stdio = NULL;
    uv_process_options_t opt;
    char **env = NULL, *name = NULL, *args[2], err[256];
    int sv[2] = {-1, -1}, cfd = -1, rc, record = -1, set = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    wd_proc_t *p = NULL;

    err[0] = '\0';
    if (privileges(conf, &uid, &gid, &set, err, sizeof err) < 0) {
        rc = -EPERM;
        goto fail;
    }
    if (set)
        give_log_files(conf, gen->conf);
    record = record_take(m);
    if (record < 0) {
        snprintf(err, sizeof err, "no free scoreboard record (%d workers)", WD_SCORE_MAX);
        rc = -ENOSPC;
        goto fail;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        rc = -errno;
        goto fail;
    }
    cfd = rc = open_fd_again(gen->fd);
    if (rc < 0)
        goto fail;
    stdio = xcalloc(n_stdio, sizeof *stdio);
    for (i = 0; i < n_stdio; i++)
        stdio[i].flags = UV_INHERIT_FD;
    for (i = 0; i < 3; i++)
        stdio[i].data.fd = (int)i;
    stdio[WD_WORKER_FD_MASTER].data.fd = sv[1];
    stdio[WD_WORKER_FD_CONFIG].data.fd = cfd;
    stdio[WD_WORKER_FD_SCOREBOARD].data.fd = m->score_fd;
    for (i = 0; i < n_ls; i++)
        stdio[WD_WORKER_FD_LISTEN + i].data.fd = ls[i]->fd;

    name = display_name(conf, s->slot);
    env = worker_env(g->name, s->slot, record, gen->conf->path);
    args[0] = name;
    args[1] = NULL;
    memset(&opt, 0, sizeof opt);
    opt.exit_cb = exit_cb;
    opt.file = m->exe;
    opt.args = args;
    opt.env = env;
    opt.stdio_count = (int)n_stdio;
    opt.stdio = stdio;
    if (set) {
        opt.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
        opt.uid = uid;
        opt.gid = gid;
    }

    p = xcalloc(1, sizeof *p);
    p->process.data = p;
    p->pipe.data = p;
    p->timer.data = p;
    p->handles = 1;
    rc = uv_spawn(&m->loop, &p->process, &opt);
    if (rc < 0) {
        /* libuv wants the handle closed even when the spawn failed. */
        p->pipe_closed = 1;
        p->m = m;
        p->g = group_ref(g);
        p->gen = gen_ref(gen);
        uv_close((uv_handle_t *)&p->process, proc_close_cb);
        p = NULL;
        goto fail;
    }
    p->m = m;
    p->g = group_ref(g);
    p->gen = gen_ref(gen);
    p->s = s;
    p->slot = s->slot;
    p->pid = p->process.pid;
    p->record = record;
    record = -1;
    p->state = WD_PROC_STARTING;
    p->started_at = uv_now(&m->loop);
    if (conf->restart_interval > 0) {
        double first = s->restarts == 0 && !s->ever_ready
                           ? conf->restart_interval * (s->slot - 1) / conf->processes
                           : 0;

        p->recycle_at = p->started_at + (uint64_t)((conf->restart_interval + first) * 1000.0);
    }
    wd_score_set(&m->score[p->record].pid, (uint64_t)p->pid);
    wd_score_set(&m->score[p->record].started_unix, (uint64_t)time(NULL));
    p->next = m->procs;
    if (m->procs != NULL)
        m->procs->prev = p;
    m->procs = p;
    m->n_alive++;
    close(sv[1]);
    sv[1] = -1;
    uv_timer_init(&m->loop, &p->timer);
    uv_pipe_init(&m->loop, &p->pipe, 0);
    p->handles += 2;
    if (uv_pipe_open(&p->pipe, sv[0]) < 0 ||
        uv_read_start((uv_stream_t *)&p->pipe, alloc_cb, read_cb) < 0) {
        wd_log_error("group %s worker %d (pid %d): cannot watch its socket to the master", g->name,
                     s->slot, p->pid);
        close_pipe(p);
    } else {
        sv[0] = -1;
    }
    wd_log(s->restarts > 0 || s->ever_ready ? WD_LOG_INFO : WD_LOG_DEBUG,
           "group %s worker %d started (pid %d)", g->name, s->slot, p->pid);
    if (conf->startup_timeout > 0)
        uv_timer_start(&p->timer, proc_kill_cb, (uint64_t)(conf->startup_timeout * 1000.0), 0);
    rc = 0;

fail:
    if (rc < 0) {
        if (err[0] == '\0')
            snprintf(err, sizeof err, "cannot start %.160s: %s", m->exe, strerror(-rc));
        snprintf(s->last_error, sizeof s->last_error, "%s", err);
        wd_log_error("group %s worker %d: %s", g->name, s->slot, err);
    }
    if (record >= 0)
        m->used[record] = 0;
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (cfd >= 0)
        close(cfd);
    free(stdio);
    free(name);
    if (env != NULL)
        env_free(env);
    return rc < 0 ? NULL : p;
}

/* ---- rolling operations ------------------------------------------------------------------- */

static wd_batch_t *batch_new(wd_master_t *m, wd_control_req_t *req, const char *what)
{
    wd_batch_t *b = xcalloc(1, sizeof *b);

    b->req = req;
    b->reply = json_object();
    b->replaced = json_array();
    b->errors = json_array();
    b->t0 = uv_now(&m->loop);
    b->what = what;
    b->pending = 1; /* until batch_done_one() after the operations are started */
    return b;
}

static void batch_done_one(wd_master_t *m, wd_batch_t *b)
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
        free(msg);
    } else {
        wd_log_info("%s done: %zu workers replaced in %.2f s", b->what,
                    json_array_size(b->replaced), (double)(uv_now(&m->loop) - b->t0) / 1000.0);
    }
    if (b->req != NULL)
        wd_control_reply(b->req, r);
    else
        json_decref(r);
    json_decref(b->replaced);
    json_decref(b->errors);
    free(b);
}

static void op_step(wd_op_t *op);

/* The group takes its target config and listeners; slots beyond the new `processes` drain. */
static void op_commit(wd_op_t *op)
{
    wd_group_t *g = op->g;
    int n = op->conf->processes, k;

    if (op->gen != g->gen) {
        gen_unref(g->gen);
        g->gen = gen_ref(op->gen);
        g->conf = op->conf;
    }
    if (op->ls != g->ls) {
        size_t i;

        for (i = 0; i < op->n_ls; i++) {
            op->ls[i]->group = op->conf;
            op->ls[i]->conf = &op->conf->listen[i];
        }
        listeners_release(g->ls, g->n_ls, op->ls, op->n_ls);
        g->ls = op->ls;
        g->n_ls = op->n_ls;
        op->ls = NULL;
    }
    for (k = n; k < g->n_slots; k++) {
        if (g->slots[k]->cur != NULL)
            proc_drain(g->slots[k]->cur, "no longer configured");
        if (g->slots[k]->repl != NULL)
            proc_drain(g->slots[k]->repl, "no longer configured");
        slot_free(g->slots[k]);
    }
    if (n < g->n_slots)
        g->n_slots = n;
}

static void op_finish(wd_op_t *op, const char *err)
{
    wd_master_t *m = op->g->m;
    wd_group_t *g = op->g;

    if (err != NULL) {
        char *msg = NULL;

        if (asprintf(&msg, "group %s: %s", g->name, err) < 0)
            abort();
        json_array_append_new(op->batch->errors, json_string(msg));
        free(msg);
    } else {
        op_commit(op);
    }
    g->op = NULL;
    batch_done_one(m, op->batch);
    gen_unref(op->gen);
    if (op->ls != NULL && op->ls != g->ls)
        listeners_release(op->ls, op->n_ls, g->ls, g->n_ls);
    group_unref(g);
    free(op);
}

static void op_slot_done(wd_slot_t *s, void *ctx, int ok, const char *err, int old_pid, int new_pid)
{
    wd_op_t *op = ctx;
    char *msg = NULL;

    if (!ok) {
        if (asprintf(&msg,
                     "the replacement of worker %d (pid %d) failed: %s; the old workers keep "
                     "serving (see the error log for the traceback)",
                     s->slot, new_pid, err) < 0)
            abort();
        op_finish(op, msg);
        free(msg);
        return;
    }
    if (old_pid > 0)
        wd_log_info("group %s worker %d: pid %d replaced by pid %d", s->g->name, s->slot, old_pid,
                    new_pid);
    json_array_append_new(op->batch->replaced,
                          json_pack("{s:s,s:i,s:i,s:i}", "group", s->g->name, "slot", s->slot,
                                    "old_pid", old_pid, "new_pid", new_pid));
    op->next++;
    op_step(op);
}

/* Replaces (or fills) the next slot with a worker of the target config. */
static void op_step(wd_op_t *op)
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
        g->slots[op->next] = slot_new(g, op->next + 1);
        g->n_slots = op->next + 1;
    }
    s = g->slots[op->next];
    if (s->repl != NULL) {
        /* A recycling replacement is on its way: this one replaces it. */
        if (s->repl_cb == recycle_done)
            free(s->repl_ctx);
        s->repl_cb = NULL;
        proc_drain(s->repl, "superseded");
    }
    uv_timer_stop(&s->timer);
    s->backing_off = 0;
    s->repl_cb = op_slot_done;
    s->repl_ctx = op;
    s->repl = spawn(m, s, op->gen, op->conf, op->ls, op->n_ls);
    if (s->repl == NULL) {
        s->repl_cb = NULL;
        s->repl_ctx = NULL;
        op_finish(op, s->last_error);
    }
}

static wd_op_t *op_new(wd_group_t *g, wd_batch_t *b, wd_op_kind_t kind, wd_gen_t *gen,
                       const wd_group_conf_t *conf, wd_listen_t **ls, size_t n_ls)
{
    wd_op_t *op = xcalloc(1, sizeof *op);

    op->g = group_ref(g);
    op->batch = b;
    op->kind = kind;
    op->gen = gen_ref(gen);
    op->conf = conf;
    op->ls = ls;
    op->n_ls = n_ls;
    g->op = op;
    b->pending++;
    return op;
}

/* ---- reload ------------------------------------------------------------------------------- */

/* Everything a worker of the group reads from the config, as one string: two groups whose
 * strings are equal run the same way (the log settings are in it: workers log themselves). */
static char *group_canon(const wd_config_t *c, const wd_group_conf_t *g)
{
    char *out = NULL;
    size_t size = 0, i;
    FILE *f = open_memstream(&out, &size);

#define S(x) ((x) != NULL ? (x) : "\\0")
    fprintf(f, "log %d %s %s\n", (int)c->log_level, S(c->log_file), S(c->access_log));
    fprintf(f, "app %s %d %s %d %d %d %s %d\n", S(g->app), g->app_is_script, S(g->callable),
            g->processes, g->processes_set, g->threads, S(g->display_name), (int)g->protocol);
    for (i = 0; i < g->n_listen; i++)
        fprintf(f, "listen %s\n", g->listen[i].spec);
    fprintf(f, "socket %o %s %s\n", g->socket_mode, S(g->socket_user), S(g->socket_group));
    for (i = 0; i < g->n_python_path; i++)
        fprintf(f, "python-path %s\n", g->python_path[i]);
    fprintf(f, "home %s chdir %s user %s group %s\n", S(g->python_home), S(g->chdir), S(g->user),
            S(g->group));
    for (i = 0; i < g->n_env; i++)
        fprintf(f, "env %s=%s\n", g->env[i].name, g->env[i].value);
    wd_config_group_numbers(f, g);
    fprintf(f, "access-log %s\n", S(g->access_log));
    for (i = 0; i < g->n_mounts; i++)
        fprintf(f, "mount %s %s %d %s\n", g->mounts[i].prefix, g->mounts[i].app,
                g->mounts[i].app_is_script, S(g->mounts[i].callable));
#undef S
    fclose(f);
    return out;
}

static int group_changed(const wd_config_t *a, const wd_group_conf_t *ga, const wd_config_t *b,
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
            proc_drain(g->slots[k]->cur, "group removed");
        if (g->slots[k]->repl != NULL)
            proc_drain(g->slots[k]->repl, "group removed");
        slot_free(g->slots[k]);
    }
    g->n_slots = 0;
    listeners_release(g->ls, g->n_ls, NULL, 0);
    g->ls = NULL;
    g->n_ls = 0;
    group_unref(g);
}

static void reload_refuse(wd_control_req_t *req, const char *msg)
{
    wd_log_error("reload refused: %s", msg);
    if (req != NULL)
        wd_control_reply_error(req, "reload refused: %s", msg);
}

static void reload(wd_master_t *m, wd_control_req_t *req)
{
    wd_config_t *conf = xcalloc(1, sizeof *conf), *oldc = m->gen->conf;
    wd_listen_t ***new_ls = NULL;
    wd_group_t **groups = NULL, *g;
    json_t *added = NULL, *removed = NULL, *restarted = NULL, *unchanged = NULL;
    char err[1024], *text = NULL;
    size_t len = 0, i, k;
    wd_gen_t *gen = NULL;
    wd_batch_t *b;

    if (m->stopping) {
        reload_refuse(req, "wsgid is stopping");
        goto fail;
    }
    wd_log_info("reloading %s", oldc->path);
    if (wd_config_load_file(conf, oldc->path, &text, &len, err, sizeof err) < 0 ||
        check_privileges(conf, err, sizeof err) < 0) {
        reload_refuse(req, err);
        goto fail;
    }
    for (i = 0; i < conf->n_groups; i++) {
        g = find_group(m, conf->groups[i].name);
        if (g != NULL && g->op != NULL) {
            snprintf(err, sizeof err,
                     "group %s: a restart is in progress; try again when it is "
                     "done",
                     g->name);
            reload_refuse(req, err);
            goto fail;
        }
    }
    /* Bind every new address first: nothing changes unless all of them can be had. */
    new_ls = xcalloc(conf->n_groups, sizeof *new_ls);
    for (i = 0; i < conf->n_groups; i++) {
        g = find_group(m, conf->groups[i].name);
        if (g != NULL && !group_changed(oldc, g->conf, conf, &conf->groups[i]))
            continue;
        new_ls[i] = listeners_open(&conf->groups[i], g ? g->ls : NULL, g ? g->n_ls : 0);
        if (new_ls[i] == NULL) {
            for (k = 0; k < i; k++) {
                g = find_group(m, conf->groups[k].name);
                if (new_ls[k] != NULL)
                    listeners_release(new_ls[k], conf->groups[k].n_listen, g ? g->ls : NULL,
                                      g ? g->n_ls : 0);
            }
            reload_refuse(req, "a listener could not be bound (see above)");
            goto fail;
        }
    }
    gen = gen_new(conf, 1, text, len);
    if (gen == NULL) {
        reload_refuse(req, "cannot hand the configuration to the workers");
        goto fail;
    }
    conf = NULL;
    wd_notify_reloading();
    wd_log_init("master", gen->conf->log_level);
    if (wd_log_open(gen->conf->log_file, "off") < 0)
        wd_log_warn("reload: cannot reopen the error log %s", gen->conf->log_file);

    b = batch_new(m, req, "reload");
    added = json_array();
    removed = json_array();
    restarted = json_array();
    unchanged = json_array();
    groups = xcalloc(gen->conf->n_groups, sizeof *groups);
    for (i = 0; i < gen->conf->n_groups; i++) {
        const wd_group_conf_t *gc = &gen->conf->groups[i];

        g = find_group(m, gc->name);
        if (g == NULL) {
            g = group_new(m, gen, gc, new_ls[i]);
            m->n_groups--; /* the array is rebuilt below */
            wd_log_info("reload: group %s added", gc->name);
            json_array_append_new(added, json_string(gc->name));
            op_step(op_new(g, b, WD_OP_START, gen, gc, g->ls, g->n_ls));
        } else if (new_ls[i] == NULL) {
            json_array_append_new(unchanged, json_string(gc->name));
            gen_unref(g->gen);
            g->gen = gen_ref(gen);
            g->conf = gc;
            for (k = 0; k < g->n_ls; k++) {
                g->ls[k]->group = gc;
                g->ls[k]->conf = &gc->listen[k];
            }
        } else {
            wd_log_info("reload: group %s changed: rolling restart", gc->name);
            json_array_append_new(restarted, json_string(gc->name));
            g->warned = 0;
            if (g->stopped) {
                wd_op_t *op = op_new(g, b, WD_OP_CHANGE, gen, gc, new_ls[i], gc->n_listen);

                op->next = gc->processes;
                op_step(op); /* nothing runs: only the config changes */
            } else {
                op_step(op_new(g, b, WD_OP_CHANGE, gen, gc, new_ls[i], gc->n_listen));
            }
        }
        warn_nobody(g);
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
    if (strcmp(oldc->control ? oldc->control : "", gen->conf->control ? gen->conf->control : ""))
        wd_log_warn("reload: a new `control:` path takes effect at the next start");
    gen_unref(m->gen);
    m->gen = gen;
    json_object_set_new(b->reply, "added", added);
    json_object_set_new(b->reply, "removed", removed);
    json_object_set_new(b->reply, "restarted", restarted);
    json_object_set_new(b->reply, "unchanged", unchanged);
    wd_notify_ready("serving");
    batch_done_one(m, b);

fail:
    if (conf != NULL) {
        wd_config_free(conf);
        free(conf);
    }
    free(new_ls);
    free(text);
}

/* ---- status ------------------------------------------------------------------------------- */

static uint64_t read_rss(int pid)
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
    w->display_name = display_name(p->g->conf, p->slot);
    w->state = states[p->state];
    w->uptime = (double)(uv_now(&m->loop) - p->started_at) / 1000.0;
    w->restarts = s != NULL ? s->restarts : 0;
    p->rss = read_rss(p->pid);
    w->rss_bytes = p->rss;
    w->last_error = s != NULL && s->last_error[0] ? s->last_error : NULL;
    w->last_restart = s != NULL && s->last_restart[0] ? s->last_restart : NULL;
    w->score = p->record >= 0 ? &m->score[p->record] : NULL;
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
        groups[i].restarts = 0;
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
            if (s->cur == NULL && s->repl == NULL && !g->stopped) {
                memset(&workers[n], 0, sizeof workers[n]);
                workers[n].group = g->name;
                workers[n].slot = s->slot;
                workers[n].display_name = display_name(g->conf, s->slot);
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

static void reopen_logs(wd_master_t *m)
{
    wd_proc_t *p;

    if (wd_log_open(m->gen->conf->log_file, "off") == 0)
        wd_log_info("log files reopened");
    for (p = m->procs; p != NULL; p = p->next) {
        if (p->pid > 0) {
            const wd_config_t *pc = p->gen->conf;

            /* The paths this worker opens: those of the config it was started with. */
            for (size_t i = 0; i < pc->n_groups; i++)
                if (strcmp(pc->groups[i].name, p->g->name) == 0)
                    give_log_files(&pc->groups[i], pc);
            proc_say(p, "reopen-logs\n");
        }
    }
}

static void cmd_status(wd_master_t *m, wd_control_req_t *req, const char *group)
{
    wd_status_t st;
    json_t *obj;
    char *text;

    if (group != NULL && find_group(m, group) == NULL) {
        wd_control_reply_error(req, "no group %s", group);
        return;
    }
    wd_master_status(m, &st);
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
        snprintf(err, len, "group %s: a restart is already in progress; try again when it is done",
                 g->name);
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
    if (!all && (g = find_group(m, group)) == NULL) {
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
    b = batch_new(m, req, all ? "restart of every group" : "restart");
    for (i = 0; i < m->n_groups; i++) {
        wd_group_t *x = m->groups[i];

        if ((all && !x->stopped) || x == g) {
            wd_log_info("group %s: rolling restart of %d workers", x->name, x->conf->processes);
            op_step(op_new(x, b, WD_OP_RESTART, x->gen, x->conf, x->ls, x->n_ls));
        }
    }
    batch_done_one(m, b);
}

static void cmd_stop(wd_master_t *m, wd_control_req_t *req, const char *group)
{
    json_t *pids;
    char err[256];
    wd_group_t *g;
    int k;

    if (group == NULL) {
        wd_log_info("stop requested through the control socket: stopping gracefully");
        wd_control_reply(req, json_pack("{s:b,s:i}", "ok", 1, "workers", (int)m->n_alive));
        begin_stop(m, m->exit_code);
        return;
    }
    g = find_group(m, group);
    if (g == NULL || busy(g, err, sizeof err)) {
        if (g == NULL)
            wd_control_reply_error(req, "no group %s", group);
        else
            wd_control_reply_error(req, "%s", err);
        return;
    }
    pids = json_array();
    g->stopped = 1;
    for (k = 0; k < g->n_slots; k++) {
        wd_slot_t *s = g->slots[k];

        uv_timer_stop(&s->timer);
        s->backing_off = 0;
        if (s->cur != NULL) {
            json_array_append_new(pids, json_integer(s->cur->pid));
            proc_drain(s->cur, "stopped by wsgictl");
        }
        if (s->repl != NULL)
            proc_drain(s->repl, "stopped by wsgictl");
    }
    wd_log_info("group %s stopped", g->name);
    wd_control_reply(req, json_pack("{s:b,s:o}", "ok", 1, "stopped", pids));
}

static void cmd_start(wd_master_t *m, wd_control_req_t *req, const char *group)
{
    wd_batch_t *b;
    char err[256];
    wd_group_t *g;

    g = group != NULL ? find_group(m, group) : NULL;
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
    g->stopped = 0;
    wd_log_info("group %s: starting %d workers", g->name, g->conf->processes);
    b = batch_new(m, req, "start");
    op_step(op_new(g, b, WD_OP_START, g->gen, g->conf, g->ls, g->n_ls));
    batch_done_one(m, b);
}

static void control_cb(void *data, json_t *request, wd_control_req_t *req)
{
    wd_master_t *m = data;
    wd_control_command_t c;

    wd_control_decode(request, &c);
    if (c.cmd == WD_CONTROL_NONE) {
        wd_control_reply_error(req, "no \"cmd\" in the request");
        return;
    }
    if (m->stopping && c.cmd != WD_CONTROL_STATUS) {
        wd_control_reply_error(req, "wsgid is stopping");
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
        reload(m, req);
        break;
    case WD_CONTROL_STOP:
        cmd_stop(m, req, c.all ? NULL : c.group);
        break;
    case WD_CONTROL_START:
        cmd_start(m, req, c.group);
        break;
    case WD_CONTROL_REOPEN_LOGS:
        reopen_logs(m);
        wd_control_reply(req, json_pack("{s:b}", "ok", 1));
        break;
    default:
        wd_control_reply_error(req, "unknown command \"%s\"", c.name);
        break;
    }
}

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
        snprintf(p->s->last_error, sizeof p->s->last_error, "%s", p->failed);
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
 * dumped to the error log (faulthandler, on SIGUSR2), and the worker is killed a moment later. */
static int check_deadlock(wd_master_t *m, wd_proc_t *p)
{
    const wd_group_conf_t *c = p->g->conf;
    const wd_score_t *sc;
    struct timespec ts;
    uint64_t now, hb, since;
    char why[400], oldest[sizeof sc->oldest];

    if (c->deadlock_timeout <= 0 || p->record < 0 || p->deadlocked || p->state != WD_PROC_READY ||
        p->pid <= 0)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* the workers' clock too */
    now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    sc = &m->score[p->record];
    hb = wd_score_get(&sc->heartbeat_ns);
    if (hb == 0 || hb > now || (double)(now - hb) / 1e9 < c->deadlock_timeout)
        return 0;
    since = wd_score_get(&sc->oldest_start_ns);
    memcpy(oldest, sc->oldest, sizeof oldest);
    oldest[sizeof oldest - 1] = '\0';
    p->deadlocked = 1;
    if (since != 0 && since < now)
        snprintf(why, sizeof why,
                 "deadlock-timeout: its loop stopped %.0f s ago; the oldest request then, [req "
                 "%s], had run %.1f s",
                 (double)(now - hb) / 1e9, oldest, (double)(hb - since) / 1e9);
    else
        snprintf(why, sizeof why, "deadlock-timeout: its loop stopped %.0f s ago, no request ran",
                 (double)(now - hb) / 1e9);
    wd_log_error("group %s worker %d (pid %d): %s; replacing it, its Python stacks follow, then "
                 "it is killed",
                 p->g->name, p->slot, p->pid, why);
    if (p->s != NULL) {
        snprintf(p->s->last_error, sizeof p->s->last_error, "%s", why);
        p->recycling = 0;
        proc_recycle(m, p, why);
    }
    uv_process_kill(&p->process, SIGUSR2);
    uv_timer_stop(&p->timer);
    uv_timer_start(&p->timer, deadlock_kill_cb, WD_MASTER_DUMP_MS, 0);
    return 1;
}

static void tick_cb(uv_timer_t *t)
{
    wd_master_t *m = t->data;
    uint64_t now = uv_now(&m->loop);
    wd_proc_t *p, *next;
    char why[128];

    for (p = m->procs; p != NULL; p = next) {
        const wd_group_conf_t *c = p->g->conf;

        next = p->next;
        check_stopped(m, p, now);
        if (check_deadlock(m, p))
            continue;
        if (p->s == NULL || p->s->cur != p || p->state != WD_PROC_READY || p->recycling)
            continue;
        if (c->memory_limit > 0) {
            p->rss = read_rss(p->pid);
            if (p->rss > c->memory_limit) {
                snprintf(why, sizeof why, "memory-limit: RSS %.1f MiB > %.1f MiB",
                         (double)p->rss / 1048576.0, (double)c->memory_limit / 1048576.0);
                proc_recycle(m, p, why);
                continue;
            }
        }
        if (p->recycle_at > 0 && now >= p->recycle_at) {
            snprintf(why, sizeof why, "restart-interval (%g s)", c->restart_interval);
            proc_recycle(m, p, why);
        }
    }
}

/* ---- signals ------------------------------------------------------------------------------ */

static void signal_cb(uv_signal_t *handle, int signum)
{
    wd_master_t *m = handle->data;

    switch (signum) {
    case SIGTERM:
    case SIGINT:
        if (m->stopping) {
            wd_log_warn("received %s again: killing every worker now", signame(signum));
            kill_all(m);
            break;
        }
        wd_log_info("received %s: stopping gracefully (%zu workers)", signame(signum), m->n_alive);
        begin_stop(m, m->exit_code);
        break;
    case SIGHUP:
        wd_log_info("received SIGHUP: reloading the configuration");
        reload(m, NULL);
        break;
    case SIGUSR1:
        wd_log_info("received SIGUSR1: reopening the log files");
        reopen_logs(m);
        break;
    }
}

/* ---- setup and teardown ------------------------------------------------------------------- */

static int write_pidfile(wd_master_t *m)
{
    char buf[32];
    int fd, n, rc = 0;

    if (m->pidfile == NULL)
        return 0;
    fd = open(m->pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (write(fd, buf, (size_t)n) != n)
        rc = errno ? -errno : -EIO;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0)
        m->pidfile_written = 1;

fail:
    if (rc < 0)
        wd_log_error("cannot write the pidfile %s: %s", m->pidfile, strerror(-rc));
    return rc;
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
    return 0;
}

static int open_groups(wd_master_t *m)
{
    const wd_config_t *conf = m->gen->conf;
    char err[1024];
    size_t i;

    if (check_privileges(conf, err, sizeof err) < 0) {
        wd_log_error("%s", err);
        return -1;
    }
    for (i = 0; i < conf->n_groups; i++)
        if (group_new(m, m->gen, &conf->groups[i], NULL) == NULL)
            return -1;
    return 0;
}

static void start(wd_master_t *m)
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
    uv_timer_start(&m->tick, tick_cb, WD_MASTER_TICK_MS, WD_MASTER_TICK_MS);
    m->t0 = uv_now(&m->loop);
    for (i = 0; i < m->n_groups; i++)
        m->n_first += (size_t)m->groups[i]->n_slots;
    m->starting = 1;
    wd_log_info("wsgid %s master (pid %d) starting %zu groups, %zu processes", WD_VERSION,
                (int)getpid(), m->n_groups, m->n_first);
    for (i = 0; i < m->n_groups && !m->stopping; i++) {
        wd_group_t *g = m->groups[i];

        for (j = 0; j < g->n_slots && !m->stopping; j++) {
            k = (size_t)j;
            g->slots[k]->cur = spawn(m, g->slots[k], g->gen, g->conf, g->ls, g->n_ls);
            if (g->slots[k]->cur == NULL)
                abort_start(m, g, "cannot start its workers");
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

    m->score_fd = -1;
    m->exit_code = 1;
    wd_log_init("master", conf->log_level);
    if (wd_log_open(conf->log_file, "off") < 0)
        goto out;
    signal(SIGPIPE, SIG_IGN);
    cloexec_inherited();
    raise_nofile();
    m->pidfile = conf->pidfile != NULL ? xstrdup(conf->pidfile) : NULL;
    rc = uv_loop_init(&m->loop);
    if (rc < 0) {
        wd_log_error("cannot create the event loop: %s", uv_strerror(rc));
        goto out;
    }
    loop_ready = 1;
    m->loop.data = m;
    m->gen = gen_new(conf, 0, text, len);
    if (m->gen == NULL || find_exe(m) < 0 || scoreboard_open(m) < 0 || open_groups(m) < 0)
        goto out;
    wd_listen_activation_done();
    if (conf->metrics_port > 0 &&
        wd_metrics_start(&the_metrics, &m->loop, conf->metrics_host, conf->metrics_port,
                         metrics_snapshot, metrics_release, m) < 0)
        goto out;
    if (conf->control != NULL &&
        wd_control_open(&m->control, &m->loop, conf->control, control_cb, m) < 0)
        goto out;
    if (write_pidfile(m) < 0)
        goto out;
    m->exit_code = 0;
    start(m);
    uv_run(&m->loop, UV_RUN_DEFAULT);

out:
    if (!m->finished && loop_ready) {
        /* The start failed before the loop ran: close what was opened. */
        m->stopping = 1;
        if (m->n_signals == 0)
            uv_timer_init(&m->loop, &m->tick);
        finish(m);
        uv_run(&m->loop, UV_RUN_DEFAULT);
    }
    if (loop_ready && uv_loop_close(&m->loop) != 0)
        wd_log_warn("the event loop still had handles at exit");
    for (i = 0; i < m->n_groups; i++)
        group_unref(m->groups[i]);
    free(m->groups);
    gen_unref(m->gen);
    if (m->score != NULL)
        munmap(m->score, WD_SCORE_MAX * sizeof(wd_score_t));
    if (m->score_fd >= 0)
        close(m->score_fd);
    if (m->pidfile_written && unlink(m->pidfile) < 0)
        wd_log_warn("cannot remove the pidfile %s: %s", m->pidfile, strerror(errno));
    free(m->pidfile);
    rc = m->exit_code;
    wd_log_info("master exiting with status %d", rc);
    free(m);
    return rc;
}
