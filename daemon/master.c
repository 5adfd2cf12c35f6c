/* The master process: see master.h.
 *
 * Every worker slot (group, 1-based process number) is a wd_slot_t in one array; it outlives the
 * processes that fill it. Each running process is a wd_proc_t holding its uv_process_t and the
 * uv_pipe_t on our end of its socketpair; the proc is freed when both handles are closed, so a
 * respawn never reuses a handle that libuv still knows about. */
#include "master.h"
#include "listen.h"
#include "log.h"
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#define WD_MASTER_LINE_MAX 4096
#define WD_MASTER_QUICK_DEATH_MS 10000 /* a worker dying sooner than this is a crash loop */
#define WD_MASTER_STABLE_MS 30000      /* ready this long: the backoff starts over */
#define WD_MASTER_BACKOFF_MAX 60       /* seconds */

extern char **environ;

typedef enum wd_slot_state {
    WD_SLOT_STARTING, /* spawned, has not reported ready yet */
    WD_SLOT_READY,
    WD_SLOT_STOPPING, /* sent SIGTERM, waiting for it to exit */
    WD_SLOT_BACKOFF,  /* dead, waiting before the next respawn */
    WD_SLOT_STOPPED,
} wd_slot_state_t;

typedef enum wd_slot_timer {
    WD_TIMER_NONE,
    WD_TIMER_STARTUP, /* startup-timeout for the ready line */
    WD_TIMER_BACKOFF, /* respawn delay */
    WD_TIMER_KILL,    /* graceful-timeout + shutdown-timeout, then SIGKILL */
} wd_slot_timer_t;

typedef struct wd_proc wd_proc_t;

typedef struct wd_slot {
    size_t group; /* index in conf->groups */
    int slot;     /* 1-based */
    int pid;      /* 0 while no process runs (or it has just been reaped) */
    wd_slot_state_t state;
    uint64_t started_at; /* uv_now() at the last spawn, ms */
    uint64_t ready_at;
    unsigned restarts;
    unsigned backoff; /* seconds waited before the last respawn after a quick death */
    int ever_ready;
    char last_error[256];
    uv_timer_t timer;
    wd_slot_timer_t timer_mode;
    wd_proc_t *proc; /* NULL while no process runs */
} wd_slot_t;

struct wd_proc {
    uv_process_t process;
    uv_pipe_t pipe; /* our end of the socketpair: "ready\n", "failed MESSAGE\n" */
    wd_slot_t *w;   /* NULL once reaped */
    int pid;
    int handles; /* handles not closed yet; the proc is freed at 0 */
    int pipe_closed;
    int skipping; /* dropping the rest of an overlong line */
    size_t line_len;
    char line[WD_MASTER_LINE_MAX];
};

typedef struct wd_master {
    uv_loop_t loop;
    wd_config_t *conf;
    wd_listen_t *listeners; /* group by group, each in `listen` order */
    size_t n_listeners;
    size_t *first_listener; /* per group */
    wd_slot_t *slots;
    size_t n_slots;
    int config_fd; /* memfd with the config text */
    char exe[PATH_MAX];
    uv_signal_t signals[4];
    size_t n_signals;
    size_t n_alive;
    size_t n_first_ready;
    int starting; /* until every worker has been ready once */
    int stopping;
    int finished;
    int exit_code;
    int pidfile_written;
} wd_master_t;

static const int handled_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};

static int spawn(wd_master_t *m, wd_slot_t *w);

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL) {
        wd_log_error("out of memory");
        abort();
    }
    return p;
}

static wd_master_t *master_of(wd_slot_t *w)
{
    return w->timer.loop->data;
}

static const wd_group_conf_t *group_of(wd_master_t *m, wd_slot_t *w)
{
    return &m->conf->groups[w->group];
}

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

/* systemd Type=notify: a datagram to $NOTIFY_SOCKET, best effort. */
static void sd_notify_send(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun;
    size_t len;
    int fd;

    if (path == NULL || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof sun.sun_path)
        return;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    len = strlen(path);
    memcpy(sun.sun_path, path, len);
    if (sun.sun_path[0] == '@')
        sun.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sun,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
        wd_log_warn("cannot notify systemd on %s: %s", path, strerror(errno));
    close(fd);
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
static char **worker_env(wd_master_t *m, wd_slot_t *w)
{
    size_t n = 0, i, j = 0;
    char **env;

    while (environ[n] != NULL)
        n++;
    env = xcalloc(n + 3, sizeof *env);
    for (i = 0; i < n; i++)
        if (!env_skip(environ[i]))
            env[j++] = environ[i];
    if (asprintf(&env[j++], "WSGID_WORKER=%s %d", group_of(m, w)->name, w->slot) < 0 ||
        asprintf(&env[j++], "WSGID_CONFIG=%s", m->conf->path) < 0)
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

/* ---- timers ------------------------------------------------------------------------------- */

static void slot_timer_cb(uv_timer_t *timer);

static void slot_timer(wd_slot_t *w, wd_slot_timer_t mode, double seconds)
{
    w->timer_mode = mode;
    uv_timer_start(&w->timer, slot_timer_cb, (uint64_t)(seconds * 1000.0), 0);
}

static void slot_timer_stop(wd_slot_t *w)
{
    w->timer_mode = WD_TIMER_NONE;
    uv_timer_stop(&w->timer);
}

/* ---- stopping ----------------------------------------------------------------------------- */

static void finish(wd_master_t *m)
{
    size_t i;

    if (m->finished)
        return;
    m->finished = 1;
    wd_log_info("all workers stopped");
    for (i = 0; i < m->n_signals; i++)
        uv_close((uv_handle_t *)&m->signals[i], NULL);
    for (i = 0; i < m->n_slots; i++)
        uv_close((uv_handle_t *)&m->slots[i].timer, NULL);
}

/* Sends SIGTERM to every worker; each one still alive after its group's graceful-timeout +
 * shutdown-timeout gets SIGKILL. The loop ends once every handle is closed. */
static void begin_stop(wd_master_t *m, int exit_code)
{
    const wd_group_conf_t *g;
    size_t i;

    if (m->stopping)
        return;
    m->stopping = 1;
    m->exit_code = exit_code;
    sd_notify_send("STOPPING=1");
    for (i = 0; i < m->n_slots; i++) {
        wd_slot_t *w = &m->slots[i];

        g = group_of(m, w);
        slot_timer_stop(w);
        if (w->pid > 0) {
            uv_process_kill(&w->proc->process, SIGTERM);
            w->state = WD_SLOT_STOPPING;
            slot_timer(w, WD_TIMER_KILL, g->graceful_timeout + g->shutdown_timeout);
        } else {
            w->state = WD_SLOT_STOPPED;
        }
    }
    if (m->n_alive == 0)
        finish(m);
}

static void kill_all(wd_master_t *m)
{
    size_t i;

    for (i = 0; i < m->n_slots; i++)
        if (m->slots[i].pid > 0)
            uv_process_kill(&m->slots[i].proc->process, SIGKILL);
}

static void abort_start(wd_master_t *m, wd_slot_t *w, const char *why)
{
    if (m->stopping)
        return;
    wd_log_error("group %s: %s; stopping", group_of(m, w)->name, why);
    begin_stop(m, 1);
}

/* ---- messages from a worker --------------------------------------------------------------- */

static void worker_ready(wd_master_t *m, wd_slot_t *w, int pid)
{
    const wd_group_conf_t *g = group_of(m, w);

    if (w->state != WD_SLOT_STARTING)
        return;
    slot_timer_stop(w);
    w->state = WD_SLOT_READY;
    w->ready_at = uv_now(&m->loop);
    wd_log_info("group %s worker %d (pid %d) ready", g->name, w->slot, pid);
    if (!w->ever_ready) {
        w->ever_ready = 1;
        if (m->starting && ++m->n_first_ready == m->n_slots) {
            m->starting = 0;
            wd_log_info("all workers ready (%zu groups, %zu processes)", m->conf->n_groups,
                        m->n_slots);
            sd_notify_send("READY=1");
        }
    }
}

static void on_line(wd_proc_t *p, char *line)
{
    wd_slot_t *w = p->w;
    wd_master_t *m;
    const wd_group_conf_t *g;

    if (w == NULL)
        return;
    m = master_of(w);
    g = group_of(m, w);
    if (strcmp(line, "ready") == 0) {
        if (!m->stopping)
            worker_ready(m, w, p->pid);
    } else if (strncmp(line, "failed", 6) == 0 && (line[6] == ' ' || line[6] == '\0')) {
        const char *msg = line[6] ? line + 7 : "failed";

        snprintf(w->last_error, sizeof w->last_error, "%s", msg);
        wd_log_error("group %s worker %d (pid %d): %s", g->name, w->slot, p->pid, msg);
        if (m->starting && !w->ever_ready)
            abort_start(m, w, "the application could not be loaded (see the Python error above)");
    } else {
        wd_log_warn("group %s worker %d (pid %d): unexpected message \"%s\"", g->name, w->slot,
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

static void proc_close_cb(uv_handle_t *h)
{
    wd_proc_t *p = h->data;

    if (--p->handles == 0)
        free(p);
}

static void close_pipe(wd_proc_t *p)
{
    if (p->pipe_closed)
        return;
    p->pipe_closed = 1;
    uv_close((uv_handle_t *)&p->pipe, proc_close_cb);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    wd_proc_t *p = h->data;

    buf->base = p->line + p->line_len;
    buf->len = sizeof p->line - p->line_len;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    wd_proc_t *p = s->data;

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

/* ---- exits and respawns ------------------------------------------------------------------- */

static void log_exit(wd_master_t *m, wd_slot_t *w, int pid, int64_t status, int sig)
{
    const wd_group_conf_t *g = group_of(m, w);
    wd_log_level_t level = m->stopping ? WD_LOG_INFO : WD_LOG_ERROR;

    if (sig != 0) {
        wd_log(level, "group %s worker %d (pid %d) killed by signal %d (%s)", g->name, w->slot, pid,
               sig, signame(sig));
        if (!m->stopping)
            snprintf(w->last_error, sizeof w->last_error, "killed by signal %d (%s)", sig,
                     signame(sig));
    } else {
        if (status == 0 && !m->stopping)
            level = WD_LOG_WARN;
        wd_log(level, "group %s worker %d (pid %d) exited with status %d", g->name, w->slot, pid,
               (int)status);
        if (status != 0 && !m->stopping && w->last_error[0] == '\0')
            snprintf(w->last_error, sizeof w->last_error, "exited with status %d", (int)status);
    }
}

static void respawn_later(wd_master_t *m, wd_slot_t *w, unsigned delay)
{
    w->state = WD_SLOT_BACKOFF;
    wd_log_info("group %s worker %d: respawning in %u s", group_of(m, w)->name, w->slot, delay);
    slot_timer(w, WD_TIMER_BACKOFF, delay);
}

static void slot_exited(wd_master_t *m, wd_slot_t *w, int64_t status, int sig)
{
    uint64_t now = uv_now(&m->loop);
    int was_ready = w->state == WD_SLOT_READY;
    int quick;

    slot_timer_stop(w);
    if (m->stopping) {
        w->state = WD_SLOT_STOPPED;
        if (m->n_alive == 0)
            finish(m);
        return;
    }
    if (m->starting && !w->ever_ready) {
        if (sig == 0 && status == WD_WORKER_EXIT_APP)
            abort_start(m, w, "the application could not be loaded (see the Python error above)");
        else if (sig == 0 && status == WD_WORKER_EXIT_CONFIG)
            abort_start(m, w, "the worker could not read its configuration");
        else
            abort_start(m, w, "a worker exited before it was ready");
        w->state = WD_SLOT_STOPPED;
        if (m->n_alive == 0)
            finish(m);
        return;
    }

    if (was_ready && now - w->ready_at >= WD_MASTER_STABLE_MS)
        w->backoff = 0;
    quick = !was_ready || now - w->started_at < WD_MASTER_QUICK_DEATH_MS;
    w->restarts++;
    if (quick) {
        w->backoff = w->backoff == 0 ? 1 : w->backoff * 2;
        if (w->backoff > WD_MASTER_BACKOFF_MAX)
            w->backoff = WD_MASTER_BACKOFF_MAX;
        respawn_later(m, w, w->backoff);
    } else if (spawn(m, w) < 0) {
        respawn_later(m, w, w->backoff ? w->backoff : 1);
    }
}

static void exit_cb(uv_process_t *process, int64_t status, int sig)
{
    wd_proc_t *p = process->data;
    wd_slot_t *w = p->w;
    wd_master_t *m = master_of(w);

    /* Nobody may signal this pid any more: it has been reaped and could be reused. */
    w->pid = 0;
    drain_pipe(p);
    close_pipe(p);
    uv_close((uv_handle_t *)process, proc_close_cb);
    p->w = NULL;
    w->proc = NULL;
    m->n_alive--;
    log_exit(m, w, p->pid, status, sig);
    slot_exited(m, w, status, sig);
}

static void slot_timer_cb(uv_timer_t *timer)
{
    wd_slot_t *w = timer->data;
    wd_master_t *m = master_of(w);
    const wd_group_conf_t *g = group_of(m, w);
    wd_slot_timer_t mode = w->timer_mode;

    w->timer_mode = WD_TIMER_NONE;
    switch (mode) {
    case WD_TIMER_STARTUP:
        if (w->pid <= 0 || w->state != WD_SLOT_STARTING)
            break;
        if (m->starting && !w->ever_ready) {
            wd_log_error("group %s worker %d (pid %d) not ready after %g s (startup-timeout)",
                         g->name, w->slot, w->pid, g->startup_timeout);
            abort_start(m, w, "the application could not be loaded in time");
            break;
        }
        snprintf(w->last_error, sizeof w->last_error, "not ready after %g s (startup-timeout)",
                 g->startup_timeout);
        wd_log_error("group %s worker %d (pid %d) %s; killing it", g->name, w->slot, w->pid,
                     w->last_error);
        uv_process_kill(&w->proc->process, SIGKILL);
        break;
    case WD_TIMER_BACKOFF:
        if (!m->stopping && w->state == WD_SLOT_BACKOFF && spawn(m, w) < 0) {
            w->backoff = w->backoff ? w->backoff : 1;
            respawn_later(m, w, w->backoff);
        }
        break;
    case WD_TIMER_KILL:
        if (w->pid > 0) {
            wd_log_warn("group %s worker %d (pid %d) still running after %g s; killing it", g->name,
                        w->slot, w->pid, g->graceful_timeout + g->shutdown_timeout);
            uv_process_kill(&w->proc->process, SIGKILL);
        }
        break;
    case WD_TIMER_NONE:
        break;
    }
}

/* ---- spawning ----------------------------------------------------------------------------- */

/* Each worker gets its own read-only open file description of the memfd, so that its reads
 * neither move a sibling's offset nor can change the text. */
static int open_config_fd(wd_master_t *m)
{
    char path[64];
    int fd;

    snprintf(path, sizeof path, "/proc/self/fd/%d", m->config_fd);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int spawn(wd_master_t *m, wd_slot_t *w)
{
    const wd_group_conf_t *g = group_of(m, w);
    size_t n_stdio = WD_WORKER_FD_LISTEN + g->n_listen, i;
    uv_stdio_container_t *stdio = NULL;
    uv_process_options_t opt;
    char **env = NULL, *name = NULL, *args[2];
    int sv[2] = {-1, -1}, cfd = -1, rc;
    wd_proc_t *p = NULL;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        rc = -errno;
        goto fail;
    }
    cfd = rc = open_config_fd(m);
    if (rc < 0)
        goto fail;
    stdio = xcalloc(n_stdio, sizeof *stdio);
    for (i = 0; i < n_stdio; i++)
        stdio[i].flags = UV_INHERIT_FD;
    for (i = 0; i < 3; i++)
        stdio[i].data.fd = (int)i;
    stdio[WD_WORKER_FD_MASTER].data.fd = sv[1];
    stdio[WD_WORKER_FD_CONFIG].data.fd = cfd;
    for (i = 0; i < g->n_listen; i++)
        stdio[WD_WORKER_FD_LISTEN + i].data.fd = m->listeners[m->first_listener[w->group] + i].fd;

    name = display_name(g, w->slot);
    env = worker_env(m, w);
    args[0] = name;
    args[1] = NULL;
    memset(&opt, 0, sizeof opt);
    opt.exit_cb = exit_cb;
    opt.file = m->exe;
    opt.args = args;
    opt.env = env;
    opt.stdio_count = (int)n_stdio;
    opt.stdio = stdio;

    p = xcalloc(1, sizeof *p);
    p->process.data = p;
    p->pipe.data = p;
    p->handles = 1;
    rc = uv_spawn(&m->loop, &p->process, &opt);
    if (rc < 0) {
        /* libuv wants the handle closed even when the spawn failed. */
        p->pipe_closed = 1;
        uv_close((uv_handle_t *)&p->process, proc_close_cb);
        p = NULL;
        goto fail;
    }
    p->w = w;
    p->pid = p->process.pid;
    close(sv[1]);
    sv[1] = -1;
    uv_pipe_init(&m->loop, &p->pipe, 0);
    p->handles++;
    if (uv_pipe_open(&p->pipe, sv[0]) < 0 ||
        uv_read_start((uv_stream_t *)&p->pipe, alloc_cb, read_cb) < 0) {
        wd_log_error("group %s worker %d (pid %d): cannot watch its socket to the master", g->name,
                     w->slot, p->pid);
        close_pipe(p);
    } else {
        sv[0] = -1;
    }

    w->proc = p;
    w->pid = p->pid;
    w->state = WD_SLOT_STARTING;
    w->started_at = uv_now(&m->loop);
    w->last_error[0] = '\0';
    m->n_alive++;
    wd_log(w->restarts > 0 ? WD_LOG_INFO : WD_LOG_DEBUG, "group %s worker %d started (pid %d)",
           g->name, w->slot, w->pid);
    if (g->startup_timeout > 0)
        slot_timer(w, WD_TIMER_STARTUP, g->startup_timeout);
    rc = 0;

fail:
    if (rc < 0) {
        snprintf(w->last_error, sizeof w->last_error, "cannot start %.160s: %s", m->exe,
                 strerror(-rc));
        wd_log_error("group %s worker %d: %s", g->name, w->slot, w->last_error);
    }
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
    return rc;
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
        wd_log_warn("received SIGHUP: reload is not implemented yet");
        break;
    case SIGUSR1:
        if (wd_log_open(m->conf->log_file, "off") == 0)
            wd_log_info("received SIGUSR1: log files reopened");
        break;
    }
}

/* ---- setup and teardown ------------------------------------------------------------------- */

static int open_listeners(wd_master_t *m)
{
    const wd_config_t *conf = m->conf;
    size_t gi, i, n = 0;
    int rc;

    for (gi = 0; gi < conf->n_groups; gi++)
        n += conf->groups[gi].n_listen;
    m->listeners = xcalloc(n, sizeof *m->listeners);
    m->first_listener = xcalloc(conf->n_groups, sizeof *m->first_listener);
    for (gi = 0; gi < conf->n_groups; gi++) {
        const wd_group_conf_t *g = &conf->groups[gi];

        m->first_listener[gi] = m->n_listeners;
        for (i = 0; i < g->n_listen; i++) {
            rc = wd_listen_open(&m->listeners[m->n_listeners], g, &g->listen[i]);
            if (rc < 0)
                return rc;
            m->n_listeners++;
            wd_log_info("group %s: listening on %s%s", g->name, g->listen[i].is_unix ? "unix:" : "",
                        g->listen[i].is_unix ? g->listen[i].path : g->listen[i].spec);
        }
    }
    return 0;
}

static int write_pidfile(wd_master_t *m)
{
    char buf[32];
    int fd, n, rc = 0;

    if (m->conf->pidfile == NULL)
        return 0;
    fd = open(m->conf->pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
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
        wd_log_error("cannot write the pidfile %s: %s", m->conf->pidfile, strerror(-rc));
    return rc;
}

static int make_config_fd(wd_master_t *m, const char *text, size_t len)
{
    size_t off = 0;
    ssize_t n;
    int fd;

    fd = memfd_create("wsgid-config", MFD_CLOEXEC);
    if (fd < 0)
        goto fail;
    while (off < len) {
        n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        off += (size_t)n;
    }
    m->config_fd = fd;
    return 0;

fail:
    wd_log_error("cannot hand the configuration to the workers (memfd): %s", strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Descriptors inherited from whoever started us (a shell, a test harness) are not the workers'
 * business: mark them close-on-exec. Those of socket activation ($LISTEN_FDS from fd 3) are
 * kept for the day they are used. */
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

static int start(wd_master_t *m)
{
    const wd_config_t *conf = m->conf;
    size_t gi, i, k = 0;
    int p;

    for (gi = 0; gi < conf->n_groups; gi++)
        m->n_slots += (size_t)conf->groups[gi].processes;
    m->slots = xcalloc(m->n_slots, sizeof *m->slots);
    for (gi = 0; gi < conf->n_groups; gi++) {
        for (p = 1; p <= conf->groups[gi].processes; p++, k++) {
            m->slots[k].group = gi;
            m->slots[k].slot = p;
            m->slots[k].state = WD_SLOT_STOPPED;
            uv_timer_init(&m->loop, &m->slots[k].timer);
            m->slots[k].timer.data = &m->slots[k];
        }
    }
    for (i = 0; i < sizeof handled_signals / sizeof handled_signals[0]; i++) {
        uv_signal_init(&m->loop, &m->signals[i]);
        m->signals[i].data = m;
        uv_signal_start(&m->signals[i], signal_cb, handled_signals[i]);
        m->n_signals++;
    }
    m->starting = 1;
    wd_log_info("wsgid %s master (pid %d) starting %zu groups, %zu processes", WD_VERSION,
                (int)getpid(), conf->n_groups, m->n_slots);
    for (k = 0; k < m->n_slots && !m->stopping; k++) {
        if (spawn(m, &m->slots[k]) < 0)
            abort_start(m, &m->slots[k], "cannot start its workers");
    }
    return 0;
}

static void cleanup(wd_master_t *m)
{
    size_t i;

    for (i = 0; i < m->n_listeners; i++)
        wd_listen_close(&m->listeners[i]);
    if (m->config_fd >= 0)
        close(m->config_fd);
    if (m->pidfile_written && unlink(m->conf->pidfile) < 0)
        wd_log_warn("cannot remove the pidfile %s: %s", m->conf->pidfile, strerror(errno));
    free(m->listeners);
    free(m->first_listener);
    free(m->slots);
}

int wd_master_run(wd_config_t *conf, const char *text, size_t len)
{
    wd_master_t *m = xcalloc(1, sizeof *m);
    int rc, loop_ready = 0;

    m->conf = conf;
    m->config_fd = -1;
    m->exit_code = 1;
    wd_log_init("master", conf->log_level);
    if (wd_log_open(conf->log_file, "off") < 0)
        goto out;
    signal(SIGPIPE, SIG_IGN);
    cloexec_inherited();

    if (find_exe(m) < 0 || open_listeners(m) < 0 || make_config_fd(m, text, len) < 0 ||
        write_pidfile(m) < 0)
        goto out;
    rc = uv_loop_init(&m->loop);
    if (rc < 0) {
        wd_log_error("cannot create the event loop: %s", uv_strerror(rc));
        goto out;
    }
    loop_ready = 1;
    m->loop.data = m;
    m->exit_code = 0;
    start(m);
    uv_run(&m->loop, UV_RUN_DEFAULT);

out:
    if (loop_ready && uv_loop_close(&m->loop) != 0)
        wd_log_warn("the event loop still had handles at exit");
    cleanup(m);
    rc = m->exit_code;
    wd_log_info("master exiting with status %d", rc);
    free(m);
    return rc;
}
