/* The control socket: see control.h. */
#include "control.h"
#include "control_proto.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* What one control connection may hold of the master. wsgictl opens a connection a command
 * and reads its reply; a client that did not (a script that sent `status` in a loop and never
 * read) grew the master by 600 MB in 40 s, and 20,000 idle connections (64 KiB each) took the
 * master's fds, so that no worker could be spawned. */
#define CLIENTS_MAX 64          /* connections at once; see connection_cb for one more */
#define CLIENT_IDLE_MS 30000    /* without a request pending, then closed */
#define CLIENT_YIELD_MS 5000    /* idle this long, a client gives way to a new one at the cap */
#define CLIENT_QUEUE_MAX 262144 /* replies waiting for the client: no new request taken */
#define CLIENT_BUF_START 1024   /* the line buffer grows up to WD_CONTROL_LINE_MAX */
#define IDLE_SWEEP_MS 5000

typedef struct wd_control_client wd_control_client_t;

struct wd_control_req {
    wd_control_client_t *client; /* NULL once the client has gone */
};

struct wd_control_client {
    uv_pipe_t pipe;
    wd_control_t *ctl;
    wd_control_req_t *pending; /* the request being served, at most one */
    wd_control_client_t *next;
    int closing;
    int in_take;     /* inside take_lines: a reply must not re-enter it */
    int eof;         /* the client shut its side: the pending reply still goes out */
    int ending;      /* client_end called: closing once the queued replies are out */
    uint64_t active; /* uv_now of its last request or reply */
    uint64_t heard;  /* uv_now of the last bytes it sent (a line on its way: see make_room) */
    size_t len, cap;
    char *buf;
};

struct wd_control {
    uv_pipe_t server;
    uv_loop_t *loop;
    wd_control_cb cb;
    void *data;
    char *path;
    dev_t dev;
    ino_t ino;
    wd_control_client_t *clients;
    int n_clients;
    uv_timer_t sweep; /* closes idle clients */
};

typedef struct write_req {
    uv_write_t req;
    char *text;
} write_req_t;

/* ---- clients ------------------------------------------------------------------------------ */

static void client_free_cb(uv_handle_t *h)
{
    wd_control_client_t *cl = h->data;

    free(cl->buf);
    free(cl);
}

static void client_close(wd_control_client_t *cl)
{
    wd_control_client_t **pp;

    if (cl->closing)
        return;
    cl->closing = 1;
    if (cl->pending != NULL)
        cl->pending->client = NULL;
    for (pp = &cl->ctl->clients; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == cl) {
            *pp = cl->next;
            cl->ctl->n_clients--;
            break;
        }
    }
    uv_close((uv_handle_t *)&cl->pipe, client_free_cb);
}

static void take_lines(wd_control_client_t *cl);
static void client_end(wd_control_client_t *cl);
static void go_on(wd_control_client_t *cl);

/* Replies the client has not read yet past CLIENT_QUEUE_MAX: no new request is taken. */
static int backlogged(const wd_control_client_t *cl)
{
    return cl->pipe.write_queue_size > CLIENT_QUEUE_MAX;
}

static void write_cb(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    wd_control_client_t *cl = req->handle->data;

    free(w->text);
    free(w);
    if (cl->closing)
        return;
    if (status < 0)
        client_close(cl); /* gone (EPIPE): a client not read from would not show it otherwise */
    else if (cl->pending == NULL && !backlogged(cl))
        go_on(cl);
}

static void client_send(wd_control_client_t *cl, const char *text)
{
    write_req_t *w = xcalloc(1, sizeof *w);
    size_t len = strlen(text);
    uv_buf_t buf;

    w->text = xcalloc(1, len + 2);
    memcpy(w->text, text, len);
    w->text[len] = '\n';
    buf = uv_buf_init(w->text, (unsigned)len + 1);
    if (uv_write(&w->req, (uv_stream_t *)&cl->pipe, &buf, 1, write_cb) < 0) {
        free(w->text);
        free(w);
        client_close(cl);
    }
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    wd_control_client_t *cl = req->data;

    free(req);
    client_close(cl);
}

/* Closes once the queued writes are out. Once only: a second uv_shutdown fails, and closing
 * then cancelled the replies still queued (a client that sent 100 requests and shut its side got
 * 94 replies). */
static void client_end(wd_control_client_t *cl)
{
    uv_shutdown_t *req;

    if (cl->ending)
        return;
    cl->ending = 1;
    req = xcalloc(1, sizeof *req);

    req->data = cl;
    if (uv_shutdown(req, (uv_stream_t *)&cl->pipe, shutdown_cb) < 0) {
        free(req);
        client_close(cl);
    }
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* No request pending: the next one may be in the buffer already; else read on, or end once the
 * client has shut its side. */
static void go_on(wd_control_client_t *cl)
{
    if (cl->in_take || cl->ending)
        return;
    take_lines(cl);
    if (cl->pending != NULL || cl->closing || backlogged(cl))
        return;
    if (cl->eof && cl->len > 0 && cl->len < cl->cap) {
        /* the last request had no newline: the end of the stream ends it (it was dropped) */
        cl->buf[cl->len++] = '\n';
        take_lines(cl);
        if (cl->pending != NULL || cl->closing || backlogged(cl))
            return;
    }
    if (cl->eof) {
        client_end(cl);
    } else if (cl->len == WD_CONTROL_LINE_MAX) {
        /* full without a newline (the reading stopped while a request was pending) */
        client_send(cl, "{\"ok\":false,\"error\":\"request too long\"}");
        client_end(cl);
    } else {
        uv_read_start((uv_stream_t *)&cl->pipe, alloc_cb, read_cb);
    }
}

static void client_send_json(wd_control_client_t *cl, json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT);

    if (text == NULL) {
        client_send(cl, "{\"ok\":false,\"error\":\"cannot encode the reply\"}");
        return;
    }
    client_send(cl, text);
    free(text);
}

void wd_control_reply(wd_control_req_t *req, json_t *reply)
{
    wd_control_client_t *cl = req->client;

    if (cl != NULL && !cl->closing) {
        cl->pending = NULL;
        cl->active = uv_now(cl->ctl->loop);
        client_send_json(cl, reply);
        go_on(cl);
    }
    json_decref(reply);
    free(req);
}

void wd_control_reply_error(wd_control_req_t *req, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof msg) {
        /* cut where a character starts: half of one is not UTF-8, and the reply could not be
         * encoded (a 3,000-character group name got "cannot encode the reply") */
        size_t end = sizeof msg - 1, lead = end;

        while (lead > 0 && ((unsigned char)msg[lead - 1] & 0xc0) == 0x80)
            lead--;
        if (lead > 0 && (unsigned char)msg[lead - 1] >= 0xc0) {
            unsigned char c = (unsigned char)msg[lead - 1];
            size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;

            if (end - (lead - 1) < need)
                msg[lead - 1] = '\0';
        }
    }
    wd_control_reply(req, json_pack("{s:b,s:s}", "ok", 0, "error", msg));
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    wd_control_client_t *cl = h->data;

    (void)hint;
    if (cl->len == cl->cap && cl->cap < WD_CONTROL_LINE_MAX) {
        cl->cap = cl->cap * 4 < WD_CONTROL_LINE_MAX ? cl->cap * 4 : WD_CONTROL_LINE_MAX;
        cl->buf = xrealloc(cl->buf, cl->cap);
    }
    buf->base = cl->buf + cl->len;
    buf->len = cl->cap - cl->len;
}

static void take_request(wd_control_client_t *cl, char *line)
{
    wd_control_req_t *req;
    json_t *error, *obj = wd_control_parse(line, &error);

    if (obj == NULL) {
        client_send_json(cl, error);
        json_decref(error);
        return;
    }
    req = xcalloc(1, sizeof *req);
    req->client = cl;
    cl->pending = req;
    cl->active = uv_now(cl->ctl->loop);
    cl->ctl->cb(cl->ctl->data, obj, req);
    json_decref(obj);
}

/* One request at a time: while one is pending, the rest stays in the buffer. */
static void take_lines(wd_control_client_t *cl)
{
    char *line;
    size_t used;

    cl->in_take = 1;
    while (cl->pending == NULL && !cl->closing && !backlogged(cl) &&
           (line = wd_control_line(cl->buf, cl->len, &used)) != NULL) {
        if (line[0] != '\0')
            take_request(cl, line);
        memmove(cl->buf, cl->buf + used, cl->len - used);
        cl->len -= used;
    }
    cl->in_take = 0;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    wd_control_client_t *cl = s->data;

    (void)buf;
    if (n == UV_EOF) {
        /* a client that shut its side after its request (socat, nc -N) still gets the reply */
        cl->eof = 1;
        uv_read_stop(s);
        if (cl->pending == NULL && !backlogged(cl))
            go_on(cl);
        return;
    }
    if (n < 0) {
        client_close(cl);
        return;
    }
    cl->len += (size_t)n;
    if (n > 0)
        cl->heard = uv_now(cl->ctl->loop);
    take_lines(cl);
    if (cl->closing)
        return;
    if (cl->pending != NULL || backlogged(cl)) {
        if (cl->len == cl->cap && cl->cap == WD_CONTROL_LINE_MAX)
            uv_read_stop(s); /* full while a request is pending: the rest waits */
        return;
    }
    if (cl->len == WD_CONTROL_LINE_MAX) {
        client_send(cl, "{\"ok\":false,\"error\":\"request too long\"}");
        client_end(cl);
    }
}

/* A peer whose uid is neither root nor ours is refused (SO_PEERCRED). */
static int peer_allowed(wd_control_client_t *cl)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    uv_os_fd_t fd;

    if (uv_fileno((uv_handle_t *)&cl->pipe, &fd) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        wd_log_error("control: cannot read the peer's credentials: %s", strerror(errno));
        return 0;
    }
    if (cred.uid == 0 || cred.uid == geteuid())
        return 1;
    wd_log_warn("control: refused uid %u (pid %d)", (unsigned)cred.uid, (int)cred.pid);
    return 0;
}

/* Whether cl may give way to a new client at the cap (make_room). */
static int may_yield(const wd_control_client_t *cl, uint64_t now)
{
    return cl->pending == NULL && !cl->closing && !cl->ending && cl->pipe.write_queue_size == 0 &&
           now - cl->active >= CLIENT_YIELD_MS && now - cl->heard >= CLIENT_YIELD_MS;
}

/* At CLIENTS_MAX, a new connection (fresh) closes the client idle longest (the oldest of a tie:
 * the list is newest first) that has no request pending, no reply on its way, and neither
 * asked, been answered nor sent a byte for CLIENT_YIELD_MS: wsgictl sends its command as it
 * connects, so such a client is left over (a script's), and until the sweep closed it
 * (CLIENT_IDLE_MS) 64 of them kept every wsgictl out for 30 s. 1 if one gave way. */
static int make_room(wd_control_t *c, const wd_control_client_t *fresh)
{
    uint64_t now = uv_now(c->loop);
    wd_control_client_t *idlest = NULL;

    for (wd_control_client_t *cl = c->clients; cl != NULL; cl = cl->next)
        if (cl != fresh && may_yield(cl, now) && (idlest == NULL || cl->active <= idlest->active))
            idlest = cl;
    if (idlest == NULL)
        return 0;
    wd_log_peer(WD_LOG_INFO,
                "control: %d connections open: closed one idle for %llu s for a new one",
                c->n_clients - 1, (unsigned long long)((now - idlest->active) / 1000));
    client_close(idlest);
    return 1;
}

static void connection_cb(uv_stream_t *server, int status)
{
    wd_control_t *c = server->data;
    wd_control_client_t *cl;

    if (status < 0)
        return;
    cl = xcalloc(1, sizeof *cl);
    cl->ctl = c;
    cl->cap = CLIENT_BUF_START;
    cl->buf = xmalloc(cl->cap);
    cl->active = cl->heard = uv_now(c->loop);
    uv_pipe_init(c->loop, &cl->pipe, 0);
    cl->pipe.data = cl;
    cl->next = c->clients;
    c->clients = cl;
    c->n_clients++;
    if (uv_accept(server, (uv_stream_t *)&cl->pipe) < 0) {
        client_close(cl);
        return;
    }
    if (!peer_allowed(cl)) {
        client_send(cl, "{\"ok\":false,\"error\":\"permission denied: the control socket only "
                        "answers root and the user wsgid runs as\"}");
        client_end(cl);
        return;
    }
    if (c->n_clients > CLIENTS_MAX && !make_room(c, cl)) {
        /* "unreachable": wsgictl exits 3, as when the socket refuses: a script tries again */
        client_send(cl, "{\"ok\":false,\"unreachable\":true,"
                        "\"error\":\"too many control connections open (64): "
                        "wsgictl opens one a command; close the ones left idle\"}");
        client_end(cl);
        wd_log_peer(WD_LOG_WARN, "control: a connection refused: %d open (at most %d)",
                    c->n_clients - 1, CLIENTS_MAX);
        return;
    }
    uv_read_start((uv_stream_t *)&cl->pipe, alloc_cb, read_cb);
}

/* Closes the clients without a request pending that sent nothing for CLIENT_IDLE_MS. */
static void sweep_cb(uv_timer_t *t)
{
    wd_control_t *c = t->data;
    uint64_t now = uv_now(c->loop);
    wd_control_client_t *cl, *next;
    int n = 0;

    for (cl = c->clients; cl != NULL; cl = next) {
        next = cl->next;
        if (cl->pending == NULL && !cl->closing && now - cl->active >= CLIENT_IDLE_MS) {
            client_close(cl);
            n++;
        }
    }
    if (n > 0)
        wd_log_info("control: closed %d connection%s idle for %d s", n, n == 1 ? "" : "s",
                    CLIENT_IDLE_MS / 1000);
}

/* ---- the listener ------------------------------------------------------------------------- */

/* 1 when nobody answers on the socket file (a dead master left it), 0 when someone does. */
static int is_stale(const struct sockaddr_un *sun)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

    if (fd < 0)
        return -errno;
    rc = connect(fd, (const struct sockaddr *)sun, sizeof *sun) < 0 ? 1 : 0;
    if (rc == 1 && errno != ECONNREFUSED && errno != ENOENT)
        rc = -errno;
    close(fd);
    return rc;
}

static int bind_socket(const char *path, struct stat *st_out)
{
    struct sockaddr_un sun;
    struct stat st;
    mode_t old_mask;
    int fd = -1, rc;

    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) {
        wd_log_error("control: the path %s is too long for a unix socket", path);
        return -ENAMETOOLONG;
    }
    strcpy(sun.sun_path, path);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            wd_log_error("control: cannot listen on %s: a file that is not a socket is in the way",
                         path);
            return -EEXIST;
        }
        rc = is_stale(&sun);
        if (rc == 0) {
            wd_log_error("control: cannot listen on %s: in use by another process (is wsgid "
                         "already running?)",
                         path);
            return -EADDRINUSE;
        }
        wd_log_info("control: removing the stale socket %s", path);
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto fail;
    /* The file is created 0600 from the start: no window where someone else may connect. */
    old_mask = umask(0177);
    rc = bind(fd, (struct sockaddr *)&sun, sizeof sun);
    umask(old_mask);
    if (rc < 0 || listen(fd, 64) < 0 || stat(path, st_out) < 0)
        goto fail;
    return fd;

fail:
    rc = -errno;
    wd_log_error("control: cannot listen on %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return rc;
}

int wd_control_open(wd_control_t **out, uv_loop_t *loop, const char *path, wd_control_cb cb,
                    void *data)
{
    wd_control_t *c;
    struct stat st;
    int fd, rc;

    fd = bind_socket(path, &st);
    if (fd < 0)
        return fd;
    c = xcalloc(1, sizeof *c);
    c->loop = loop;
    c->cb = cb;
    c->data = data;
    c->path = xstrdup(path);
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    uv_pipe_init(loop, &c->server, 0);
    c->server.data = c;
    uv_timer_init(loop, &c->sweep);
    c->sweep.data = c;
    uv_timer_start(&c->sweep, sweep_cb, IDLE_SWEEP_MS, IDLE_SWEEP_MS);
    uv_unref((uv_handle_t *)&c->sweep);
    rc = uv_pipe_open(&c->server, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&c->server, 64, connection_cb);
    if (rc < 0) {
        wd_log_error("control: cannot listen on %s: %s", path, uv_strerror(rc));
        wd_control_close(c);
        return rc;
    }
    wd_log_info("control socket: %s", path);
    *out = c;
    return 0;
}

static void server_free_cb(uv_handle_t *h)
{
    wd_control_t *c = h->data;

    free(c->path);
    free(c);
}

/* The server's handle is closed after the timer's: c is freed with it. */
static void sweep_closed_cb(uv_handle_t *h)
{
    wd_control_t *c = h->data;

    uv_close((uv_handle_t *)&c->server, server_free_cb);
}

void wd_control_close(wd_control_t *c)
{
    struct stat st;

    if (c == NULL)
        return;
    while (c->clients != NULL)
        client_close(c->clients);
    if (stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
        unlink(c->path);
    uv_close((uv_handle_t *)&c->sweep, sweep_closed_cb);
}
