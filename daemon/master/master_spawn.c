/* The master: privileges, a worker's display name and environment, spawning. See master_int.h. */
#include "master_int.h"
#include "alloc.h"
#include "log.h"
#include "utf8.h"
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

/* ---- privileges --------------------------------------------------------------------------- */

/* Who the workers of a group run as (privileges()). */
typedef struct {
    uid_t uid;
    gid_t gid;
    int set;             /* the worker must switch to them */
    char user[256];      /* the user's name, for initgroups() and USER / LOGNAME */
    char home[PATH_MAX]; /* its home directory, for HOME */
} creds_t;

/* Which uid/gid the workers of a group run as. As root: `user` (default nobody) and `group`
 * (default the user's primary group; nogroup for nobody when there is no `user`). Otherwise
 * `user` / `group` may only name who we already are. c->set says whether the worker must switch:
 * it then does so itself, before anything else (daemon/worker/worker.c, drop_privileges), with
 * the user's supplementary groups (initgroups), as mod_wsgi, uWSGI and gunicorn do; uv_spawn's
 * own switch drops them all (setgroups(0)). Returns 0 or -1 with a message in err. */
static int privileges(const wd_group_conf_t *g, creds_t *c, char *err, size_t errlen)
{
    const char *user = g->user != NULL ? g->user : "nobody";
    struct passwd *pw;
    struct group *gr;

    memset(c, 0, sizeof *c);
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
    if (strlen(pw->pw_name) >= sizeof c->user || strchr(pw->pw_name, ' ') != NULL) {
        snprintf(err, errlen, "group %s: the name of user %s is too long or has a space", g->name,
                 user);
        return -1;
    }
    c->uid = pw->pw_uid;
    c->gid = pw->pw_gid;
    snprintf(c->user, sizeof c->user, "%s", pw->pw_name);
    snprintf(c->home, sizeof c->home, "%s", pw->pw_dir != NULL ? pw->pw_dir : "/");
    if (g->group != NULL || g->user == NULL) {
        const char *name = g->group != NULL ? g->group : "nogroup";

        gr = getgrnam(name);
        if (gr == NULL && g->group != NULL) {
            snprintf(err, errlen, "group %s: unknown group %s", g->name, name);
            return -1;
        }
        if (gr != NULL)
            c->gid = gr->gr_gid;
    }
    c->set = 1;
    return 0;
}

int wd__m_check_privileges(const wd_config_t *conf, char *err, size_t errlen)
{
    creds_t c;
    size_t i;

    for (i = 0; i < conf->n_groups; i++)
        if (privileges(&conf->groups[i], &c, err, errlen) < 0)
            return -1;
    return 0;
}

void wd__m_warn_nobody(wd_group_t *g)
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
char *wd__m_display_name(const wd_group_conf_t *g, int slot)
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

/* What concerns only the master, and what the worker gets anew. */
static int env_skip(const char *var, const creds_t *c)
{
    static const char *const names[] = {
        "WSGID_WORKER=", "WSGID_CONFIG=",   "NOTIFY_SOCKET=",      "LISTEN_FDS=",
        "LISTEN_PID=",   "LISTEN_FDNAMES=", WD_WORKER_ENV_USER "="};
    static const char *const user[] = {"HOME=", "USER=", "LOGNAME="};
    size_t i;

    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strncmp(var, names[i], strlen(names[i])) == 0)
            return 1;
    for (i = 0; c->set && i < sizeof user / sizeof user[0]; i++)
        if (strncmp(var, user[i], strlen(user[i])) == 0)
            return 1;
    return 0;
}

/* Our environment, without what concerns only the master, plus WSGID_WORKER and WSGID_CONFIG;
 * a worker that switches users gets WD_WORKER_ENV_USER (spawn.h), and HOME, USER and LOGNAME
 * of that user instead of ours (root's, started from a root shell: getpass.getuser() said root,
 * ~ was /root), as login and su give; the group's `env:` still sets them (the worker sets it
 * later). Returns a NULL-terminated array whose first *n_own strings are malloc'd (env_free). */
static char **worker_env(const wd_gen_t *gen, const wd_group_conf_t *conf, int slot, int record,
                         const creds_t *c, size_t *n_own)
{
    size_t n = 0, i, j = 0;
    char **env;
    int workers, place = wd_config_worker_index(gen->conf, conf, slot, &workers);

    while (environ[n] != NULL)
        n++;
    env = xcalloc(n + 7, sizeof *env);
    /* Its place among the workers of every group (pin-threads): its configuration holds its
     * own group only. */
    if (asprintf(&env[j++], "WSGID_WORKER=%s %d %d %d %d", conf->name, slot, record, place,
                 workers) < 0 ||
        asprintf(&env[j++], "WSGID_CONFIG=%s", gen->conf->path) < 0)
        abort();
    if (c->set && (asprintf(&env[j++], "%s=%u %u %s", WD_WORKER_ENV_USER, (unsigned)c->uid,
                            (unsigned)c->gid, c->user) < 0 ||
                   asprintf(&env[j++], "HOME=%s", c->home) < 0 ||
                   asprintf(&env[j++], "USER=%s", c->user) < 0 ||
                   asprintf(&env[j++], "LOGNAME=%s", c->user) < 0))
        abort();
    *n_own = j;
    for (i = 0; i < n; i++)
        if (!env_skip(environ[i], c))
            env[j++] = environ[i];
    env[j] = NULL;
    return env;
}

static void env_free(char **env, size_t n_own)
{
    for (size_t i = 0; i < n_own; i++)
        free(env[i]);
    free(env);
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

/* The fds a worker starts with (spawn.h): stdin, its stdout and stderr pipes (out), its end of
 * the socketpair, the config, the scoreboard, the master's stderr and the group's listeners. */
static uv_stdio_container_t *worker_fds(const wd_group_t *g, const int out[2], int sock, int cfd,
                                        int stacks, wd_listen_t **ls, size_t n_ls)
{
    size_t n = WD_WORKER_FD_LISTEN + n_ls, i;
    uv_stdio_container_t *stdio = xcalloc(n, sizeof *stdio);

    for (i = 0; i < n; i++)
        stdio[i].flags = UV_INHERIT_FD;
    stdio[0].data.fd = 0;
    stdio[1].data.fd = out[0];
    stdio[2].data.fd = out[1];
    stdio[WD_WORKER_FD_STDERR].data.fd = 2;
    stdio[WD_WORKER_FD_MASTER].data.fd = sock;
    stdio[WD_WORKER_FD_CONFIG].data.fd = cfd;
    stdio[WD_WORKER_FD_SCOREBOARD].data.fd = g->score_fd; /* its group's alone */
    stdio[WD_WORKER_FD_STACKS].data.fd = stacks;
    for (i = 0; i < n_ls; i++)
        stdio[WD_WORKER_FD_LISTEN + i].data.fd = ls[i]->fd;
    return stdio;
}

/* A worker that started: its record in the scoreboard, its recycling time, the master's list. */
static void proc_started(wd_master_t *m, wd_proc_t *p, wd_slot_t *s, wd_gen_t *gen,
                         const wd_group_conf_t *conf, int record)
{
    p->m = m;
    p->g = wd__m_group_ref(s->g);
    p->gen = wd__m_gen_ref(gen);
    p->gconf = conf;
    p->s = s;
    p->slot = s->slot;
    p->pid = p->process.pid;
    p->record = record;
    p->state = WD_PROC_STARTING;
    p->started_at = uv_now(&m->loop);
    if (conf->restart_interval > 0) {
        /* The first workers of a group spread over the interval, so as not to restart together. */
        double first = s->restarts == 0 && !s->ever_ready
                           ? conf->restart_interval * (s->slot - 1) / conf->processes
                           : 0;

        p->recycle_at = p->started_at + (uint64_t)((conf->restart_interval + first) * 1000.0);
    }
    wd_score_set(&wd__m_record(p)->pid, (uint64_t)p->pid);
    wd_score_set(&wd__m_record(p)->started_unix, (uint64_t)time(NULL));
    p->next = m->procs;
    if (m->procs != NULL)
        m->procs->prev = p;
    m->procs = p;
    m->n_alive++;
}

/* Reads the worker's messages on sock and arms its startup timeout (conf: the config it runs,
 * which in a rolling reload is not yet its group's). Returns 0 when the pipe took
 * sock, -1 when the caller keeps (and closes) it. */
static int proc_watch(wd_proc_t *p, const wd_group_conf_t *conf, int sock)
{
    wd_master_t *m = p->m;
    wd_slot_t *s = p->s;
    int rc = 0;

    uv_timer_init(&m->loop, &p->timer);
    uv_pipe_init(&m->loop, &p->pipe, 1); /* ipc: "adopt" lines come with a file (spawn.h) */
    p->handles += 2;
    if (uv_pipe_open(&p->pipe, sock) < 0 ||
        uv_read_start((uv_stream_t *)&p->pipe, wd__m_alloc_cb, wd__m_read_cb) < 0) {
        wd_log_error("group %s worker %d (pid %d): cannot watch its socket to the master",
                     p->g->name, s->slot, p->pid);
        wd__m_close_pipe(p);
        rc = -1;
    }
    wd_log(s->restarts > 0 || s->ever_ready ? WD_LOG_INFO : WD_LOG_DEBUG,
           "group %s worker %d started (pid %d)", p->g->name, s->slot, p->pid);
    if (conf->startup_timeout > 0)
        uv_timer_start(&p->timer, wd__m_proc_kill_cb, (uint64_t)(conf->startup_timeout * 1000.0),
                       0);
    return rc;
}

/* The process itself. libuv wants the handle closed even when the spawn failed: then NULL, with
 * the error in *rc. */
static wd_proc_t *proc_spawn(wd_master_t *m, wd_slot_t *s, wd_gen_t *gen,
                             const uv_process_options_t *opt, int *rc)
{
    wd_proc_t *p = xcalloc(1, sizeof *p);

    p->stacks_fd = -1;
    p->process.data = p;
    p->pipe.data = p;
    p->timer.data = p;
    p->handles = 1;
    *rc = uv_spawn(&m->loop, &p->process, opt);
    if (*rc == 0)
        return p;
    p->pipe_closed = 1;
    p->m = m;
    p->g = wd__m_group_ref(s->g);
    p->gen = wd__m_gen_ref(gen);
    uv_close((uv_handle_t *)&p->process, wd__m_proc_close_cb);
    return NULL;
}

wd_proc_t *wd__m_spawn(wd_master_t *m, wd_slot_t *s, wd_gen_t *gen, const wd_group_conf_t *conf,
                       wd_listen_t **ls, size_t n_ls)
{
    wd_group_t *g = s->g;
    size_t n_stdio = WD_WORKER_FD_LISTEN + n_ls;
    uv_stdio_container_t *stdio = NULL;
    uv_process_options_t opt;
    char **env = NULL, *name = NULL, *args[2], err[256];
    struct stat st;
    int sv[2] = {-1, -1}, sp[2] = {-1, -1}, out[2] = {-1, -1}, cfd = -1, rc, record = -1;
    int waiting = 0; /* no free record: said, and not a failure (scoreboard.h) */
    wd_output_t *readers[2] = {NULL, NULL};
    wd_logpipe_t *logs[2] = {NULL, NULL};
    size_t n_own = 0;
    creds_t c;
    wd_proc_t *p = NULL;

    err[0] = '\0';
    if (privileges(conf, &c, err, sizeof err) < 0) {
        rc = -EPERM;
        goto fail;
    }
    record = wd__m_record_take(g);
    if (record < 0 && g->score != NULL) {
        /* Restarts faster than the old workers drain (scoreboard.h): not a failure, a wait. A
         * respawn tries again every second: said once, until a record is taken again (each
         * try said it, a line a second for each slot: helper-85). */
        rc = -ENOSPC;
        waiting = 1;
        if (g->board_warned)
            goto fail;
        g->board_warned = 1;
        wd_log_warn("group %s worker %d: all %d records of its scoreboard are taken (its "
                    "workers, and old ones still draining from earlier restarts): it starts "
                    "once one of them has exited (graceful-timeout + shutdown-timeout at most)",
                    g->name, s->slot, g->n_records);
        goto fail;
    }
    g->board_warned = 0;
    if (record < 0) {
        snprintf(err, sizeof err, "its group has no scoreboard (see the error at its start)");
        rc = -ENOSPC;
        goto fail;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = wd__m_logs_give(m, sv[0], gen->conf, conf, s->slot, logs);
    if (rc < 0) {
        snprintf(err, sizeof err, "cannot give it its log pipes: %s", strerror(-rc));
        goto fail;
    }
    cfd = rc = open_fd_again(wd__m_gen_fd(gen, conf));
    if (rc < 0)
        goto fail;
    rc = wd__m_stacks_pipe(sp);
    if (rc < 0)
        goto fail;
    out[0] = rc = wd__m_output_open(m, "stdout", WD_LOG_INFO, &readers[0]);
    if (rc < 0)
        goto fail;
    out[1] = rc = wd__m_output_open(m, "stderr", WD_LOG_WARN, &readers[1]);
    if (rc < 0)
        goto fail;
    stdio = worker_fds(g, out, sv[1], cfd, sp[1], ls, n_ls);

    name = wd__m_display_name(conf, s->slot);
    env = worker_env(gen, conf, s->slot, record, &c, &n_own); /* the group's name in gen */
    args[0] = name;
    args[1] = NULL;
    memset(&opt, 0, sizeof opt);
    opt.exit_cb = wd__m_exit_cb;
    /* The binary this master runs, not the file at its path: a package upgrade renames a new one
     * there, and a restart would start the new workers with the old master (helper-72). Once the
     * path names another file, /proc/self/exe: in the child, between fork and exec, the master's
     * image. The path while it is still ours: under valgrind --trace-children /proc/self/exe is
     * valgrind's tool, which then ran with no arguments. */
    opt.file = stat(m->exe, &st) == 0 && st.st_dev == m->exe_st.st_dev &&
                       st.st_ino == m->exe_st.st_ino && m->exe_st.st_ino != 0
                   ? m->exe
                   : "/proc/self/exe";
    opt.args = args;
    opt.env = env;
    opt.stdio_count = (int)n_stdio;
    opt.stdio = stdio;
    p = proc_spawn(m, s, gen, &opt, &rc);
    if (p == NULL)
        goto fail;
    proc_started(m, p, s, gen, conf, record);
    record = -1;
    p->stacks_fd = sp[0];
    sp[0] = -1;
    for (int i = 0; i < 2; i++) {
        wd__m_output_attach(readers[i], &p->out[i], &p->logs[0], g->name, s->slot, p->pid);
        readers[i] = NULL;
        if (logs[i] != NULL)
            wd__m_logpipe_attach(logs[i], &p->logs[i]);
        logs[i] = NULL;
    }
    close(sv[1]);
    sv[1] = -1;
    if (proc_watch(p, conf, sv[0]) == 0)
        sv[0] = -1;
    rc = 0;

fail:
    if (rc < 0 && !waiting) {
        if (err[0] == '\0')
            snprintf(err, sizeof err, "cannot start %.160s: %s", m->exe, strerror(-rc));
        wd_utf8_copy(s->last_error, sizeof s->last_error, err);
        wd_log_error("group %s worker %d: %s", g->name, s->slot, err);
    }
    if (record >= 0)
        g->used[record] = 0;
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (cfd >= 0)
        close(cfd);
    if (sp[0] >= 0)
        close(sp[0]);
    if (sp[1] >= 0)
        close(sp[1]);
    for (int i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]); /* the worker has it; when it and its children are gone, EOF */
        if (readers[i] != NULL)
            wd__m_output_close(readers[i]); /* no worker */
        wd__m_logpipe_close(logs[i]);
    }
    free(stdio);
    free(name);
    if (env != NULL)
        env_free(env, n_own);
    return rc < 0 ? NULL : p;
}
