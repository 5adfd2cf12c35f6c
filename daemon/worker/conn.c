/* One client connection in a worker's loop: see conn.h.
 *
 * The loop thread runs this code, or a Python thread holding the loop lock for the connection it
 * keeps (parking, handoff.h; its callbacks are in conn_park.c). While a request is with a Python
 * thread (WD_CONN_APP) the connection reads nothing more; it watches for the client hanging up
 * (so that the app's next write fails and its iterable is closed) and writes whatever the
 * response buffer holds. A request its parked thread took itself is not watched: a
 * client that hangs up meanwhile is seen at the app's next write (EPIPE), as it would be anyway. */
#include "conn.h"
#include "conn_int.h"
#include "balance.h"
#include "forward.h"
#include "alloc.h"

#include "log.h"
#include "proxy_header.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUF_INITIAL 8192
#define BODY_READ_ROOM 65536

static void conn_process(wd_conn_t *c);
static void conn_send(wd_conn_t *c);
static void note_app_done(wd_conn_t *c);
static void conn_poll_cb(uv_poll_t *p, int status, int events);
static int app_watch(const wd_conn_t *c);
static void hand_wait(wd_conn_t *c, int on);

/* Whether the loop must send to c: it does not rest meanwhile (handoff.h). */
static void count_writer(wd_conn_t *c, int writer)
{
    if (c->writer != writer) {
        c->writer = writer;
        wd_handoff_writers(c->cs->handoff, writer ? 1 : -1);
    }
}

/* The poll handle is made only when the connection first has to wait: a request that is complete
 * at accept time and a response that fits in the socket at once never cost an epoll_ctl. */
static void set_events(wd_conn_t *c, int events)
{
    if (c->park_owner != NULL || c->parking)
        events = 0; /* its thread waits on it (see wd__conn_parked, conn_park.c) */
    /* After the client's FIN a read is always ready: watched only while a request is read, where
     * a read takes bytes or sees the end and closes (see conn_poll_cb). */
    if (c->peer_shut && c->state != WD_CONN_HEAD && c->state != WD_CONN_BODY)
        events &= ~(UV_READABLE | UV_DISCONNECT);
    if (c->state == WD_CONN_CLOSED || c->events == events)
        return;
    c->events = events;
    count_writer(c, (events & UV_WRITABLE) != 0);
    if (!c->poll_inited) {
        if (events == 0)
            return;
        uv_poll_init(c->cs->loop, &c->poll, c->fd);
        c->poll.data = c;
        c->poll_inited = 1;
        c->open_handles++;
    }
    if (events)
        uv_poll_start(&c->poll, events, conn_poll_cb);
    else
        uv_poll_stop(&c->poll);
}

/* Called under out->lock by a Python thread: the loop has something to send, or the response is
 * finished. */
static void conn_wake(wd_out_t *out, void *data, int how)
{
    wd_conn_t *c = data;

    (void)out;
    wd_handoff_notify(c->cs->handoff, &c->node,
                      how == WD_OUT_WAKE_LAZY   ? WD_HANDOFF_LAZY
                      : how == WD_OUT_WAKE_SHUT ? WD_HANDOFF_QUIET
                                                : WD_HANDOFF_NOW);
}

static wd_conn_t *node_conn(wd_handoff_node_t *node)
{
    return (wd_conn_t *)((char *)node - offsetof(wd_conn_t, node));
}

static void peer_string(wd_conn_t *c, const struct sockaddr *sa)
{
    c->remote[0] = '\0';
    c->remote_port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &in->sin_addr, c->remote, sizeof c->remote);
        c->remote_port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &in6->sin6_addr, c->remote, sizeof c->remote);
        c->remote_port = ntohs(in6->sin6_port);
    }
}

static void conn_read(wd_conn_t *c);

#define POOL_MAX 256

void wd_conn_new(wd_conns_t *cs, const wd_listener_t *l, int fd, const struct sockaddr *peer,
                 socklen_t peer_len, int adopted, uint64_t idle_ms, const wd_conn_origin_t *origin)
{
    double idle_s = (double)idle_ms / 1000.0, wait;

    wd_conn_t *c = cs->pool;
    char *buf = NULL, *body_mem = NULL;
    size_t cap = 0, body_cap = 0;

    (void)peer_len;
    if (c != NULL) {
        cs->pool = c->next;
        cs->n_pool--;
        buf = c->buf;
        cap = c->cap;
        body_mem = c->body_mem;
        body_cap = c->body_cap;
        memset(c, 0, offsetof(wd_conn_t, out));
    } else {
        c = calloc(1, sizeof *c);
        if (c == NULL)
            abort();
        wd_out_init(&c->out, cs->group->response_buffer_size, cs->group->response_spill_limit,
                    cs->tmpdir, conn_wake, c);
        wd_out_set_budget(&c->out, &cs->budget);
        c->out.park = wd__conn_park;
        c->out.parked = wd__conn_parked;
    }
    c->buf = buf;
    c->cap = cap;
    c->body_mem = body_mem;
    c->body_cap = body_cap;
    c->cs = cs;
    c->l = l;
    c->fd = fd;
    c->body_fd = -1;
    c->state = WD_CONN_HEAD;
    peer_string(c, peer);
    c->trusted = wd_fwd_peer_trusted(cs->group, peer);
    c->proxy_pending = cs->group->proxy_protocol;
    /* Its header came before its hand-over: believed, as the header was, only of a connection
     * whose own peer is in trusted-proxies. The app can write an "adopt" line on its worker's
     * socket to the master, with any connection: one from another peer had a sibling serve it,
     * with no header read, as from the client and with the trust the line claimed. Of another,
     * a header is read, and the connection closed as any from that peer (wd_fwd_proxy_header). */
    if (origin != NULL && c->proxy_pending && c->trusted) {
        memcpy(c->remote, origin->remote, sizeof c->remote);
        c->remote[sizeof c->remote - 1] = '\0';
        c->remote_port = origin->port;
        c->trusted = origin->trusted;
        c->proxy_pending = 0;
        c->head_timed = adopted == WD_CONN_FRESH; /* header-timeout runs from the header */
    }
    wd__conn_fcgi_reset(c);
    uv_timer_init(cs->loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 1;
    c->next = cs->list;
    if (cs->list)
        cs->list->prev = c;
    else
        cs->tail = c;
    cs->list = c;
    cs->n++;
    wd_score_add(&cs->score->connections, 1);
    c->adopted = adopted == WD_CONN_FRESH ? WD_CONN_ACCEPTED : adopted;
    c->idle_ns = c->adopted ? wd_now_ns() - idle_ms * 1000000 : 0;
    c->made_ms = uv_now(cs->loop) - (adopted == WD_CONN_FRESH ? idle_ms : 0);
    /* An adopted one's keepalive-timeout counts from its last answer, and a fresh one's
     * header-timeout from its accept, not anew at each hand-over: a connection handed over at
     * every recycle outlived them for as long as they came. */
    wait = c->adopted ? wd__conn_idle_timeout(cs) : cs->group->header_timeout;
    if ((c->adopted || adopted == WD_CONN_FRESH) && wait > 0)
        wait = wait > idle_s ? wait - idle_s : 0.001;
    wd__conn_timer(c, wait);
    /* A proxy sends its request right after connecting: it is usually there already. */
    conn_read(c);
}

const char *wd__conn_peer(const wd_conn_t *c)
{
    if (c->remote[0])
        return c->remote;
    return c->l->is_unix ? "unix" : "?";
}

/* --- closing ------------------------------------------------------------------------------- */

/* An idle connection (kept alive between requests with nothing of the next request read yet, or
 * in the pool) keeps a read buffer of BUF_INITIAL at most, a small body's buffer
 * (wd__conn_body_idle) and small FastCGI PARAMS (wd__conn_fcgi_idle): what a request made them
 * grow to goes back. Kept, 150 connections idle after one body each held 86.4 KiB of RSS a
 * connection (60 KB with Content-Length: the 64 KiB body buffer), 90.1 (the same chunked) and
 * 61.0 (200 KB through FastCGI records the guesses missed: the read buffer, fcgi_spill); given
 * back, 28.2, 27.7 and 20.3, against 12 after a 3-byte body (e2e test_exhaustion:
 * test_idle_connections_keep_small_buffers). A keep-alive client that sends such bodies pays a
 * malloc a request for them again. Not trimmed: a connection whose next request is read already
 * (until a response leaves nothing behind), and one whose FastCGI request the proxy aborted
 * before it ran (conn_fcgi.c), until its next response.
 *
 * Idle for a second, a keep-alive connection keeps nothing for its next request (whole, from
 * wd__conn_trim_idle), its HTTP parser included: 5,000 of them idle after a hello each held
 * 11.7 KiB of a worker's RSS apiece (the 1.5 KiB struct, the 2 KiB parser, the read buffer and
 * the response's spare segment), 3.8-5.5 KiB 7 s later (worker.c: heap_trim), against 6.1-6.9
 * with the parser kept. Returns the bytes given back. */
static size_t conn_trim(wd_conn_t *c, int whole)
{
    size_t n = wd__conn_body_idle(c, whole) + wd__conn_fcgi_idle(c, whole);

    if (c->len == 0 && c->cap > (whole ? 0 : BUF_INITIAL)) {
        n += c->cap;
        free(c->buf);
        c->buf = NULL;
        c->cap = 0;
    }
    return n;
}

/* The HTTP parser goes (conn_process makes it again when the connection needs one); returns the
 * bytes given back. */
static size_t http_drop(wd_conn_t *c)
{
    if (c->http == NULL)
        return 0;
    free(c->http);
    c->http = NULL;
    c->req.http = NULL;
    return sizeof(wd_http_t);
}

size_t wd__conn_trim_idle(wd_conn_t *c)
{
    return wd_out_trim(&c->out) + conn_trim(c, 1) + (c->len == 0 ? http_drop(c) : 0);
}

static void conn_free(wd_conn_t *c)
{
    wd_conns_t *cs = c->cs;

    wd__conn_body_clear(c);
    if (cs->n_pool < POOL_MAX && !cs->stopping) {
        /* Kept for the next connection, with its buffers as an idle connection keeps them. */
        c->len = 0;
        wd__conn_fcgi_reset(c);
        wd__conn_fcgi_free(c);
        cs->freed += conn_trim(c, 0);
        if (c->http != NULL)
            wd_http_reset(c->http);
        wd_out_reset(&c->out);
        c->next = cs->pool;
        cs->pool = c;
        cs->n_pool++;
        return;
    }
    wd__conn_fcgi_free(c);
    cs->freed += sizeof *c + c->cap + c->body_cap + c->fcgi.params_cap +
                 (c->http != NULL ? sizeof *c->http : 0);
    wd_out_close(&c->out);
    wd__conn_body_free(c);
    free(c->buf);
    free(c->fcgi.params);
    free(c->http);
    free(c);
}

static void conn_closed_cb(uv_handle_t *h)
{
    wd_conn_t *c = h->data;

    if (--c->open_handles > 0)
        return;
    close(c->fd);
    if (!wd_handoff_release(c->cs->handoff, &c->node))
        conn_free(c);
}

void wd_conn_free(wd_handoff_node_t *node)
{
    conn_free(node_conn(node));
}

void wd_conn_close(wd_conn_t *c)
{
    wd_conns_t *cs = c->cs;

    if (c->state == WD_CONN_CLOSED)
        return;
    if (c->park_owner != NULL) {
        /* A thread waits on it: that thread closes it (wd_conn_park_cb). */
        c->park_close = 1;
        wd_handoff_evict(cs->handoff, c->park_owner);
        return;
    }
    count_writer(c, 0);
    hand_wait(c, 0);
    c->state = WD_CONN_CLOSED;
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        cs->tail = c->prev;
    cs->n--;
    wd_score_sub(&cs->score->connections, 1);
    if (c->poll_inited)
        uv_close((uv_handle_t *)&c->poll, conn_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
    cs->ops->closed(cs->owner);
}

/* --- dispatch ------------------------------------------------------------------------------- */

static void conn_dispatch(wd_conn_t *c)
{
    wd_conns_t *cs = c->cs;
    wd_req_t *req = &c->req;
    size_t n;

    req->next = NULL;
    req->kind = c->proto;
    req->seq = ++cs->seq;
    /* "PID-SEQ" (at most 10 + 1 + 20 digits: it fits id[32]), without a printf per request. */
    n = wd_fmt_u64(req->id, (uint64_t)cs->pid);
    req->id[n++] = '-';
    req->id[n + wd_fmt_u64(req->id + n, req->seq)] = '\0';
    req->t_start_ns = wd_now_ns();
    req->t_queued_ns = req->t_start_ns;
    req->uwsgi = c->proto == WD_REQ_UWSGI ? &c->uwsgi : NULL;
    req->http = c->proto == WD_REQ_HTTP ? c->http : NULL;
    req->fcgi = c->proto == WD_REQ_FCGI ? &c->fcgi.req : NULL;
    req->fcgi_id = c->fcgi.id;
    req->fcgi_keep = c->fcgi.keep_conn;
    memcpy(req->remote_addr, c->remote, sizeof req->remote_addr);
    req->remote_port = c->remote_port;
    memcpy(req->server_addr, c->l->addr, sizeof req->server_addr - 1);
    req->server_addr[sizeof req->server_addr - 1] = '\0';
    req->server_port = c->l->port;
    req->is_unix = c->l->is_unix;
    req->forwarded = 0;
    req->fwd_https = -1;
    req->fwd_host = (wd_slice_t){NULL, 0};
    req->strip_forwarded = 0;
    req->vars_untrusted = c->proto != WD_REQ_HTTP && !wd_fwd_vars_believed(cs->group, c->trusted);
    if (c->proto == WD_REQ_HTTP && c->trusted)
        wd_fwd_apply(req, c->http, cs->group);
    else if (c->proto == WD_REQ_HTTP || req->vars_untrusted)
        req->strip_forwarded = cs->group->strip_forwarded;
    req->body_len = c->body_len;
    req->body_mem = c->body_fd < 0 ? c->body_mem : NULL;
    req->body_fd = c->body_fd;
    if (c->body_fd >= 0)
        lseek(c->body_fd, 0, SEEK_SET);
    req->out = &c->out;
    c->out.sock = c->fd;
    c->out.sndbuf_raise = c->l->is_unix; /* TCP tunes its own buffers */
    c->out.hold = 1;
    req->status = 0;
    req->head_len = 0;
    req->cut = 0;
    atomic_store_explicit(&req->whole, 0, memory_order_relaxed);
    /* a keep-alive connection's last request may have timed out */
    atomic_store_explicit(&req->timed_out, 0, memory_order_relaxed);
    c->dispatched = 1;
    c->state = WD_CONN_APP;
    c->last_sent = 0;
    /* The poll keeps watching for reads: nginx sends nothing more, and a pipelining client's
     * next bytes turn it off in conn_poll_cb. One epoll_ctl less per request. */
    wd__conn_timer(c, 0);
    if (c->proto == WD_REQ_FCGI)
        set_events(c, app_watch(c)); /* an ABORT_REQUEST may come */
    req->stopping = c->proto == WD_REQ_HTTP && c->http->keep_alive ? &cs->stopping : NULL;
    /* The thread that frames the head may close the connection: balance.h. */
    req->balance = c->proto == WD_REQ_HTTP && c->http->keep_alive && cs->balance != NULL &&
                           wd_balance_active(cs->balance)
                       ? cs->balance
                       : NULL;
    /* See wd_out_finish_park. A kept FastCGI connection's end is lazy news as a keep-alive HTTP
     * one's: the next request brings the loop, or the lazy timer does. It ran no timer, and its
     * lazy news waited for the next request or the worker's tick (250 ms), and with it the access
     * line, the request's count and the thread's slot; a wake-up at each of its ends instead cost
     * 11 % of hello's req/s through fastcgi_keep_conn (40,727 against 45,563, 15.5 against 12.9 us
     * of CPU a request: RESULTS-20261207-2314). */
    if ((c->proto == WD_REQ_HTTP && c->http->keep_alive) ||
        (c->proto == WD_REQ_FCGI && c->fcgi.keep_conn))
        req->may_be_lazy = WD_REQ_LAZY_KEEP;
    else if (c->proto == WD_REQ_HTTP || c->proto == WD_REQ_UWSGI ||
             (c->proto == WD_REQ_FCGI && !c->fcgi.keep_conn))
        req->may_be_lazy = WD_REQ_LAZY_SHUT;
    else
        req->may_be_lazy = 0;
    c->out.may_shut = req->may_be_lazy == WD_REQ_LAZY_SHUT;
    /* This request's end must wake the loop when the next request is read already (a client
     * that pipelines, or a FastCGI peer that sent the next one's records with this one's): the
     * loop parses the next at that news. As lazy news it waited for the lazy timer (1-8 ms a
     * request). So must one that may not end lazily (none now: every protocol's is LAZY_KEEP or
     * LAZY_SHUT), as no lazy timer runs for it. The thread gets the request only after this store,
     * through the hand-off's lock. */
    c->out.loop_waits = c->len > c->parsed || req->may_be_lazy == 0;
    wd_handoff_dispatch(cs->handoff, req);
    cs->ops->dispatched(cs->owner);
}

/* --- reading -------------------------------------------------------------------------------- */

static int detect(wd_conn_t *c)
{
    unsigned char b = (unsigned char)c->buf[0];

    switch (c->l->protocol) {
    case WD_PROTOCOL_UWSGI:
        return WD_REQ_UWSGI;
    case WD_PROTOCOL_HTTP:
        return WD_REQ_HTTP;
    case WD_PROTOCOL_FASTCGI:
        return WD_REQ_FCGI;
    default:
        break;
    }
    /* A method is any token (RFC 9110 9.1): "get", "-BLARGH" and "QUERY" are HTTP requests (for
     * a 501 when llhttp does not know them). nginx's uwsgi packets start with modifier1, 0. An
     * empty line may come before a request line (RFC 9112 2.2: ignored, as llhttp does). */
    if ((b > ' ' && b < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", b) == NULL) || b == '\r' || b == '\n')
        return WD_REQ_HTTP;
    /* A FastCGI connection starts with version 1 and BEGIN_REQUEST (or a GET_VALUES probe); a
     * uwsgi packet with modifier1 1 starts with 1 too, and is refused as uwsgi. */
    if (b == WD_FCGI_VERSION_1) {
        if (c->len < 2)
            return 0;
        if (c->buf[1] == WD_FCGI_BEGIN_REQUEST || c->buf[1] == WD_FCGI_GET_VALUES)
            return WD_REQ_FCGI;
    }
    return WD_REQ_UWSGI;
}

static void conn_process(wd_conn_t *c)
{
    int r;

    if (c->len == 0)
        return;
    if (c->proxy_pending) {
        long n = wd_fwd_proxy_header(c->cs->group, c->buf, c->len, wd__conn_peer(c), c->remote,
                                     &c->remote_port, &c->trusted);

        if (n <= 0) {
            if (n < 0)
                wd_conn_close(c);
            return;
        }
        memmove(c->buf, c->buf + n, c->len - (size_t)n);
        c->len -= (size_t)n;
        c->proxy_pending = 0;
        if (c->len == 0)
            return;
    }
    if (c->proto == 0) {
        r = detect(c);
        if (r <= 0) {
            if (r < 0)
                wd_conn_close(c);
            return; /* 0: one more byte decides */
        }
        c->proto = (wd_req_kind_t)r;
        if (c->proto != WD_REQ_HTTP)
            http_drop(c); /* a pooled HTTP connection's */
    }
    if (c->proto == WD_REQ_HTTP && c->http == NULL) {
        c->http = xmalloc(sizeof *c->http);
        wd_http_init(c->http, NULL, NULL);
    }
    r = c->proto == WD_REQ_UWSGI  ? wd__conn_uwsgi_process(c)
        : c->proto == WD_REQ_FCGI ? wd__conn_fcgi_process(c)
                                  : wd__conn_http_process(c);
    if (r == 1 && c->proto == WD_REQ_FCGI && wd__conn_fcgi_aborted_early(c))
        wd_conn_close(c);
    else if (r == 1)
        conn_dispatch(c);
}

static size_t read_limit(const wd_conn_t *c)
{
    size_t hb = (size_t)c->cs->group->header_buffer_size;

    if (c->proto == WD_REQ_UWSGI || c->proto == 0)
        hb += WD_UWSGI_HEADER_SIZE;
    if (c->proxy_pending && hb < WD_PROXY_V2_MAX) /* the longest PROXY v2 header fits whole */
        hb = WD_PROXY_V2_MAX;
    if (c->proto == WD_REQ_FCGI) /* whole records: PARAMS and STDIN are copied out of them */
        return WD_FCGI_MAX_RECORD + BODY_READ_ROOM;
    if (c->state == WD_CONN_BODY)
        return c->head_end + BODY_READ_ROOM;
    return hb;
}

/* n body bytes read straight into the body's buffer at `at` (wd__conn_body_direct) go through
 * the parser as bytes of the read buffer would; wd__conn_body_append sees that they are in place
 * already and does not copy them. */
static void body_direct_process(wd_conn_t *c, const char *at, size_t n)
{
    int done;

    if (c->proto == WD_REQ_UWSGI || c->proto == WD_REQ_FCGI) {
        if (wd__conn_body_append(c, at, n) < 0) {
            wd__conn_fail(c, c->body_error);
            return;
        }
        if (c->proto == WD_REQ_FCGI) {
            /* The request ends with its empty STDIN record, read through the buffer. */
            wd__conn_fcgi_stdin_read(c, n);
            return;
        }
        done = c->body_len == c->body_expect;
    } else {
        if (wd_http_feed(c->http, at, n) < 0) {
            wd__conn_http_failed(c);
            return;
        }
        done = c->http->state == WD_HTTP_DONE;
    }
    if (done)
        conn_dispatch(c);
}

/* Room in the read buffer for the next read: 0, or -1 when the request was answered (a head
 * that does not fit). */
static int read_room(wd_conn_t *c)
{
    size_t limit = read_limit(c), cap;

    if (c->len < c->cap)
        return 0;
    cap = c->cap ? c->cap * 2 : BUF_INITIAL;
    if (cap > limit)
        cap = limit;
    if (cap <= c->len) {
        /* Only a head can fill the buffer; its parser has said it is too large. */
        wd__conn_fail(c, 431);
        return -1;
    }
    c->buf = xrealloc(c->buf, cap);
    c->cap = cap;
    return 0;
}

/* The bytes that follow a FastCGI STDIN record read straight into the body, read with it into
 * the read buffer: its padding and the next record's header, no more (the next record's content
 * goes straight into the body too). 0 when the read ends inside the record. */
static size_t fcgi_after(const wd_conn_t *c, size_t room)
{
    size_t want;

    if (c->proto != WD_REQ_FCGI || room != c->fcgi.stdin_left || c->len >= c->cap)
        return 0;
    want = c->fcgi.stdin_skip + WD_FCGI_HEADER_SIZE;
    return want < c->cap - c->len ? want : c->cap - c->len;
}

/* What one read asks for: the pieces it reads into. */
#define FCGI_GUESS_MAX 8 /* FastCGI records guessed after the one being taken */
#define FCGI_PIECE_MAX (WD_FCGI_MAX_PADDING + WD_FCGI_HEADER_SIZE)

typedef struct {
    struct iovec iov[2 + 2 * FCGI_GUESS_MAX];
    int n;
    char heads[FCGI_GUESS_MAX][FCGI_PIECE_MAX];
} read_plan_t;

/* The records after the FastCGI STDIN record being taken, guessed to be like it: nginx sends a
 * body in records of 32 KiB without padding, all but the last. Each guessed record's content is
 * read straight into the body after the one before, its padding and the next header into heads.
 * As many as fit in the body's buffer and its announced length, and in the read buffer within its
 * limit (4 of nginx's records): when a guess is wrong, the bytes from there on go through it
 * (fcgi_guess_taken; it gives the growth back once the connection idles: conn_trim). A 1 MiB
 * POST echoed through nginx's fastcgi_pass (-c16, perf stat of both workers) took 35 reads a
 * request one record a read, 8.7 so (proxy_pass: 7.6), and 804, 802 and 692 us of CPU a request
 * against 752, 684 and 610 (bench/run --tests post, 3 alternated pairs). */
static void fcgi_guess(const wd_conn_t *c, char *direct, size_t room, read_plan_t *pl)
{
    size_t len = c->fcgi.stdin_len, piece = c->fcgi.stdin_skip + WD_FCGI_HEADER_SIZE;
    size_t space = wd__conn_body_direct_space(c), used = c->len + pl->iov[1].iov_len;
    size_t limit = read_limit(c);

    if (pl->iov[1].iov_len != piece || len == 0)
        return;
    for (int k = 0; k < FCGI_GUESS_MAX; k++) {
        if (room + (k + 1) * len > space || used + len + piece > limit)
            break;
        pl->iov[pl->n++] = (struct iovec){direct + room + k * len, len};
        pl->iov[pl->n++] = (struct iovec){pl->heads[k], piece};
        used += len + piece;
    }
}

/* The got bytes a read brought into pl's pieces from index i on go through the read buffer (piece
 * 1, when i is 1, is there already). fcgi_guess left the read buffer's limit room for them. */
static void fcgi_spill(wd_conn_t *c, const read_plan_t *pl, int i, size_t got)
{
    if (i == 1) {
        size_t k = got < pl->iov[1].iov_len ? got : pl->iov[1].iov_len;

        c->len += k;
        got -= k;
        i = 2;
    }
    if (got > c->cap - c->len) {
        c->buf = xrealloc(c->buf, c->len + got);
        c->cap = c->len + got;
    }
    for (; got > 0 && i < pl->n; i++) {
        size_t k = got < pl->iov[i].iov_len ? got : pl->iov[i].iov_len;

        memcpy(c->buf + c->len, pl->iov[i].iov_base, k);
        c->len += k;
        got -= k;
    }
}

/* The got bytes a FastCGI read brought past the content of the record being taken: each guessed
 * record whose header bears the guess out is taken in place; from the first that does not (a
 * shorter record, the empty one that ends the body, another type, an error), the bytes go
 * through the read buffer and its parser. */
static void fcgi_guess_taken(wd_conn_t *c, const read_plan_t *pl, size_t got)
{
    int i = 1;

    for (; i + 1 < pl->n && got >= pl->iov[i].iov_len; i += 2) {
        size_t k;

        if (!wd__conn_fcgi_stdin_guessed(c, pl->iov[i].iov_base, pl->iov[i].iov_len))
            break;
        got -= pl->iov[i].iov_len;
        k = got < pl->iov[i + 1].iov_len ? got : pl->iov[i + 1].iov_len;
        if (k > 0)
            body_direct_process(c, pl->iov[i + 1].iov_base, k);
        got -= k;
        if (got == 0 || c->state != WD_CONN_BODY)
            return;
    }
    fcgi_spill(c, pl, i, got);
    conn_process(c);
}

/* One read. Returns 1 when it filled all it asked for and the connection reads on: more bytes
 * are likely waiting (a body that streams in); 0 otherwise. */
static int read_once(wd_conn_t *c)
{
    size_t room = 0, asked = 0, first;
    uint64_t had;
    char *direct = wd__conn_body_direct(c, &room);
    read_plan_t pl;
    ssize_t n;

    if (wd__conn_fcgi_unsent(c))
        return 0; /* nothing more is read before they are sent */
    if (direct == NULL && read_room(c) < 0)
        return 0;
    pl.n = 1;
    if (direct != NULL) {
        size_t after = fcgi_after(c, room);

        pl.iov[0] = (struct iovec){direct, room};
        if (after > 0) {
            pl.iov[pl.n++] = (struct iovec){c->buf + c->len, after};
            fcgi_guess(c, direct, room, &pl);
        }
    } else {
        pl.iov[0] = (struct iovec){c->buf + c->len, c->cap - c->len};
    }
    for (int i = 0; i < pl.n; i++)
        asked += pl.iov[i].iov_len;
    do {
        n = pl.n == 1 ? read(c->fd, pl.iov[0].iov_base, pl.iov[0].iov_len)
                      : readv(c->fd, pl.iov, pl.n);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            wd_conn_close(c);
        else if (!(c->events & UV_READABLE))
            set_events(c, UV_READABLE | UV_DISCONNECT);
        return 0;
    }
    if (n == 0) {
        if (c->len > 0 || c->state == WD_CONN_BODY)
            wd_log_peer(WD_LOG_INFO, "peer %s: connection closed in the middle of a request",
                        wd__conn_peer(c));
        wd_conn_close(c);
        return 0;
    }
    if (c->state == WD_CONN_HEAD && c->len == 0 && !c->head_timed) {
        wd__conn_timer(c, c->cs->group->header_timeout); /* the whole head must come within it */
        c->head_timed = 1;
        c->made_ms = uv_now(c->cs->loop); /* a hand-over's age (wd__conn_hand_over) */
    } else if (c->state == WD_CONN_BODY && c->proto != WD_REQ_FCGI)
        wd__conn_timer(c, c->cs->group->body_timeout);
    had = c->body_len;
    if (direct != NULL) {
        first = (size_t)n < room ? (size_t)n : room;
        body_direct_process(c, direct, first);
        if ((size_t)n > first && c->state == WD_CONN_BODY) /* FastCGI: what came after */
            fcgi_guess_taken(c, &pl, (size_t)n - first);
    } else {
        c->len += (size_t)n;
        conn_process(c);
    }
    /* FastCGI: body-timeout runs from the head's end (conn_fcgi.c: params_end) and the last read
     * that brought body bytes, not from any record: a DATA record a second, or records of other
     * ids, kept a body that stopped coming open for ever (helper-54). */
    if (c->proto == WD_REQ_FCGI && c->state == WD_CONN_BODY && c->body_len != had)
        wd__conn_timer(c, c->cs->group->body_timeout);
    return (size_t)n == asked && (c->state == WD_CONN_HEAD || c->state == WD_CONN_BODY);
}

/* Reads while the reads come back full, up to READ_TURNS of them: a body that streams in (a
 * FastCGI one comes a record of at most 32 KiB a read) then costs the loop one wake-up a turn,
 * not one a read. A short read most likely emptied the socket: the poll says when more come.
 * A 1 MiB POST echo through nginx's fastcgi_pass (-c16, perf stat of both workers for 4 s) made
 * 23.4 epoll_wait calls a request with one read a wake-up, 5.9 with these. */
#define READ_TURNS 16

static void conn_read(wd_conn_t *c)
{
    for (int turn = 0; turn < READ_TURNS && read_once(c); turn++)
        ;
    /* Still reading (level-triggered: if more bytes are waiting, the poll says so at once). */
    if ((c->state == WD_CONN_HEAD || c->state == WD_CONN_BODY) && !(c->events & UV_READABLE) &&
        !wd__conn_fcgi_unsent(c))
        set_events(c, UV_READABLE | UV_DISCONNECT);
}

/* --- writing -------------------------------------------------------------------------------- */

/* Counts a completed response in the scoreboard. */
static void count(wd_conns_t *cs, int status, uint64_t bytes, uint64_t duration_ns)
{
    static const uint64_t bounds[WD_SCORE_BUCKETS] = WD_SCORE_BUCKET_BOUNDS_US;
    wd_score_t *sc = cs->score;
    uint64_t us = duration_ns / 1000;
    int b = 0;

    while (b < WD_SCORE_BUCKETS && us > bounds[b])
        b++;
    wd_score_add(&sc->requests, 1);
    wd_score_add(&sc->status[status >= 100 && status < 600 ? status / 100 : 0], 1);
    wd_score_add(&sc->duration_bucket[b], 1);
    wd_score_add(&sc->duration_sum_us, us);
    wd_score_add(&sc->bytes_sent, bytes);
    wd_score_set(&sc->last_request_unix, (uint64_t)time(NULL));
    if (status == 504)
        wd_score_add(&sc->timeouts, 1);
}

/* Whether bytes the client sent wait in the socket, unread. */
static int bytes_waiting(const wd_conn_t *c)
{
    int n = 0;

    return ioctl(c->fd, FIONREAD, &n) == 0 && n > 0;
}

/* A stopping worker's kept FastCGI connection, its answer just sent: whether to close it now.
 * FastCGI has no way to tell the proxy not to reuse a connection, and a close races the proxy's
 * next request on it (nginx answers 502 for a POST it had written, and does not retry it). So
 * while a running worker of the group can take it, it is kept and handed over at once
 * (response_complete: wd__conn_hand_over), with whatever of the next request waits in the socket:
 * no close at all. Otherwise (the group or wsgid stops) for WD_STOP_FCGI_S after the stop the
 * connection is served on: nginx closes its upstream connections itself after keepalive_requests
 * (1,000), which under load comes soon, and one that goes unused for WD_STOP_IDLE_S closes then.
 * After that, it closes behind its next answer, unless the next request is here already (then it
 * is served first). With 4 clients of GET and POST through fastcgi_keep_conn and 5 rolling
 * restarts (helper-57's t1_keepalive_restart.py): 4-10 failed requests in 13,000 with every idle
 * connection closed at the stop, 3 and 3 with each closed behind its next answer, 0 and 0 with
 * the 2 s; the closes after them still met requests nginx had just written (helper-88: two POSTs
 * answered 502 in 2 of 4 sanitizer runs of test_control's kept-connection test), which the
 * hand-over leaves to a group that stops as a whole. */
static int fcgi_close_at_end(const wd_conn_t *c)
{
    const wd_conns_t *cs = c->cs;

    if (cs->ops->hand_over != NULL && cs->ops->hand_over(cs->owner, c->l, -1, 0, 0, NULL) == 0)
        return 0;       /* kept, and handed over once idle (response_complete) */
    if (cs->stop_final) /* the worker's last turn: nothing more is served */
        return 1;
    if (wd_now_ns() - c->cs->stop_ns < (uint64_t)(WD_STOP_FCGI_S * 1e9))
        return 0;
    return c->len == c->parsed && !bytes_waiting(c);
}

static void response_complete(wd_conn_t *c)
{
    wd_conns_t *cs = c->cs;
    /* A client that shut its side down gets the requests it sent before, and no more: those in
     * the read buffer, and those still in the socket (a body is read up to its end, no further:
     * wd__conn_body_direct). A stopping worker keeps an HTTP connection whose answer promised
     * it (its head was framed before the stop) and, for a while, a FastCGI one: see
     * wd_conns_shutdown. */
    int keep = c->out.keep_alive > 0 && !c->out.aborted &&
               !(cs->stopping && c->proto == WD_REQ_FCGI && fcgi_close_at_end(c)) &&
               (c->proto == WD_REQ_HTTP || c->proto == WD_REQ_FCGI) &&
               (!c->peer_shut || c->len > c->parsed || bytes_waiting(c));
    /* A thread stuck before it sent a byte was answered 504 by the loop (conn_timeout.c). */
    int status = c->abandoned && c->out.sent == 0 ? 504 : c->dispatched ? c->req.status : c->status;
    int linger = !c->dispatched && c->status >= 400 && !c->out.aborted;
    int reset = c->out.keep_alive == WD_OUT_RESET && !c->out.aborted;
    size_t leftover;

    if (!c->logged)
        wd__conn_access_log(c, status, c->out.sent);
    c->logged = 0;
    note_app_done(c);
    c->served++;
    count(cs, c->abandoned && !c->abandoned_whole ? 504 : status, c->out.sent,
          c->dispatched ? wd__conn_ran_ns(c) : 0);
    c->abandoned = 0;
    c->abandoned_whole = 0;
    c->given_up = 0;
    c->dispatched = 0;
    c->app_done = 0;
    wd__conn_body_clear(c);
    /* A kept one waits for its next request from when the client has its answer: the
     * producer's finish, unless the loop then waited for the client's room to send the rest (the
     * clock, once for such an answer): an answer read 3 s after the app had finished it was said
     * idle 3 s at a hand-over, and a keepalive-timeout of 2 s had the adopter close it at once,
     * under the client's next request. */
    c->idle_ns =
        (c->events & UV_WRITABLE) || c->out.finished_ns == 0 ? wd_now_ns() : c->out.finished_ns;
    wd_out_reset(&c->out);
    if (!keep) {
        if (reset) {
            struct linger lg = {1, 0};

            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        if (linger)
            wd__conn_linger(c);
        else
            wd_conn_close(c);
        return;
    }
    leftover = c->len - c->parsed;
    if (leftover > 0)
        memmove(c->buf, c->buf + c->parsed, leftover);
    c->len = leftover;
    c->parsed = c->head_end = 0;
    c->status = 0;
    if (c->http != NULL)
        wd_http_reset(c->http);
    wd__conn_fcgi_reset(c);
    if (leftover == 0)
        conn_trim(c, 0); /* idle until the next request comes */
    c->state = WD_CONN_HEAD;
    if (cs->stopping && wd__conn_hand_over(c))
        return;
    set_events(c, UV_READABLE | UV_DISCONNECT);
    wd__conn_timer(c, leftover ? cs->group->header_timeout : wd__conn_idle_timeout(cs));
    c->head_timed = leftover > 0;
    conn_process(c);
}

/* The Python thread is done with the request once it has finished the response buffer: its
 * slot counts as free from then on, however long the client takes to read the rest. */
static void note_app_done(wd_conn_t *c)
{
    if (c->dispatched && !c->app_done && wd_out_is_finished(&c->out)) {
        c->app_done = 1;
        wd_handoff_done(c->cs->handoff, &c->req);
        c->cs->ops->request_done(c->cs->owner);
    }
}

static void conn_send(wd_conn_t *c)
{
    int want_write = 0;
    int r;

    note_app_done(c);
    r = wd_out_send(&c->out, c->fd, &want_write);

    if (r < 0) {
        if (c->out.file_error != 0) {
            /* The file the app handed to wsgi.file_wrapper, not the client (helper-56: it was
             * told as a client gone, at debug level). */
            wd_log_peer(WD_LOG_ERROR,
                        "[req %s] peer %s: cannot read the file given to wsgi.file_wrapper: %s; "
                        "the answer was cut after %llu bytes",
                        c->dispatched ? c->req.id : "-", wd__conn_peer(c),
                        c->out.file_error == EIO ? "it ended before its length (was it truncated?)"
                                                 : strerror(c->out.file_error),
                        (unsigned long long)c->out.sent);
        } else {
            /* The client is gone; the app (if still running) gets -EPIPE at its next write. */
            wd_log_debug("peer %s: write failed: %s", wd__conn_peer(c), strerror(-r));
        }
        r = wd_out_is_finished(&c->out);
        if (r == 0) {
            c->given_up = 1;
            set_events(c, 0);
            return;
        }
    }
    if (r == 1) {
        response_complete(c);
        return;
    }
    if (want_write)
        set_events(c, UV_WRITABLE | app_watch(c));
    else if (c->events & UV_WRITABLE)
        set_events(c, app_watch(c));
    if (!want_write) {
        wd__conn_timer(c, 0);
    } else if (c->out.sent != c->last_sent || !uv_is_active((uv_handle_t *)&c->timer)) {
        /* send-timeout runs from the last write that made progress. */
        c->last_sent = c->out.sent;
        wd__conn_timer(c, c->cs->group->send_timeout);
    }
}

/* The client is gone or stuck, or the proxy aborted the request: drop the response. A request
 * that still waits for a thread never runs: the loop takes it back and ends it here, so that an
 * overloaded worker does not spend its threads on answers nobody reads. The connection of one a
 * thread has closes once the thread lets go of it (at once if it already has). */
static void conn_abandon(wd_conn_t *c)
{
    wd_out_abort(&c->out);
    if (c->dispatched && !c->app_done && wd_handoff_remove(c->cs->handoff, &c->req)) {
        wd__conn_finish_here(c, 0);
        c->req.status = 499; /* nginx's "client closed request", in the access log */
        response_complete(c);
        return;
    }
    note_app_done(c);
    if (wd_out_is_finished(&c->out)) {
        response_complete(c);
    } else {
        c->given_up = 1;
        set_events(c, 0);
    }
}

/* What the poll watches while the app runs: the client hanging up and, on FastCGI, the proxy's
 * records (an ABORT_REQUEST) while the buffer has room for them. */
static int app_watch(const wd_conn_t *c)
{
    return UV_DISCONNECT | (c->proto == WD_REQ_FCGI && c->len < c->cap ? UV_READABLE : 0);
}

void wd_conn_ready(wd_handoff_node_t *node)
{
    wd_conn_t *c = node_conn(node);

    if (c->state == WD_CONN_APP)
        conn_send(c);
}

/* Whether the peer has closed both ways, so that nobody can read an answer: a unix socket whose
 * peer closed it (POLLHUP), or a TCP one reset. libuv reports both as UV_DISCONNECT, as it does a
 * FIN alone (shutdown(SHUT_WR), how some clients end a request and then read the answer), and
 * the first is read as a readable socket while the poll still watches for reads. nginx
 * closes its uwsgi_pass connection when the client goes: on a unix socket this is how a request
 * still waiting for a thread learns it, and never runs. (Over TCP a close is a FIN until the first
 * write is answered with a reset: seen then.) */
int wd__conn_peer_gone(const wd_conn_t *c)
{
    struct pollfd p = {.fd = c->fd, .events = 0};

    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

static void conn_poll_cb(uv_poll_t *p, int status, int events)
{
    wd_conn_t *c = p->data;
    int fcgi_next = 0; /* records past the request's were read: the next request's */

    if (c->state == WD_CONN_CLOSED)
        return;
    if (c->state == WD_CONN_LINGER) {
        wd__conn_drain(c);
        return;
    }
    if (c->state == WD_CONN_APP) {
        if (wd_out_is_shut(&c->out)) {
            /* Its thread sent the answer whole and shut the connection, and told the loop quietly:
             * the peer's hang-up (or anything else) is not news of a client gone. */
            conn_send(c);
            return;
        }
        if (status < 0) {
            /* The connection failed (reset) while its request runs: abandon the response. */
            if (!wd_out_is_finished(&c->out))
                wd_log_peer(WD_LOG_INFO, "peer %s: client went away during request %s",
                            wd__conn_peer(c), c->dispatched ? c->req.id : "-");
            conn_abandon(c);
            return;
        }
        if (c->proto == WD_REQ_FCGI && (events & (UV_READABLE | UV_DISCONNECT))) {
            /* The proxy aborts a request with ABORT_REQUEST or by closing the connection. */
            if (wd__conn_fcgi_watch(c)) {
                conn_abandon(c);
                return;
            }
            events &= ~(UV_READABLE | UV_DISCONNECT);
            set_events(c, (c->events & UV_WRITABLE) | app_watch(c));
            fcgi_next = c->len > c->parsed;
        }
        /* The poll still watches for reads after dispatch (conn_dispatch): a close shows as a
         * read first. */
        if ((events & (UV_READABLE | UV_DISCONNECT)) && !c->peer_shut && wd__conn_peer_gone(c)) {
            wd_log_peer(WD_LOG_INFO, "peer %s: client went away during request %s%s",
                        wd__conn_peer(c), c->dispatched ? c->req.id : "-",
                        wd_out_is_finished(&c->out) ? "" : " (its answer is dropped)");
            conn_abandon(c);
            return;
        }
        if (events & UV_DISCONNECT) {
            /* The client shut its side down (FIN). That is how some clients end their request
             * (shutdown(SHUT_WR)), and they read the answer: keep it coming, and stop watching
             * for reads, which the FIN now always allows. If the client is gone for good, the
             * first write fails and the poll reports it (status < 0 above); after the response
             * the read sees the end and the connection closes. */
            c->peer_shut = 1;
            set_events(c, c->events);
            events &= ~UV_READABLE;
        }
        if (events & UV_WRITABLE) {
            /* The next request's records were read above, in the same event: this answer's end
             * must then wake the loop, as below. It was lazy news, left to the lazy timer (1-8
             * ms) while the next request waited, whenever the peer sent it as the socket took
             * more of this answer (test_pipelining). One lock, for an event that read records. */
            if (fcgi_next)
                (void)wd_out_finished_or_wait(&c->out);
            conn_send(c);
        } else if (wd_out_finished_or_wait(&c->out)) {
            /* The next request came before the loop took the news of the last response (a lazy
             * one, see wd_out_finish): complete it now and read on. */
            conn_send(c);
            if (c->state == WD_CONN_HEAD)
                conn_read(c);
        } else if (events & UV_READABLE) {
            set_events(c, c->events & ~UV_READABLE); /* read the next request later */
        }
        return;
    }
    if (status < 0) {
        wd_conn_close(c);
        return;
    }
    if (wd__conn_fcgi_unsent(c)) {
        if (wd__conn_fcgi_send_unsent(c) != 0)
            return;
        conn_process(c); /* the records that waited behind them */
        if (c->state != WD_CONN_HEAD && c->state != WD_CONN_BODY)
            return;
    }
    conn_read(c);
}

/* A connection with nothing of a request read and nothing to send. A FastCGI request's records
 * are taken out of the buffer as they come: one on its way leaves it empty. One a Python thread
 * keeps and was asked to close (park_close) is as good as closed: not counted again. */
static int idle_now(const wd_conn_t *c)
{
    return c->state == WD_CONN_HEAD && c->len == 0 && !c->fcgi.active && !c->park_close &&
           c->fcgi.unsent_len == 0;
}

/* A keep-alive connection waiting between requests: its client knows to retry on a new
 * connection if it is closed. A fresh one has a request on its way (nginx connects and sends at
 * once). */
static int idle_keepalive(const wd_conn_t *c)
{
    return (c->served > 0 || c->adopted) && idle_now(c);
}

/* A connection that has sent nothing yet since it was made (a browser's preconnect, the idle pool
 * of HAProxy or Caddy, or a proxy's request on its way): its first header-timeout runs from its
 * accept (wd_conn_t.made_ms). */
static int idle_fresh(const wd_conn_t *c)
{
    return c->served == 0 && !c->adopted && c->proto == 0 && idle_now(c);
}

/* A FastCGI connection on which only management records came (GET_VALUES), answered: it waits
 * for its first request as a kept one does (conn_fcgi.c), and its proxy may write one at any
 * time. */
static int idle_fcgi_asked(const wd_conn_t *c)
{
    return c->proto == WD_REQ_FCGI && idle_now(c);
}

/* Whether bytes the client sent wait in the socket, unread (for conn_timeout.c). */
int wd__conn_bytes_waiting(const wd_conn_t *c)
{
    return bytes_waiting(c);
}

/* How long a connection may stay idle between requests: keepalive-timeout, or STOP_IDLE once the
 * worker stops (wd_conns_shutdown). */
double wd__conn_idle_timeout(const wd_conns_t *cs)
{
    double t = cs->group->keepalive_timeout;

    return cs->stopping && (t <= 0 || t > WD_STOP_IDLE_S) ? WD_STOP_IDLE_S : t;
}

/* A stopping worker's idle kept connection goes to a running worker of its group, which reads
 * the proxy's next request from it as from any connection it accepted: no close that the proxy's
 * next request could meet (see wd_conns_shutdown). Only one between requests (its answer sent,
 * nothing read that is not parsed: what waits in the socket goes along), from a proxy that speaks
 * HTTP or FastCGI, with the client its PROXY header named (proxy-protocol: the header comes once
 * a connection, and the taker would wait for another; before, such a group handed none over,
 * closing them 0.5 s after the stop); and one that
 * has sent nothing yet (idle_fresh), of any protocol, or only FastCGI management records
 * (idle_fcgi_asked): it was closed 0.5 s after the stop
 * (conn_shutdown), and the request a client sends a moment after connecting (a browser's
 * preconnect on a direct HTTP group, HAProxy's or Caddy's idle pool) met the close. 1 = handed
 * over (closed here); a parked one is handed over by its thread, once it lets go (0 till then). */
int wd__conn_hand_over(wd_conn_t *c)
{
    wd_conns_t *cs = c->cs;
    int fresh = idle_fresh(c), rc;
    uint64_t idle_ms;
    wd_conn_origin_t origin = {.port = 0};

    hand_wait(c, 0); /* tried now: it waits again only if the way is still full */

    /* One given back was handed over and none took it: handing it over again went back and
     * forth, each time its 0.5 s anew, till the worker's exit. */
    if (!cs->stopping || cs->ops->hand_over == NULL ||
        !(fresh || idle_keepalive(c) || idle_fcgi_asked(c)) || c->peer_shut ||
        c->adopted == WD_CONN_BACK ||
        (c->proto != WD_REQ_HTTP && c->proto != WD_REQ_FCGI && !c->adopted && !fresh))
        return 0;
    if (c->park_owner != NULL) {
        /* The thread that waits on it hands it over (wd_conn_park_cb); till then it stays. */
        if (cs->ops->hand_over(cs->owner, c->l, -1, 0, 0, NULL) == 0) {
            c->park_hand = 1;
            wd_handoff_evict(cs->handoff, c->park_owner);
        }
        return 0;
    }
    if (fresh) /* its age, in the loop's time as its timer counts it */
        idle_ms = uv_now(cs->loop) - c->made_ms;
    else
        idle_ms = c->idle_ns ? (wd_now_ns() - c->idle_ns) / 1000000 : 0;
    if (cs->group->proxy_protocol && !c->proxy_pending) { /* the client its header named */
        memcpy(origin.remote, c->remote, sizeof origin.remote);
        origin.port = c->remote_port;
        origin.trusted = c->trusted;
    }
    rc = cs->ops->hand_over(cs->owner, c->l, c->fd, idle_ms, fresh,
                            cs->group->proxy_protocol && !c->proxy_pending ? &origin : NULL);
    if (rc == -EAGAIN)
        hand_wait(c, 1);
    if (rc < 0)
        return 0;
    cs->handed_over++;
    wd_log_debug("peer %s: idle connection (%s) handed over to a running worker", wd__conn_peer(c),
                 fresh ? "nothing sent on it yet" : "kept");
    wd_conn_close(c);
    return 1;
}

/* Whether c waits for room on the worker's way to the master to be handed over: its socket to
 * the master takes some 280 "adopt" lines with their connections, and a worker stopping with
 * more idle connections than that tried the others again at their STOP_IDLE, and closed those
 * that did not fit then either (40 of 600), under their clients' next requests. One that waits
 * is served if a request comes meanwhile, and is handed over as soon as the way has room
 * (wd_conns_hand_over_waiting), or at the end of its STOP_IDLE, which it then waits anew
 * (conn_timeout.c); the worker lives on till it has gone (its graceful time at most). */
static void hand_wait(wd_conn_t *c, int on)
{
    if (c->hand_wait == on)
        return;
    c->hand_wait = on;
    if (on)
        c->cs->hand_waiting++;
    else
        c->cs->hand_waiting--;
}

size_t wd_conns_hand_over_waiting(wd_conns_t *cs)
{
    for (wd_conn_t *c = cs->tail, *prev; c != NULL && cs->hand_waiting > 0; c = prev) {
        prev = c->prev;
        if (c->hand_wait && !wd__conn_hand_over(c) && c->hand_wait)
            break; /* full again */
    }
    return cs->hand_waiting;
}

static void conn_shutdown(wd_conn_t *c)
{
    /* An idle connection goes to a running worker (wd__conn_hand_over), or else gets STOP_IDLE:
     * a kept one, and one that has sent nothing yet (a fresh one, or a FastCGI one that asked
     * only GET_VALUES: before, they held a stopping worker until keepalive-timeout or
     * header-timeout, past its graceful time; helper-58). The others are served, within
     * header-timeout. */
    if (idle_now(c) && !wd__conn_hand_over(c))
        wd__conn_timer(c, WD_STOP_IDLE_S);
}

int wd_conns_any_idle(const wd_conns_t *cs)
{
    for (const wd_conn_t *c = cs->tail; c != NULL; c = c->prev)
        if (idle_keepalive(c))
            return 1;
    return 0;
}

size_t wd_conns_close_idle(wd_conns_t *cs, size_t want, size_t *asked)
{
    size_t closed = 0, n_asked = 0;

    for (wd_conn_t *c = cs->tail, *prev; c != NULL && closed + n_asked < want; c = prev) {
        prev = c->prev;
        if (idle_keepalive(c)) {
            wd_conn_close(c);
            if (c->park_close)
                n_asked++; /* a Python thread keeps it: closed when that thread gets to it */
            else
                closed++;
        }
    }
    if (asked != NULL)
        *asked = n_asked;
    return closed;
}

/* A stopping worker closes no connection a proxy may be sending a request on. Closing the idle
 * keep-alive ones at once lost requests: nginx had written one on a connection as it closed
 * (proxy_pass with upstream keepalive, fastcgi_keep_conn), and answers 502 for a POST, which it
 * does not retry (helper-57: 4-10 failed requests in 13,000 over 5 restarts). So from the stop:
 *  - an HTTP answer's head says "Connection: close" (request.h: wd_req_stopping), and the
 *    connection closes behind it; requests already read behind it get no answer, which a client
 *    that reads "close" knows to send again (RFC 9112 9.3.2);
 *  - a kept connection idle between requests, and one that has sent nothing yet, goes to a
 *    running worker of the group, if one runs: wd__conn_hand_over; the rest of this is for when
 *    none does (the group or wsgid stops);
 *  - a kept FastCGI connection is handed over once its answer is sent, or else served on for a
 *    while, then closes behind an answer (FastCGI has no way to say close: fcgi_close_at_end);
 *  - an idle connection is served if a request comes within STOP_IDLE, and closed when none has:
 *    nginx reuses its most recently freed connections first, so under load the old ones carry
 *    one more request each, their answers saying close, and the rest have gone unused for
 *    STOP_IDLE when they close. A request already in the socket then is served, not closed on
 *    (conn_timeout.c), as is one that wakes a parked thread being evicted (conn_park.c). */
void wd_conns_shutdown(wd_conns_t *cs)
{
    cs->stop_ns = wd_now_ns();
    cs->stopping = 1;
    for (wd_conn_t *c = cs->list, *next; c; c = next) {
        next = c->next;
        conn_shutdown(c);
    }
}

/* --- for the module's other files (conn_int.h) ---------------------------------------------- */

/* The per-request path above calls the static functions, which the compiler may inline (not so an
 * exported function of a -fPIC library); the answers and the timeouts (conn_answer.c,
 * conn_timeout.c), off that path, and a parked thread (conn_park.c: one call to each a request)
 * call them through these. */
void wd__conn_set_events(wd_conn_t *c, int events)
{
    set_events(c, events);
}

void wd__conn_send(wd_conn_t *c)
{
    conn_send(c);
}

void wd__conn_abandon(wd_conn_t *c)
{
    conn_abandon(c);
}

void wd__conn_read(wd_conn_t *c)
{
    conn_read(c);
}
