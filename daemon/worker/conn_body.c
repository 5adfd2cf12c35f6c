/* A request's body, read whole before dispatch: in memory up to body-buffer-size while the
 * worker's body-memory-limit has room, then in an unlinked temp file (a spare one of the worker's
 * when it has one). Part of the connection module (conn.h); only the loop thread runs it.
 *
 * Why 1M in memory by default (64K before): a 1 MiB POST echoed back, direct at -c16, spent 26 %
 * of the workers' CPU writing the body to its file (ext4) and 15 % reading it back (perf record);
 * uWSGI reads the body from the socket into the app's bytes. The budget bounds what many
 * connections sending big bodies at once can hold. */
#include "conn.h"
#include "conn_int.h"
#include "alloc.h"
#include "bigblock.h"
#include "log.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A body buffer larger than this is not kept for the next request, and counts against the
 * worker's body-memory-limit while it is held. One up to it is kept while the next request's
 * bytes wait already (pipelined); an idle connection keeps only BODY_IDLE_KEEP (conn.c:
 * conn_trim). */
#define BODY_KEEP 65536

/* The body length the request announced (Content-Length, CONTENT_LENGTH), or 0. */
static uint64_t body_announced(const wd_conn_t *c)
{
    const wd_http_t *h = wd__conn_http(c);

    if (c->body_expect)
        return c->body_expect;
    return h != NULL && h->has_content_length ? h->content_length : 0;
}

/* The budget a buffer of cap bytes holds. */
static uint64_t held(size_t cap)
{
    return cap > BODY_KEEP ? cap : 0;
}

/* The worker's body buffers held grow or shrink (loop thread only; the scoreboard shows them). */
static void body_memory_set(wd_conns_t *cs, uint64_t v)
{
    cs->body_memory = v;
    wd_score_set(&cs->score->body_memory, v);
}

/* The worker's request bodies in temp files (the scoreboard shows them): each body's whole length
 * while it is in its file, from body_to_file to wd__conn_body_clear. */
static void body_disk_set(wd_conns_t *cs, uint64_t v)
{
    cs->body_disk = v;
    wd_score_set(&cs->score->body_disk, v);
}

/* Gives back n bytes of body-disk-limit that body_disk_take took. */
static void body_disk_give(wd_conns_t *cs, uint64_t n)
{
    body_disk_set(cs, cs->body_disk - n);
}

/* n more bytes of a body go to its file, if body-disk-limit has room for them; else 503 (the
 * request is not at fault: the worker's disk is taken by others' bodies) and -1. Without it, 200
 * connections that each sent 1 MiB of a body and held took 200 MiB of the worker's TMPDIR, and a
 * small TMPDIR filled cut other clients' answers short (helper-54). */
static int body_disk_take(wd_conn_t *c, uint64_t n)
{
    wd_conns_t *cs = c->cs;

    if (cs->body_disk + n > cs->group->body_disk_limit) {
        wd_log_peer(WD_LOG_WARN,
                    "peer %s: request bodies in temp files hold body-disk-limit (%llu bytes): "
                    "answered 503",
                    wd__conn_peer(c), (unsigned long long)cs->group->body_disk_limit);
        c->body_error = 503;
        return -1;
    }
    body_disk_set(cs, cs->body_disk + n);
    return 0;
}

static void body_mem_free(char *p)
{
    if (p != NULL && !wd_big_free(p))
        free(p);
}

/* Grows the buffer to hold need bytes (need <= body-buffer-size): 0, or -1 when the worker's
 * body-memory-limit has no room for it (the body goes to a file then). A big buffer is a block
 * kept for reuse (bigblock.h): a fresh mapping costs a page fault a page. */
static int body_grow(wd_conn_t *c, size_t need)
{
    const wd_group_conf_t *g = c->cs->group;
    size_t cap = c->body_cap ? c->body_cap * 2 : 4096;
    uint64_t announced = body_announced(c);
    char *p;

    /* Past BODY_KEEP bytes the client has shown that it sends its body: the buffer grows to the
     * length it announced at once, one copy instead of one a doubling (a 1 MiB body was copied
     * 1.9 MiB over on its way in). Growing by at most four times what came instead (so that a
     * client that stalls holds less of the budget) cost 8-23 % more CPU a 1 MiB POST echo
     * (bench/run --tests post --paths ka, 3 alternated pairs: 558/571/540 -> 604/624/667 us). A
     * stalled body holds its share of body-memory-limit until body-timeout; of RSS, only the pages
     * its bytes reached. */
    if (need > BODY_KEEP && announced > cap)
        cap = announced < g->body_buffer_size ? (size_t)announced : (size_t)g->body_buffer_size;
    while (cap < need)
        cap *= 2;
    /* A buffer of an odd size (a small body's, kept from an earlier request: http_head_complete)
     * doubles past BODY_KEEP: held to it while that suffices, it stays outside the budget. */
    if (need <= BODY_KEEP && cap > BODY_KEEP)
        cap = BODY_KEEP;
    if (cap > g->body_buffer_size)
        cap = (size_t)g->body_buffer_size;
    if (held(cap) > held(c->body_cap) &&
        c->cs->body_memory + held(cap) - held(c->body_cap) > g->body_memory_limit)
        return -1;
    p = cap >= WD_BIG_MIN ? wd_big_alloc(cap) : NULL;
    if (p != NULL || wd_big_cap(c->body_mem) > 0) {
        if (p == NULL)
            p = xmalloc(cap);
        if (c->body_len > 0)
            memcpy(p, c->body_mem, (size_t)c->body_len);
        body_mem_free(c->body_mem);
    } else {
        p = xrealloc(c->body_mem, cap);
    }
    body_memory_set(c->cs, c->cs->body_memory + held(cap) - held(c->body_cap));
    c->body_mem = p;
    c->body_cap = cap;
    return 0;
}

static int body_to_file(wd_conn_t *c)
{
    int fd;
    size_t done = 0;

    if (body_disk_take(c, c->body_len) < 0)
        return -1;
    fd = c->cs->ops->body_file(c->cs->owner);
    if (fd < 0)
        fd = wd_tmpfile(c->cs->tmpdir, "body");
    if (fd < 0) {
        body_disk_give(c->cs, c->body_len);
        wd_log_peer(WD_LOG_ERROR,
                    "peer %s: cannot create a temp file in %s for a request body: %s; "
                    "check that it exists and is writable",
                    wd__conn_peer(c), c->cs->tmpdir, strerror(-fd));
        return -1;
    }
    while (done < c->body_len) {
        ssize_t k = write(fd, c->body_mem + done, (size_t)c->body_len - done);

        if (k <= 0) {
            wd_log_peer(WD_LOG_ERROR, "peer %s: cannot write a request body to %s: %s",
                        wd__conn_peer(c), c->cs->tmpdir, k < 0 ? strerror(errno) : "short write");
            body_disk_give(c->cs, c->body_len);
            close(fd);
            return -1;
        }
        done += (size_t)k;
    }
    c->body_fd = fd;
    if (c->body_cap > BODY_KEEP)
        wd__conn_body_free(c); /* its bytes are in the file now: the budget is free */
    return 0;
}

/* Reading straight into the body's buffer. A body of known length that stays in memory went
 * through the connection's read buffer, which stays as small as the head needed (8 KiB): a read
 * and a copy for every 8 KiB, and a wake-up of the loop for every other one. A 1 MiB POST echoed
 * behind nginx keep-alive (-c16, 2 x 4, 5 alternated pairs of 5 s runs, perf stat over each
 * tree) cost 230-238 syscalls and 803-1,030 us of CPU a request that way (median 988), and
 * 34.6-35.4 and 671-831 us (median 749) read here, up to the body's end at once.
 *
 * The buffer grows as body_grow grows it for bytes that came: up to BODY_KEEP bytes while fewer
 * came (outside body-memory-limit: what a connection may keep while pipelined requests wait), then,
 * once BODY_KEEP bytes did come, to the announced length at once. A client that announces a large
 * body and sends a few bytes of it holds no more of the budget than it did through the read buffer.
 * FastCGI: within a STDIN record taken as it comes (conn_fcgi.c), up to the record's end. Not for
 * a chunked body (its framing is among the bytes), and not while unparsed bytes wait in the read
 * buffer. */
char *wd__conn_body_direct(wd_conn_t *c, size_t *room)
{
    const wd_group_conf_t *g = c->cs->group;
    uint64_t announced = body_announced(c), left, want;

    if (c->state != WD_CONN_BODY || c->parsed != c->len || c->body_fd >= 0 || c->proxy_pending ||
        announced > g->body_buffer_size || announced <= c->body_len)
        return NULL;
    if (c->proto == WD_REQ_HTTP) {
        if (!c->http->has_content_length || c->http->chunked || c->http->state != WD_HTTP_BODY)
            return NULL;
    } else if (c->proto == WD_REQ_FCGI) {
        if (c->fcgi.stdin_left == 0)
            return NULL;
    } else if (c->proto != WD_REQ_UWSGI) {
        return NULL;
    }
    left = announced - c->body_len;
    want = c->body_len < BODY_KEEP ? BODY_KEEP - c->body_len : BODY_KEEP;
    if (want > left)
        want = left;
    if (c->body_len + want > c->body_cap && body_grow(c, (size_t)(c->body_len + want)) < 0)
        return NULL; /* the budget is spent: the read buffer's way, then the body's file */
    *room = c->body_cap - (size_t)c->body_len;
    if (*room > left)
        *room = (size_t)left;
    if (c->proto == WD_REQ_FCGI && *room > c->fcgi.stdin_left)
        *room = c->fcgi.stdin_left;
    return c->body_mem + c->body_len;
}

size_t wd__conn_body_direct_space(const wd_conn_t *c)
{
    uint64_t left = body_announced(c) - c->body_len, cap = c->body_cap - c->body_len;

    return (size_t)(left < cap ? left : cap);
}

int wd__conn_body_append(wd_conn_t *c, const char *p, size_t n)
{
    const wd_group_conf_t *g = c->cs->group;

    if (g->limit_request_body && c->body_len + n > g->limit_request_body) {
        c->body_error = 413;
        return -1;
    }
    /* A body announced longer than the buffer goes to its file from the start. */
    if (c->body_fd < 0 && c->body_len + n <= g->body_buffer_size &&
        body_announced(c) <= g->body_buffer_size &&
        (c->body_len + n <= c->body_cap || body_grow(c, (size_t)c->body_len + n) == 0)) {
        /* Bytes read in place (wd__conn_body_direct) always take this branch: they fit in the
         * buffer as it is, which is never larger than body-buffer-size. */
        if (p != c->body_mem + c->body_len)
            memcpy(c->body_mem + c->body_len, p, n);
        c->body_len += n;
        return 0;
    }
    assert(c->body_mem == NULL || p < c->body_mem || p >= c->body_mem + c->body_cap);
    if (c->body_fd < 0 && body_to_file(c) < 0) {
        if (c->body_error == 0)
            c->body_error = 500;
        return -1;
    }
    if (body_disk_take(c, n) < 0)
        return -1;
    while (n > 0) {
        ssize_t k = write(c->body_fd, p, n);

        if (k <= 0) {
            wd_log_peer(WD_LOG_ERROR, "peer %s: cannot write a request body to %s: %s",
                        wd__conn_peer(c), c->cs->tmpdir, k < 0 ? strerror(errno) : "short write");
            body_disk_give(c->cs, n); /* what did not go: the rest counts */
            c->body_error = 500;
            return -1;
        }
        p += k;
        n -= (size_t)k;
        c->body_len += (uint64_t)k;
    }
    return 0;
}

void wd__conn_body_clear(wd_conn_t *c)
{
    if (c->body_fd >= 0) {
        body_disk_give(c->cs, c->body_len);
        c->cs->ops->body_file_done(c->cs->owner, c->body_fd, c->body_len);
    }
    c->body_fd = -1;
    c->body_len = 0;
    c->body_expect = 0;
    c->body_error = 0;
    /* A large body buffer is not kept for the next request. */
    if (c->body_cap > BODY_KEEP)
        wd__conn_body_free(c);
}

/* What an idle connection keeps of its body buffer: one that fits a small body (a form), which the
 * next such body reuses; a larger one goes back (conn.c: conn_trim). */
#define BODY_IDLE_KEEP 4096

size_t wd__conn_body_idle(wd_conn_t *c, int whole)
{
    size_t n = c->body_cap;

    if (n == 0 || (!whole && n <= BODY_IDLE_KEEP))
        return 0;
    wd__conn_body_free(c);
    return n;
}

void wd__conn_body_free(wd_conn_t *c)
{
    body_memory_set(c->cs, c->cs->body_memory - held(c->body_cap));
    body_mem_free(c->body_mem);
    c->body_mem = NULL;
    c->body_cap = 0;
}

int wd__conn_body_refused(wd_conn_t *c, uint64_t announced)
{
    const wd_group_conf_t *g = c->cs->group;

    if (g->limit_request_body == 0 || announced <= g->limit_request_body)
        return 0;
    wd_log_peer(
        WD_LOG_INFO, "peer %s: request body of %llu bytes over limit-request-body (%llu): 413",
        wd__conn_peer(c), (unsigned long long)announced, (unsigned long long)g->limit_request_body);
    wd__conn_fail(c, 413);
    return 1;
}
