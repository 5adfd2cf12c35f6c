/* A request's body, read whole before dispatch: in memory up to body-buffer-size, then in an
 * unlinked temp file (a spare one of the worker's when it has one). Part of the connection module
 * (conn.h); only the loop thread runs it. */
#include "conn.h"
#include "conn_int.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A body buffer larger than this is not kept for the next request. */
#define BODY_KEEP 65536

static int body_to_file(wd_conn_t *c)
{
    int fd = c->cs->ops->body_file(c->cs->owner);
    size_t done = 0;

    if (fd < 0)
        fd = wd_tmpfile(c->cs->tmpdir, "body");
    if (fd < 0) {
        wd_log_error("peer %s: cannot create a temp file in %s for a request body: %s; "
                     "check that it exists and is writable",
                     wd__conn_peer(c), c->cs->tmpdir, strerror(-fd));
        return -1;
    }
    while (done < c->body_len) {
        ssize_t k = write(fd, c->body_mem + done, (size_t)c->body_len - done);

        if (k <= 0) {
            wd_log_error("peer %s: cannot write a request body to %s: %s", wd__conn_peer(c),
                         c->cs->tmpdir, k < 0 ? strerror(errno) : "short write");
            close(fd);
            return -1;
        }
        done += (size_t)k;
    }
    c->body_fd = fd;
    return 0;
}

int wd__conn_body_append(wd_conn_t *c, const char *p, size_t n)
{
    const wd_group_conf_t *g = c->cs->group;

    if (g->limit_request_body && c->body_len + n > g->limit_request_body) {
        c->body_error = 413;
        return -1;
    }
    if (c->body_fd < 0 && c->body_len + n <= g->body_buffer_size) {
        if (c->body_len + n > c->body_cap) {
            size_t cap = c->body_cap ? c->body_cap * 2 : 4096;

            while (cap < c->body_len + n)
                cap *= 2;
            if (cap > g->body_buffer_size)
                cap = (size_t)g->body_buffer_size;
            c->body_mem = xrealloc(c->body_mem, cap);
            c->body_cap = cap;
        }
        memcpy(c->body_mem + c->body_len, p, n);
        c->body_len += n;
        return 0;
    }
    if (c->body_fd < 0 && body_to_file(c) < 0) {
        c->body_error = 500;
        return -1;
    }
    while (n > 0) {
        ssize_t k = write(c->body_fd, p, n);

        if (k <= 0) {
            wd_log_error("peer %s: cannot write a request body to %s: %s", wd__conn_peer(c),
                         c->cs->tmpdir, k < 0 ? strerror(errno) : "short write");
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
    if (c->body_fd >= 0)
        c->cs->ops->body_file_done(c->cs->owner, c->body_fd, c->body_len);
    c->body_fd = -1;
    c->body_len = 0;
    c->body_expect = 0;
    c->body_error = 0;
    /* A large body buffer is not kept for the next request. */
    if (c->body_cap > BODY_KEEP) {
        free(c->body_mem);
        c->body_mem = NULL;
        c->body_cap = 0;
    }
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
