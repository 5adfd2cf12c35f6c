/* URL pieces for the CGI/WSGI environ. */
#ifndef WD_PROTOCOL_URL_H
#define WD_PROTOCOL_URL_H

#include "slice.h"

/* Splits a request target "/a%20b?x=1" into path and query (without the '?'). An absolute-form
 * target "http://host/path?q" yields its path. */
void wd_url_split(const char *uri, size_t n, wd_slice_t *path, wd_slice_t *query);

/* Percent-decodes n bytes of src into dst (which may equal src). Invalid escapes are copied
 * as they are. Returns the decoded length (<= n). */
size_t wd_url_decode(char *dst, const char *src, size_t n);

/* wd_url_decode of the escapes a client must use only: those of an unreserved character (ALPHA,
 * DIGIT, "-", ".", "_", "~") or of "/", which no client needs, stay as they are. The path as a
 * proxy reads it that matches a target as sent, and its ACLs written with the letters a client
 * sends ("/caf%C3%A9" is "/café", "/%61dmin" is not "/admin"). */
size_t wd_url_decode_needed(char *dst, const char *src, size_t n);

/* wd_url_decode of the escapes of an unreserved character alone, and of every escape but "%2F":
 * the two steps of Apache's reading of a path around its removal of dot segments (lighttpd's by
 * default too): an escaped slash is no segment boundary there ("/a/x%2Fy/../b" is "/a/b"),
 * where nginx decodes it first ("/a/x/b"). */
size_t wd_url_decode_unreserved(char *dst, const char *src, size_t n);
size_t wd_url_decode_but_slash(char *dst, const char *src, size_t n);

/* Normalises a decoded path in place, as nginx and Apache do before they map it: runs of '/' are
 * one, "." segments go, and ".." takes the segment before it away (never above the root: RFC 3986
 * 5.2.4's remove_dot_segments). A path that ended in a "/", "." or ".." segment keeps its final
 * '/'. A path not starting with '/' (such as "*") is left as it is. Returns the new length
 * (<= n). */
size_t wd_url_normalize(char *p, size_t n);

/* The authority of an absolute-form target ("http://host:8080/p" gives "host:8080"): 1, or 0
 * when the target is not absolute-form. */
int wd_url_authority(const char *uri, size_t n, wd_slice_t *auth);

/* Whether p is a valid Host value (RFC 9110 7.2, RFC 3986 3.2.2): uri-host [":" port], where
 * uri-host is a reg-name (unreserved, sub-delims, %XX), an IPv4 address, or "[" IPv6 "]", and port
 * is empty (the scheme's) or a number up to 65535. Empty is valid (a target without an authority);
 * an empty host with a port (":80": an http URI's host cannot be empty, RFC 9110 4.2.1) is not,
 * nor is userinfo ("user@host"). */
int wd_url_host_valid(const char *p, size_t n);

#endif
