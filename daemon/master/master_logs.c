/* The master: the workers' log files. See master_int.h.
 *
 * The master opens every log file itself (as root when wsgid runs as root: log.c's
 * wd_log_file_open follows no symbolic link there) and gives each worker its error log and its
 * access log as open files, in a "logs" line on the worker's socket: before the worker starts,
 * and again at every reopen-logs (spawn.h). A worker never opens a log by name. When it did, as
 * its group's user, the master had to give that user the files (fchown), and so gave it any
 * root-owned file that the group's app put a symbolic link to at the log's path, the master's
 * own error log, and the access log the other groups share, which their users then could not
 * open (helper-72). Now every log file stays root's. */
#include "master_int.h"
#include "alloc.h"
#include "log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The files of one start or reopen, each opened once however many workers write it. */
typedef struct {
    const char *path;
    int fd;   /* or -errno */
    int said; /* its error was reported */
} log_file_t;

typedef struct {
    log_file_t *v;
    size_t n;
} log_files_t;

static log_file_t *files_get(log_files_t *c, const char *path)
{
    size_t i;

    for (i = 0; i < c->n; i++)
        if (strcmp(c->v[i].path, path) == 0)
            return &c->v[i];
    c->v = xrealloc(c->v, (c->n + 1) * sizeof *c->v);
    c->v[c->n] = (log_file_t){.path = path, .fd = wd_log_file_open(path)};
    return &c->v[c->n++];
}

static void files_close(log_files_t *c)
{
    size_t i;

    for (i = 0; i < c->n; i++)
        if (c->v[i].fd >= 0)
            close(c->v[i].fd);
    free(c->v);
}

/* A worker's "logs ERROR ACCESS" line and the files that go with it (spawn.h). */
typedef struct {
    char line[32];
    int fds[2];
    int n_fds;
} logs_msg_t;

typedef struct {
    const char *group; /* for the messages */
    int slot;          /* 0 at a reopen */
    char *err;         /* a reopen's failures, for wsgictl; NULL at a start */
    size_t cap, *used;
} logs_ctx_t;

/* One log of the line: "-" (stderr), "off", "fd" (the next file) or, for a file that cannot be
 * opened, "-" at the worker's start and "keep" at a reopen (it writes on where it was). */
static const char *msg_one(log_files_t *c, logs_msg_t *msg, const char *what, const char *path,
                           const logs_ctx_t *x)
{
    log_file_t *f;
    int fd;

    if (path == NULL || strcmp(path, "-") == 0)
        return "-";
    if (strcmp(path, "off") == 0)
        return "off";
    f = files_get(c, path);
    if (f->fd >= 0) {
        fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 3);
        if (fd >= 0) {
            msg->fds[msg->n_fds++] = fd;
            return "fd";
        }
        fd = -errno;
        close(f->fd);
        f->fd = fd;
    }
    if (!f->said) {
        f->said = 1;
        if (x->err == NULL)
            wd_log_error("group %s worker %d: cannot open the %s %s: %s; its lines go to "
                         "stderr until a reopen-logs can open it",
                         x->group, x->slot, what, path, wd_log_file_why(f->fd));
        else if (*x->used < x->cap)
            *x->used += (size_t)snprintf(x->err + *x->used, x->cap - *x->used,
                                         "%scannot open the %s %s: %s", *x->used ? "; " : "", what,
                                         path, wd_log_file_why(f->fd));
    }
    return x->err == NULL ? "-" : "keep";
}

static void msg_build(log_files_t *c, logs_msg_t *msg, const wd_config_t *conf,
                      const wd_group_conf_t *g, const logs_ctx_t *x)
{
    const char *error, *access;

    msg->n_fds = 0;
    error = msg_one(c, msg, "error log", conf->log_file, x);
    access = msg_one(c, msg, "access log", g->access_log ? g->access_log : conf->access_log, x);
    snprintf(msg->line, sizeof msg->line, "logs %s %s\n", error, access);
}

int wd__m_logs_give(int sock, const wd_config_t *conf, const wd_group_conf_t *g, int slot)
{
    log_files_t c = {NULL, 0};
    logs_ctx_t x = {.group = g->name, .slot = slot};
    logs_msg_t msg;
    int rc, i;

    msg_build(&c, &msg, conf, g, &x);
    files_close(&c);
    /* The socket is new and empty: the line goes whole, and is there when the worker starts. */
    rc = wd__m_send_fds(sock, msg.line, strlen(msg.line), msg.fds, msg.n_fds, 0);
    for (i = 0; i < msg.n_fds; i++)
        close(msg.fds[i]);
    return rc < 0 ? rc : 0;
}

int wd__m_reopen_logs(wd_master_t *m, char *err, size_t cap)
{
    log_files_t c = {NULL, 0};
    size_t used = 0;
    logs_ctx_t x = {.err = err, .cap = cap, .used = &used};
    logs_msg_t msg;
    wd_proc_t *p;
    int rc = wd_log_open(m->gen->conf->log_file, "off");

    err[0] = '\0';
    if (rc == 0) {
        wd_log_info("log files reopened");
    } else {
        used = (size_t)snprintf(err, cap, "cannot open the error log %s: %s",
                                m->gen->conf->log_file, wd_log_file_why(rc));
        c.v = xmalloc(sizeof *c.v);
        c.v[c.n++] = (log_file_t){.path = m->gen->conf->log_file, .fd = rc, .said = 1};
    }
    for (p = m->procs; p != NULL; p = p->next) {
        if (p->pid <= 0 || p->pipe_closed)
            continue;
        /* The paths of the config it was started with. */
        x.group = p->g->name;
        msg_build(&c, &msg, p->gen->conf, p->gconf, &x);
        wd__m_proc_send(p, msg.line, msg.fds, msg.n_fds);
    }
    files_close(&c);
    if (used > 0 && used < cap)
        snprintf(err + used, cap - used, "; the logs that cannot be opened stay where they were");
    return used > 0 ? -1 : 0;
}
