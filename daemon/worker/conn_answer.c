/* Answers the loop makes itself, without the app: an error answer to a request it will not
 * dispatch (400, 408, 413, 431...), after which the connection lingers, then closes; and the 504
 * for a dispatched request that no Python thread took in time. Part of the connection module
 * (conn.h); only the loop thread runs it. */
#include "conn.h"
#include "conn_int.h"

#include "httpdate.h"
#include "../../protocol/fastcgi.h"
#include "../../protocol/response.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINGER_MS 2000

void wd__conn_finish_here(wd_conn_t *c, int keep_alive)
{
    wd_out_wake_cb wake = c->out.wake;

    c->out.wake = NULL;
    wd_out_finish(&c->out, keep_alive);
    c->out.wake = wake;
}

/* The Date line of an answer to an HTTP client (wsgid is the origin server: RFC 9110 6.6.1), in
 * date; NULL for one behind a proxy, which adds its own. */
static const char *http_date(const wd_conn_t *c, char *date)
{
    return c->proto == WD_REQ_HTTP && wd_http_date_now(date) > 0 ? date : NULL;
}

/* Queues a whole response the loop made itself and starts sending it. */
static void conn_respond(wd_conn_t *c, const char *bytes, size_t n, int keep_alive)
{
    wd_out_write(&c->out, bytes, n);
    wd__conn_finish_here(c, keep_alive);
    wd__conn_send(c);
}

/* Answers a dispatched request that no Python thread took (queue-timeout), as if the app had.
 * FastCGI: the 504 in STDOUT, which is what nginx, Apache, HAProxy and Caddy show (none of them
 * acts on END_REQUEST's protocol status), then END_REQUEST with FCGI_OVERLOADED, the spec's
 * "rejected for lack of resources", for a client that does. */
void wd__conn_answer(wd_conn_t *c, int status)
{
    char buf[512], date[WD_DATE_LINE_MAX];
    const wd_http_t *h = wd__conn_http(c);
    int keep = h != NULL && h->keep_alive && !h->is_head && !c->cs->stopping;
    int minor = h != NULL ? (int)h->http_minor : 1;
    size_t n;

    if (c->proto == WD_REQ_FCGI) {
        keep = c->fcgi.keep_conn;
        n = wd_fcgi_canned(buf, sizeof buf, c->fcgi.id, status, WD_FCGI_OVERLOADED);
    } else {
        n = wd_response_canned_dated(buf, sizeof buf, status, minor, keep, http_date(c, date));
    }

    c->req.head_len = n;
    conn_respond(c, buf, n, keep);
}

/* Answers an error before any request was dispatched, and closes the connection after it. */
static void conn_fail_bytes(wd_conn_t *c, int status, const char *bytes, size_t n)
{
    c->status = status;
    c->dispatched = 0;
    c->state = WD_CONN_APP;
    wd_out_reset(&c->out);
    conn_respond(c, bytes, n, 0);
}

void wd__conn_fail(wd_conn_t *c, int status)
{
    char buf[512], date[WD_DATE_LINE_MAX];
    const wd_http_t *h = wd__conn_http(c);
    int minor = h != NULL && h->http_major == 1 ? (int)h->http_minor : 1;

    if (c->proto == WD_REQ_FCGI && c->fcgi.unsent_len > 0) {
        /* Part of a record the loop made waits for the socket (conn_fcgi.c: send_now): an answer
         * now could land in the middle of it (helper-55). */
        wd_conn_close(c);
        return;
    }
    if (c->proto == WD_REQ_FCGI) {
        conn_fail_bytes(
            c, status, buf,
            wd_fcgi_canned(buf, sizeof buf, c->fcgi.id, status, WD_FCGI_REQUEST_COMPLETE));
        return;
    }

    conn_fail_bytes(
        c, status, buf,
        wd_response_canned_dated(buf, sizeof buf, status, minor, 0, http_date(c, date)));
}

/* The uwsgi socket got something else: say what, in terms an operator can act on. */
void wd__conn_fail_text(wd_conn_t *c, int status, const char *text)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, wd_response_reason(status), strlen(text), text);

    conn_fail_bytes(c, status, buf, (size_t)n);
}

/* After an error answer the client may still be sending (a body we refused): close only once it
 * stops or a moment has passed, so that the kernel does not reset the connection before the
 * client has read the answer. */
void wd__conn_linger(wd_conn_t *c)
{
    shutdown(c->fd, SHUT_WR);
    c->state = WD_CONN_LINGER;
    c->events = -1;
    wd__conn_set_events(c, UV_READABLE | UV_DISCONNECT);
    uv_timer_start(&c->timer, wd__conn_timer_cb, LINGER_MS, 0);
}

/* The client's bytes while the connection lingers: read and dropped, until it closes. */
void wd__conn_drain(wd_conn_t *c)
{
    char buf[16384];
    ssize_t n = read(c->fd, buf, sizeof buf);

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        wd_conn_close(c);
}
