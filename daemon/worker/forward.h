/* trusted-proxies (issue #14): what a trusted proxy says about the client. From a peer in the
 * group's trusted-proxies, X-Forwarded-For / -Proto / -Host or RFC 7239 Forwarded give the
 * request's client address, scheme and host: in the environ (REMOTE_ADDR, wsgi.url_scheme and
 * HTTPS, HTTP_HOST and SERVER_NAME) and in the access log, from the family forwarded-headers names
 * (X-Forwarded-*, the default, or Forwarded). From any other peer they are ignored, or dropped from
 * the environ with strip-forwarded-headers. HTTP only: a uwsgi or FastCGI proxy states the client
 * in its own variables. Loop thread. */
#ifndef WD_WORKER_FORWARD_H
#define WD_WORKER_FORWARD_H

#include "config.h"
#include "request.h"
#include "http.h"

#include <sys/socket.h>

/* Whether the peer at sa is one of g's trusted proxies (AF_UNIX: "unix" in the list). */
int wd_fwd_peer_trusted(const wd_group_conf_t *g, const struct sockaddr *sa);

/* Whether a uwsgi or FastCGI peer's variables say who the client is (REMOTE_ADDR, the scheme):
 * a trusted peer's, or any peer's while the group lists no trusted-proxies (request.h). */
int wd_fwd_vars_believed(const wd_group_conf_t *g, int trusted);

/* proxy-protocol: the PROXY header at the start of buf[0, len) from a peer (peer_text, for the
 * log; *trusted whether it is a trusted proxy). Returns the bytes it takes, 0 while incomplete,
 * -1 when the connection must be closed (logged: an untrusted peer, a malformed header). On
 * success a PROXY command's source becomes the peer: remote (64 bytes), *port and *trusted (is
 * that source itself a trusted proxy); LOCAL (a health check of the balancer's own) leaves them. */
long wd_fwd_proxy_header(const wd_group_conf_t *g, const char *buf, size_t len,
                         const char *peer_text, char *remote, int *port, int *trusted);

/* Fills req's forwarded fields from h's headers (a trusted peer). */
void wd_fwd_apply(wd_req_t *req, const wd_http_t *h, const wd_group_conf_t *g);

#endif
