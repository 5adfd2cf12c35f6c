/* See forward.h. */
#include "forward.h"
#include "cidr.h"
#include "forwarded.h"
#include "log.h"
#include "proxy_header.h"
#include "response.h"
#include "url.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

int wd_fwd_peer_trusted(const wd_group_conf_t *g, const struct sockaddr *sa)
{
    return g->n_trusted_proxies > 0 &&
           wd_cidr_match_any(g->trusted_proxies, g->n_trusted_proxies, sa);
}

int wd_fwd_vars_believed(const wd_group_conf_t *g, int trusted)
{
    return trusted || g->n_trusted_proxies == 0;
}

/* The trust callback of protocol/forwarded.c: a hop's address text against the group's list. */
static int hop_trusted(const char *addr, size_t n, void *ctx)
{
    const wd_group_conf_t *g = ctx;
    struct sockaddr_storage ss;
    char buf[64];

    if (n >= sizeof buf)
        return 0;
    memcpy(buf, addr, n);
    buf[n] = '\0';
    memset(&ss, 0, sizeof ss);
    if (memchr(buf, ':', n) != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

        in6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1)
            return 0;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;

        in->sin_family = AF_INET;
        if (inet_pton(AF_INET, buf, &in->sin_addr) != 1)
            return 0;
    }
    return wd_fwd_peer_trusted(g, (const struct sockaddr *)&ss);
}

/* The lines of header `lower` (lines: WD_HTTP_MAX_HEADERS of them), in the order they came. They
 * are not joined: protocol/forwarded.c walks them from the last, and whatever a client wrote in
 * the first ones, however long, must not decide what the proxy's line says. */
static size_t header_lines(const wd_http_t *h, const char *lower, wd_slice_t *lines)
{
    size_t n = 0;

    for (unsigned i = 0; i < h->n_headers; i++) {
        wd_slice_t name = wd_http_slice(h, h->headers[i].name);

        if (wd_slice_ieq(name.p, name.n, lower))
            lines[n++] = wd_http_slice(h, h->headers[i].value);
    }
    return n;
}

static int proto_https(wd_slice_t p)
{
    if (p.n == 5 && strncasecmp(p.p, "https", 5) == 0)
        return 1;
    if (p.n == 4 && strncasecmp(p.p, "http", 4) == 0)
        return 0;
    return -1;
}

/* The right-most value of a comma list in lines ("https, http" from two proxies, on one line or
 * on two: the last one said it); empty when there is none. */
static wd_slice_t last_item(const wd_slice_t *lines, size_t n)
{
    wd_slice_t v = n > 0 ? lines[n - 1] : (wd_slice_t){"", 0};
    const char *comma;

    while (v.n > 0 && (comma = memchr(v.p, ',', v.n)) != NULL)
        v = (wd_slice_t){comma + 1, v.n - (size_t)(comma + 1 - v.p)};
    while (v.n > 0 && (*v.p == ' ' || *v.p == '\t'))
        v = (wd_slice_t){v.p + 1, v.n - 1};
    while (v.n > 0 && (v.p[v.n - 1] == ' ' || v.p[v.n - 1] == '\t'))
        v.n--;
    return v;
}

static void set_client(wd_req_t *req, wd_slice_t addr)
{
    size_t n = addr.n < sizeof req->remote_addr - 1 ? addr.n : sizeof req->remote_addr - 1;

    memcpy(req->remote_addr, addr.p, n);
    req->remote_addr[n] = '\0';
    req->remote_port = 0; /* the proxies do not say it */
    req->forwarded = 1;
}

void wd_fwd_apply(wd_req_t *req, const wd_http_t *h, const wd_group_conf_t *g)
{
    wd_slice_t lines[WD_HTTP_MAX_HEADERS], v, client;
    size_t n;
    wd_fwd_t f;

    if (g->forwarded_rfc7239) {
        n = header_lines(h, "forwarded", lines);
        if (n > 0 && wd_fwd_forwarded(lines, n, hop_trusted, (void *)g, &f)) {
            set_client(req, f.addr);
            req->fwd_https = f.proto.n ? proto_https(f.proto) : -1;
            if (f.host.n > 0 && wd_url_host_valid(f.host.p, f.host.n))
                req->fwd_host = f.host; /* inside the head, as the lines are */
        }
        return;
    }
    n = header_lines(h, "x-forwarded-for", lines);
    if (n > 0 && wd_fwd_xff(lines, n, hop_trusted, (void *)g, &client))
        set_client(req, client);
    n = header_lines(h, "x-forwarded-proto", lines);
    v = last_item(lines, n);
    if (v.n > 0)
        req->fwd_https = proto_https(v);
    n = header_lines(h, "x-forwarded-host", lines);
    v = last_item(lines, n);
    if (v.n > 0 && wd_url_host_valid(v.p, v.n))
        req->fwd_host = v;
}

long wd_fwd_proxy_header(const wd_group_conf_t *g, const char *buf, size_t len,
                         const char *peer_text, char *remote, int *port, int *trusted)
{
    wd_proxy_header_t h;
    int r;

    if (!*trusted) {
        wd_log_peer(WD_LOG_WARN,
                    "group %s: peer %s is not in trusted-proxies: its connection (which must "
                    "start with a PROXY header) is closed",
                    g->name, peer_text);
        return -1;
    }
    r = wd_proxy_header_parse(buf, len, &h);
    if (r == WD_PARSE_AGAIN)
        return 0;
    if (r == WD_PARSE_ERROR) {
        wd_log_peer(WD_LOG_WARN,
                    "group %s: peer %s: malformed PROXY header (%s): connection closed; "
                    "proxy-protocol is on, so every connection must start with one",
                    g->name, peer_text, wd_proxy_header_strerror(h.error));
        return -1;
    }
    /* The connection's client is the header's source, believed as the peer would be: an address
     * in trusted-proxies, a unix socket's client if "unix" is there. LOCAL (the proxy's own
     * connection) and UNKNOWN name nobody: the peer stays the proxy, but its trust is not the
     * client's. HAProxy 2.6 sends LOCAL for a client of its unix socket, and adds no
     * X-Forwarded-For for it: that client's own were believed (helper-71). */
    if (h.command == WD_PROXY_CMD_PROXY && (h.family == AF_INET || h.family == AF_INET6)) {
        size_t n = strnlen(h.src.text, 63); /* an IP address: well under 64 */

        memcpy(remote, h.src.text, n);
        remote[n] = '\0';
        *port = h.src.port;
        *trusted = wd_fwd_peer_trusted(g, (const struct sockaddr *)&h.src.sa);
    } else if (h.command == WD_PROXY_CMD_PROXY && h.family == AF_UNIX) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};

        remote[0] = '\0'; /* as a client of a unix listener of ours */
        *port = 0;
        *trusted = wd_fwd_peer_trusted(g, (const struct sockaddr *)&un);
    } else {
        *trusted = 0;
    }
    return r;
}
