/* The metrics listener: see metrics.h.
 *
 * Each client connection reads one request head (at most WD_METRICS_HEAD_MAX bytes, within
 * WD_METRICS_TIMEOUT_MS), answers it with a complete response built in memory, shuts down its
 * write side and closes. The rendering is synchronous but short: a snapshot of the scoreboard
 * and a few kilobytes of text. */
#include "metrics.h"
#include "health.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define WD_METRICS_HEAD_MAX 8192
#define WD_METRICS_TIMEOUT_MS 10000
#define WD_METRICS_CONNS_MAX 64
#define WD_METRICS_LINGER_MS 2000
/* An agent check names its group in a line (HAProxy's agent-send) as it connects, or says nothing:
 * the answer (for every group) goes out when this time has passed without a line. */
#define WD_AGENT_WAIT_MS 200
#define WD_AGENT_LINE_MAX 128

typedef struct metrics_conn metrics_conn_t;

struct metrics_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    wd_metrics_t *m;
    metrics_conn_t *prev, *next; /* in m->conns */
    int handles;                 /* not closed yet; freed at 0 */
    int closing;
    int answered; /* a response is on its way: the rest of the input is ignored */
    int shut;     /* our side is shut down: waiting for the client's close */
    int peer_eof;
    uint64_t opened;      /* uv_now() at its accept */
    struct in6_addr peer; /* the client's address (IPv4-mapped for IPv4), for make_room */
    char *response;       /* malloc'd head + body */
    size_t len;
    char buf[WD_METRICS_HEAD_MAX];
};

static size_t n_conns(wd_metrics_t *m)
{
    metrics_conn_t *c;
    size_t n = 0;

    for (c = m->conns; c != NULL; c = c->next)
        n++;
    return n;
}

static void conn_handle_closed_cb(uv_handle_t *h)
{
    metrics_conn_t *c = h->data;

    if (--c->handles > 0)
        return;
    free(c->response);
    free(c);
}

static void conn_close(metrics_conn_t *c)
{
    wd_metrics_t *m = c->m;

    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
}

static void respond_agent(metrics_conn_t *c);

static void timeout_cb(uv_timer_t *timer)
{
    metrics_conn_t *c = timer->data;

    if (c->m->agent && !c->answered)
        respond_agent(c);
    else
        conn_close(c);
}

/* Closing with unread input would reset the connection and may destroy the response before
 * the client reads it; so after our FIN we wait (briefly) for the client's, discarding input. */
static void shutdown_cb(uv_shutdown_t *req, int status)
{
    metrics_conn_t *c = req->data;

    if (c->closing)
        return;
    c->shut = 1;
    if (status < 0 || c->peer_eof)
        conn_close(c);
    else
        uv_timer_start(&c->timer, timeout_cb, WD_METRICS_LINGER_MS, 0);
}

static void write_cb(uv_write_t *req, int status)
{
    metrics_conn_t *c = req->data;

    if (c->closing)
        return;
    if (status < 0 || uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, shutdown_cb) < 0)
        conn_close(c);
}

/* Sends c->response (c->len bytes), then shuts down and closes. */
static void send_response(metrics_conn_t *c)
{
    uv_buf_t buf = uv_buf_init(c->response, (unsigned)c->len);

    c->answered = 1;
    c->write_req.data = c;
    c->shutdown_req.data = c;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &buf, 1, write_cb) < 0)
        conn_close(c);
}

/* Queues the whole response; the body is copied, so the caller keeps ownership of it. */
static void respond(metrics_conn_t *c, int code, const char *reason, const char *type,
                    const char *body, int head_only)
{
    size_t body_len = body != NULL ? strlen(body) : 0;
    size_t cap = body_len + 512;
    int n;

    c->response = xmalloc(cap);
    n = snprintf(c->response, cap,
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                 "%sCache-Control: no-store\r\nConnection: close\r\n\r\n",
                 code, reason, type, body_len, code == 405 ? "Allow: GET, HEAD\r\n" : "");
    c->len = (size_t)n;
    if (!head_only && body_len > 0) {
        memcpy(c->response + c->len, body, body_len);
        c->len += body_len;
    }
    send_response(c);
}

static void respond_error(metrics_conn_t *c, int code, const char *reason)
{
    char body[64];

    snprintf(body, sizeof body, "%d %s\n", code, reason);
    respond(c, code, reason, "text/plain; charset=utf-8", body, 0);
}

static void respond_snapshot(metrics_conn_t *c, int prometheus, int head_only)
{
    wd_metrics_t *m = c->m;
    wd_status_t st;
    char *body;

    memset(&st, 0, sizeof st);
    m->snapshot(m->data, &st);
    body = prometheus ? wd_status_prometheus(&st) : wd_status_json(&st);
    if (m->release != NULL)
        m->release(m->data, &st);
    if (prometheus)
        respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, head_only);
    else
        respond(c, 200, "OK", "application/json", body, head_only);
    free(body);
}

static uint64_t wd_metrics_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* /livez, /readyz[/GROUP]: 200 or 503 with the reasons, 404 for an unknown group. */
static void respond_health(metrics_conn_t *c, wd_health_kind_t kind, const char *group, size_t glen,
                           int head_only)
{
    wd_metrics_t *m = c->m;
    wd_status_t st;
    char body[2048];
    int code;

    memset(&st, 0, sizeof st);
    m->snapshot(m->data, &st);
    code = wd_health_eval(&st, wd_metrics_now_ns(), kind, group, glen, body, sizeof body);
    if (m->release != NULL)
        m->release(m->data, &st);
    respond(c, code,
            code == 200   ? "OK"
            : code == 404 ? "Not Found"
                          : "Service Unavailable",
            "text/plain; charset=utf-8", body, head_only);
}

/* The agent check's answer (common/health.h) for the group named by the line in c->buf (up to a
 * newline, without surrounding blanks), or for every group when it sent none. */
static void respond_agent(metrics_conn_t *c)
{
    wd_metrics_t *m = c->m;
    wd_status_t st;
    const char *g = c->buf, *end;
    size_t glen;

    end = memchr(c->buf, '\n', c->len);
    glen = (size_t)((end != NULL ? end : c->buf + c->len) - g);
    while (glen > 0 && (*g == ' ' || *g == '\t'))
        g++, glen--;
    while (glen > 0 && (g[glen - 1] == '\r' || g[glen - 1] == ' ' || g[glen - 1] == '\t'))
        glen--;
    memset(&st, 0, sizeof st);
    m->snapshot(m->data, &st);
    c->response = xmalloc(WD_AGENT_LINE_MAX * 4);
    c->len = wd_health_agent(&st, wd_metrics_now_ns(), glen > 0 ? g : NULL, glen, c->response,
                             WD_AGENT_LINE_MAX * 4);
    if (m->release != NULL)
        m->release(m->data, &st);
    send_response(c);
}

static int is_token(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return 0;
    return n > 0;
}

wd_metrics_route_t wd_metrics_route(const char *buf, size_t len, int *head_only, const char **group,
                                    size_t *glen)
{
    const char *line_end = memchr(buf, '\n', len);
    const char *sp1, *sp2, *q;
    size_t line_len, path_len;

    *head_only = 0;
    *group = NULL;
    *glen = 0;
    if (line_end == NULL)
        return WD_METRICS_BAD;
    line_len = (size_t)(line_end - buf);
    if (line_len > 0 && buf[line_len - 1] == '\r')
        line_len--;
    /* METHOD SP /TARGET SP HTTP/1.x: the target holds no space, the version is 8 bytes. */
    sp1 = memchr(buf, ' ', line_len);
    sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', line_len - (size_t)(sp1 + 1 - buf)) : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1[1] != '/' || !is_token(buf, (size_t)(sp1 - buf)) ||
        buf + line_len - (sp2 + 1) != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || sp2[8] < '0' ||
        sp2[8] > '9')
        return WD_METRICS_BAD;
    *head_only = sp1 - buf == 4 && memcmp(buf, "HEAD", 4) == 0;
    if (!*head_only && !(sp1 - buf == 3 && memcmp(buf, "GET", 3) == 0))
        return WD_METRICS_METHOD;
    q = memchr(sp1 + 1, '?', (size_t)(sp2 - (sp1 + 1)));
    path_len = (size_t)((q != NULL ? q : sp2) - (sp1 + 1));
    if (path_len == 8 && memcmp(sp1 + 1, "/metrics", 8) == 0)
        return WD_METRICS_PROMETHEUS;
    if (path_len == 7 && memcmp(sp1 + 1, "/status", 7) == 0)
        return WD_METRICS_STATUS;
    if (path_len == 6 && memcmp(sp1 + 1, "/livez", 6) == 0)
        return WD_METRICS_LIVEZ;
    if (path_len == 7 && memcmp(sp1 + 1, "/readyz", 7) == 0)
        return WD_METRICS_READYZ;
    if (path_len > 8 && memcmp(sp1 + 1, "/readyz/", 8) == 0 &&
        memchr(sp1 + 9, '/', path_len - 8) == NULL) {
        *group = sp1 + 9;
        *glen = path_len - 8;
        return WD_METRICS_READYZ;
    }
    return WD_METRICS_NOT_FOUND;
}

/* Answers the complete head in c->buf. */
static void handle(metrics_conn_t *c)
{
    int head_only;
    const char *group;
    size_t glen;

    wd_metrics_route_t route = wd_metrics_route(c->buf, c->len, &head_only, &group, &glen);

    if (c->m->health && (route == WD_METRICS_PROMETHEUS || route == WD_METRICS_STATUS))
        route = WD_METRICS_NOT_FOUND;
    switch (route) {
    case WD_METRICS_BAD:
        respond_error(c, 400, "Bad Request");
        break;
    case WD_METRICS_METHOD:
        respond_error(c, 405, "Method Not Allowed");
        break;
    case WD_METRICS_PROMETHEUS:
        respond_snapshot(c, 1, head_only);
        break;
    case WD_METRICS_STATUS:
        respond_snapshot(c, 0, head_only);
        break;
    case WD_METRICS_LIVEZ:
        respond_health(c, WD_HEALTH_LIVE, NULL, 0, head_only);
        break;
    case WD_METRICS_READYZ:
        respond_health(c, WD_HEALTH_READY, group, glen, head_only);
        break;
    default:
        respond_error(c, 404, "Not Found");
        break;
    }
}

int wd_metrics_head_complete(const char *buf, size_t len)
{
    size_t i;

    for (i = 1; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i - 1] == '\n' || (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n'))
            return 1;
    }
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    metrics_conn_t *c = h->data;

    if (c->answered) {
        *buf = uv_buf_init(c->buf, sizeof c->buf); /* input after the request is discarded */
        return;
    }
    if (c->len >= sizeof c->buf - 1) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - 1 - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    metrics_conn_t *c = s->data;

    if (c->closing)
        return;
    if (c->answered) {
        if (n < 0) {
            c->peer_eof = 1;
            uv_read_stop(s);
            if (c->shut)
                conn_close(c);
        }
        return;
    }
    if (c->m->agent) {
        /* The group's name, a line; or an end of input, which answers for every group. */
        if (n > 0)
            c->len += (size_t)n;
        if (n < 0 || memchr(c->buf, '\n', c->len) != NULL || c->len >= WD_AGENT_LINE_MAX)
            respond_agent(c);
        return;
    }
    if (n < 0) {
        if (n == UV_ENOBUFS)
            respond_error(c, 431, "Request Header Fields Too Large");
        else
            conn_close(c); /* EOF before a whole request, or an error: nobody to answer */
        return;
    }
    c->len += (size_t)n;
    if (wd_metrics_head_complete(c->buf, c->len))
        handle(c);
    else if (c->len >= sizeof c->buf - 1)
        respond_error(c, 431, "Request Header Fields Too Large");
}

/* How many bytes of an address make its network for make_room: an IPv6 /64, what one host or
 * site is given (a client may take any address of it), or an IPv4 /24 (IPv4-mapped). */
static size_t net_bytes(const struct in6_addr *a)
{
    return IN6_IS_ADDR_V4MAPPED(a) ? 15 : 8;
}

/* How many of the open connections come from c's network (net) and from its address (addr). */
static void peer_conns(wd_metrics_t *m, const metrics_conn_t *c, size_t *net, size_t *addr)
{
    const metrics_conn_t *o;
    size_t k = net_bytes(&c->peer);

    *net = *addr = 0;
    for (o = m->conns; o != NULL; o = o->next) {
        if (memcmp(&o->peer, &c->peer, k) != 0)
            continue;
        (*net)++;
        *addr += memcmp(&o->peer, &c->peer, sizeof c->peer) == 0;
    }
}

/* The connection that gives way at the cap: one of the network that holds the most, and in it
 * of the address that holds the most (one client flooding the listener, from one address or
 * from many of its network, never takes the place of another's health check); among them, the
 * one opened first still without an answer (a client that sent nothing, or a head it never
 * finishes), else the first opened (an answer lingering for the client's close); never fresh,
 * the one just accepted. Choosing the oldest waiting one of all let a client that opens
 * connections faster than a load balancer's request arrives close the check's connection before
 * it was read (helper-89); counting addresses alone, a flood from many addresses (each holding
 * one connection) did it again (helper-98). */
static metrics_conn_t *victim_of(wd_metrics_t *m, const metrics_conn_t *fresh, size_t *most,
                                 size_t *most_net)
{
    metrics_conn_t *c, *victim = NULL;
    size_t net, addr;

    *most = *most_net = 0;
    for (c = m->conns; c != NULL; c = c->next) { /* newest first: ties go to the older */
        if (c == fresh)
            continue;
        peer_conns(m, c, &net, &addr);
        if (victim == NULL || net > *most_net || (net == *most_net && addr > *most) ||
            (net == *most_net && addr == *most && (!c->answered || victim->answered))) {
            victim = c;
            *most_net = net;
            *most = addr;
        }
    }
    return victim;
}

/* At the cap, closes the connection victim_of names. */
static void make_room(wd_metrics_t *m, metrics_conn_t *fresh)
{
    metrics_conn_t *victim;
    size_t most, most_net;
    char peer[INET6_ADDRSTRLEN];

    victim = victim_of(m, fresh, &most, &most_net);
    if (victim == NULL)
        return;
    if (IN6_IS_ADDR_V4MAPPED(&victim->peer))
        inet_ntop(AF_INET, victim->peer.s6_addr + 12, peer, sizeof peer);
    else
        inet_ntop(AF_INET6, &victim->peer, peer, sizeof peer);
    wd_log_peer(WD_LOG_WARN,
                "%s %s: %d connections open: closed the oldest one of %s (%zu of them, %zu of "
                "its /%d) %s (open %.1f s) for a new one",
                m->agent    ? "agent-check"
                : m->health ? "health"
                            : "metrics",
                m->addr, WD_METRICS_CONNS_MAX, peer, most, most_net,
                IN6_IS_ADDR_V4MAPPED(&victim->peer) ? 24 : 64,
                victim->answered ? "answered already" : "without a whole request",
                (double)(uv_now(m->loop) - victim->opened) / 1000.0);
    conn_close(victim);
}

/* c->peer: the client's address, an IPv4 one mapped (::ffff:a.b.c.d, as a dual-stack listener
 * gives it). */
static void peer_get(metrics_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;

    memset(&c->peer, 0, sizeof c->peer);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET) {
        c->peer.s6_addr[10] = c->peer.s6_addr[11] = 0xff;
        memcpy(c->peer.s6_addr + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        c->peer = ((struct sockaddr_in6 *)&ss)->sin6_addr;
    }
}

static void connection_cb(uv_stream_t *server, int status)
{
    wd_metrics_t *m = server->data;
    metrics_conn_t *c;

    if (status < 0) {
        wd_log_warn("metrics %s: accept: %s", m->addr, uv_strerror(status));
        return;
    }
    c = xcalloc(1, sizeof *c);
    c->m = m;
    c->opened = uv_now(m->loop);
    uv_tcp_init(m->loop, &c->tcp);
    uv_timer_init(m->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    c->next = m->conns;
    if (c->next != NULL)
        c->next->prev = c;
    m->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    /* A scraper opens one connection at a time; past this many, somebody is misbehaving: a
     * connection of the address that holds the most gives way to the new one (make_room).
     * Refusing the new one, as it was, let 64 connections that send nothing (renewed every 10 s)
     * fail every GET /readyz of the load balancer, which then took the host out of rotation
     * (helper-81). */
    peer_get(c);
    if (n_conns(m) > WD_METRICS_CONNS_MAX)
        make_room(m, c);
    uv_timer_start(&c->timer, timeout_cb, m->agent ? WD_AGENT_WAIT_MS : WD_METRICS_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) < 0)
        conn_close(c);
}

/* Resolves host:port (numeric or a name) to its first address. */
static int resolve(const char *host, int port, struct sockaddr_storage *ss)
{
    struct addrinfo hints, *res = NULL;
    char service[16];
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof service, "%d", port);
    rc = getaddrinfo(host != NULL && host[0] != '\0' ? host : NULL, service, &hints, &res);
    if (rc != 0)
        return rc == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

enum { KIND_METRICS, KIND_AGENT, KIND_HEALTH };

static int start(wd_metrics_t *m, uv_loop_t *loop, const char *host, int port, int kind,
                 wd_metrics_snapshot_fn snapshot, wd_metrics_release_fn release, void *data)
{
    static const char *const whats[] = {"metrics", "agent-check", "health"};
    static const char *const serves[] = {"GET /metrics, /status, /livez, /readyz",
                                         "HAProxy agent-check: up, drain or down, and a weight",
                                         "GET /livez, /readyz"};
    struct sockaddr_storage ss;
    int rc, initialized = 0, agent = kind == KIND_AGENT;
    const char *what = whats[kind];

    memset(m, 0, sizeof *m);
    m->agent = agent;
    m->health = kind == KIND_HEALTH;
    m->loop = loop;
    m->snapshot = snapshot;
    m->release = release;
    m->data = data;
    snprintf(m->addr, sizeof m->addr, strchr(host != NULL ? host : "", ':') ? "[%s]:%d" : "%s:%d",
             host != NULL ? host : "", port);

    rc = resolve(host, port, &ss);
    if (rc < 0)
        goto fail;
    rc = uv_tcp_init(loop, &m->server);
    if (rc < 0)
        goto fail;
    initialized = 1;
    m->server.data = m;
    /* dual-stack on [::] (it takes one address: IPv4 scrapes must reach it too) */
    rc = uv_tcp_bind(&m->server, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&m->server, 128, connection_cb);
    if (rc < 0)
        goto fail;
    m->running = 1;
    wd_log_info("%s: listening on %s (%s)", what, m->addr, serves[kind]);
    return 0;

fail:
    wd_log_error("%s: cannot listen on %s: %s", what, m->addr,
                 rc == -EADDRNOTAVAIL ? "cannot resolve the address" : strerror(-rc));
    if (initialized)
        uv_close((uv_handle_t *)&m->server, NULL);
    return rc;
}

int wd_metrics_start(wd_metrics_t *m, uv_loop_t *loop, const char *host, int port,
                     wd_metrics_snapshot_fn snapshot, wd_metrics_release_fn release, void *data)
{
    return start(m, loop, host, port, KIND_METRICS, snapshot, release, data);
}

int wd_metrics_start_agent(wd_metrics_t *m, uv_loop_t *loop, const char *host, int port,
                           wd_metrics_snapshot_fn snapshot, wd_metrics_release_fn release,
                           void *data)
{
    return start(m, loop, host, port, KIND_AGENT, snapshot, release, data);
}

int wd_metrics_start_health(wd_metrics_t *m, uv_loop_t *loop, const char *host, int port,
                            wd_metrics_snapshot_fn snapshot, wd_metrics_release_fn release,
                            void *data)
{
    return start(m, loop, host, port, KIND_HEALTH, snapshot, release, data);
}

void wd_metrics_stop(wd_metrics_t *m)
{
    if (!m->running)
        return;
    m->running = 0;
    while (m->conns != NULL)
        conn_close(m->conns);
    uv_close((uv_handle_t *)&m->server, NULL);
}
