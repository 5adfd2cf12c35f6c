/* The WSGI environ (PEP 3333, design §7), built from a uwsgi vars block or an HTTP head.
 *
 * Keys are interned once per worker; the constant entries live in a template dict that is copied
 * per request, so that a request only pays for its own variables. */
#include "glue_int.h"
#include "../protocol/response.h"
#include "../daemon/common/alloc.h"
#include "../protocol/url.h"

#include <stdio.h>
#include <string.h>

/* Names that get special treatment come first, with their index as id. */
enum {
    K_REQUEST_METHOD,
    K_SCRIPT_NAME,
    K_PATH_INFO,
    K_QUERY_STRING,
    K_CONTENT_TYPE,
    K_CONTENT_LENGTH,
    K_SERVER_NAME,
    K_SERVER_PORT,
    K_SERVER_PROTOCOL,
    K_REQUEST_URI,
    K_REMOTE_ADDR,
    K_REMOTE_PORT,
    K_HTTPS,
    K_REQUEST_SCHEME,
    K_UWSGI_SCHEME,
    K_HTTP_CONTENT_TYPE,
    K_HTTP_CONTENT_LENGTH,
    K_HTTP_HOST,
    K_HTTP_COOKIE,
    K_HTTP_TRANSFER_ENCODING,
    K_SPECIAL, /* below: no special treatment */
};

static const char *const key_names[] = {
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REQUEST_URI",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "HTTPS",
    "REQUEST_SCHEME",
    "UWSGI_SCHEME",
    "HTTP_CONTENT_TYPE",
    "HTTP_CONTENT_LENGTH",
    "HTTP_HOST",
    "HTTP_COOKIE",
    "HTTP_TRANSFER_ENCODING",
    /* K_SPECIAL and after */
    "REMOTE_USER",
    "DOCUMENT_ROOT",
    "DOCUMENT_URI",
    "SERVER_ADDR",
    "SERVER_SOFTWARE",
    "GATEWAY_INTERFACE",
    "PATH_TRANSLATED",
    "AUTH_TYPE",
    "REMOTE_HOST",
    "SCRIPT_FILENAME",
    "HTTP_USER_AGENT",
    "HTTP_ACCEPT",
    "HTTP_ACCEPT_ENCODING",
    "HTTP_ACCEPT_LANGUAGE",
    "HTTP_ACCEPT_CHARSET",
    "HTTP_CONNECTION",
    "HTTP_KEEP_ALIVE",
    "HTTP_REFERER",
    "HTTP_CACHE_CONTROL",
    "HTTP_PRAGMA",
    "HTTP_AUTHORIZATION",
    "HTTP_ORIGIN",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MATCH",
    "HTTP_IF_RANGE",
    "HTTP_RANGE",
    "HTTP_EXPECT",
    "HTTP_TE",
    "HTTP_DNT",
    "HTTP_UPGRADE_INSECURE_REQUESTS",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_REAL_IP",
    "HTTP_X_REQUESTED_WITH",
    "HTTP_X_CSRFTOKEN",
    "HTTP_SEC_FETCH_SITE",
    "HTTP_SEC_FETCH_MODE",
    "HTTP_SEC_FETCH_DEST",
    "HTTP_SEC_FETCH_USER",
    "HTTP_SEC_CH_UA",
    "HTTP_SEC_CH_UA_MOBILE",
    "HTTP_SEC_CH_UA_PLATFORM",
    "HTTP_FORWARDED",
    "HTTP_VIA",
    "HTTP_PRIORITY",
};

#define N_KEYS (sizeof key_names / sizeof key_names[0])
#define TABLE_SIZE 256 /* a power of two, well above N_KEYS */

typedef struct key_slot {
    const char *name;
    size_t len;
    int id;
    PyObject *key; /* interned str, immortal for our purposes (one reference held) */
} key_slot_t;

static key_slot_t table[TABLE_SIZE];
static PyObject *keys[N_KEYS];

static PyObject *k_input, *k_errors, *k_request_id, *k_url_scheme;
static PyObject *s_https;

static uint32_t key_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    while (n-- > 0)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

static const key_slot_t *key_find(const char *s, size_t n)
{
    uint32_t i = key_hash(s, n) & (TABLE_SIZE - 1);

    while (table[i].name != NULL) {
        if (table[i].len == n && memcmp(table[i].name, s, n) == 0)
            return &table[i];
        i = (i + 1) & (TABLE_SIZE - 1);
    }
    return NULL;
}

static int set_const(PyObject *template, const char *name, PyObject *value)
{
    int rc = value != NULL ? PyDict_SetItemString(template, name, value) : -1;

    Py_XDECREF(value);
    return rc;
}

/* Interned once, in the main interpreter: Python 3.11 interns strings process-wide, and these are
 * never mutated, so every interpreter uses them. */
int wd__py_environ_keys_init(void)
{
    for (size_t k = 0; k < N_KEYS; k++) {
        size_t n = strlen(key_names[k]);
        uint32_t i = key_hash(key_names[k], n) & (TABLE_SIZE - 1);

        keys[k] = PyUnicode_InternFromString(key_names[k]);
        if (keys[k] == NULL)
            return -1;
        while (table[i].name != NULL)
            i = (i + 1) & (TABLE_SIZE - 1);
        table[i] = (key_slot_t){key_names[k], n, (int)k, keys[k]};
    }
    k_input = PyUnicode_InternFromString("wsgi.input");
    k_errors = PyUnicode_InternFromString("wsgi.errors");
    k_request_id = PyUnicode_InternFromString("wsgid.request_id");
    k_url_scheme = PyUnicode_InternFromString("wsgi.url_scheme");
    s_https = PyUnicode_InternFromString("https");
    if (!k_input || !k_errors || !k_request_id || !k_url_scheme || !s_https)
        return -1;
    return 0;
}

PyObject *wd__py_environ_template(const wd_py_interp_t *interp)
{
    const wd_group_conf_t *g = wd__py.group;
    PyObject *t = PyDict_New();

    if (t == NULL)
        return NULL;
    if (set_const(t, "wsgi.version", Py_BuildValue("(ii)", 1, 0)) < 0 ||
        set_const(t, "wsgi.url_scheme", PyUnicode_FromString("http")) < 0 ||
        set_const(t, "wsgi.multithread", PyBool_FromLong(g->threads > 1)) < 0 ||
        set_const(t, "wsgi.multiprocess", PyBool_FromLong(g->processes_set)) < 0 ||
        set_const(t, "wsgi.run_once", PyBool_FromLong(0)) < 0 ||
        set_const(t, "wsgi.input_terminated", PyBool_FromLong(1)) < 0 ||
        set_const(t, "wsgid.process_group", PyUnicode_FromString(g->name)) < 0 ||
        set_const(t, "wsgid.application_group", PyUnicode_FromString(interp->name)) < 0 ||
        set_const(t, "SCRIPT_NAME", PyUnicode_FromString("")) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    Py_INCREF(&wd__py_file_wrapper_type);
    if (set_const(t, "wsgi.file_wrapper", (PyObject *)&wd__py_file_wrapper_type) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return t;
}

/* environ[key] = latin-1 str of (p, n); key is borrowed. */
static int set_str(PyObject *env, PyObject *key, const char *p, size_t n)
{
    PyObject *v = PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
    int rc;

    if (v == NULL)
        return -1;
    rc = PyDict_SetItem(env, key, v);
    Py_DECREF(v);
    return rc;
}

static int set_u64(PyObject *env, PyObject *key, uint64_t u)
{
    char buf[24];

    return set_str(env, key, buf, wd_fmt_u64(buf, u));
}

/* PATH_INFO = the percent-decoded path of uri, dot segments and all (wd__py_route says why). */
static int set_path_info(PyObject *env, const char *uri, size_t n, PyObject *query_key)
{
    wd_slice_t path, query;
    char stack[2048];
    char *buf = stack;
    size_t len;
    int rc;

    wd_url_split(uri, n, &path, &query);
    if (path.n > sizeof stack) {
        buf = PyMem_Malloc(path.n);
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    len = wd_url_decode(buf, path.p, path.n);
    rc = set_str(env, keys[K_PATH_INFO], buf, len);
    if (buf != stack)
        PyMem_Free(buf);
    if (rc == 0 && query_key != NULL)
        rc = set_str(env, query_key, query.p ? query.p : "", query.p ? query.n : 0);
    return rc;
}

static int is_https(int id, wd_slice_t v)
{
    if (id == K_HTTPS)
        return wd_slice_ieq(v.p, v.n, "on") || (v.n == 1 && v.p[0] == '1');
    return wd_slice_ieq(v.p, v.n, "https");
}

/* The variables of a uwsgi packet or of a FastCGI PARAMS stream, one after the other. */
typedef struct vars {
    int fcgi;
    wd_uwsgi_iter_t u;
    wd_fcgi_nv_iter_t f;
} vars_t;

static int vars_next(vars_t *it, wd_slice_t *k, wd_slice_t *v)
{
    return it->fcgi ? wd_fcgi_nv_iter_next(&it->f, k, v) : wd_uwsgi_iter_next(&it->u, k, v);
}

/* A variable the peer does not set: the server's own wsgi.* and wsgid.* keys (PEP 3333; a
 * wsgi.file_wrapper or wsgi.version from the peer replaced the server's), and from a peer not
 * believed (request.h: vars_untrusted) who the client is (its address, port and scheme, and what a
 * web server says it authenticated: REMOTE_USER, AUTH_TYPE, which Django's RemoteUserMiddleware
 * believes, and REMOTE_HOST; helper-79), and under strip-forwarded-headers its forwarding
 * headers. */
static int is_name(wd_slice_t k, const char *name)
{
    return k.n == strlen(name) && memcmp(k.p, name, k.n) == 0;
}

static int var_refused(const wd_req_t *req, wd_slice_t k, int id)
{
    if ((k.n >= 5 && memcmp(k.p, "wsgi.", 5) == 0) || (k.n >= 6 && memcmp(k.p, "wsgid.", 6) == 0))
        return 1;
    if (!req->vars_untrusted)
        return 0;
    if (id == K_REMOTE_ADDR || id == K_REMOTE_PORT || id == K_HTTPS || id == K_REQUEST_SCHEME ||
        id == K_UWSGI_SCHEME || is_name(k, "REMOTE_USER") || is_name(k, "AUTH_TYPE") ||
        is_name(k, "REMOTE_HOST"))
        return 1;
    return req->strip_forwarded && ((k.n > 17 && memcmp(k.p, "HTTP_X_FORWARDED_", 17) == 0) ||
                                    (k.n == 14 && memcmp(k.p, "HTTP_FORWARDED", 14) == 0));
}

/* The environ of a request whose proxy sent its variables (uwsgi, FastCGI): taken as they are,
 * CONTENT_TYPE (and over uwsgi CONTENT_LENGTH) from their HTTP_ forms when only those came,
 * FastCGI's CONTENT_LENGTH from its body when the proxy left it unsaid, PATH_INFO from the URI when
 * absent, the scheme from HTTPS / REQUEST_SCHEME / UWSGI_SCHEME; but not var_refused()'s, and a
 * peer not believed gets its own address as REMOTE_ADDR. */
static int environ_vars(PyObject *env, const wd_req_t *req)
{
    vars_t it = {.fcgi = req->kind == WD_REQ_FCGI};
    wd_slice_t k, v, http_ct = {NULL, 0}, http_cl = {NULL, 0};
    wd_slice_t uri = it.fcgi ? req->fcgi->uri : req->uwsgi->uri;
    int has_path = 0, has_ct = 0, has_cl = 0, https = -1;

    if (it.fcgi)
        wd_fcgi_nv_iter_init(&it.f, req->fcgi->params, req->fcgi->params_len);
    else
        wd_uwsgi_iter_init(&it.u, req->uwsgi);
    while (vars_next(&it, &k, &v)) {
        const key_slot_t *slot = key_find(k.p, k.n);
        PyObject *key;
        int rc;

        if (var_refused(req, k, slot != NULL ? slot->id : -1))
            continue;
        if (slot != NULL) {
            switch (slot->id) {
            case K_HTTP_CONTENT_TYPE:
                http_ct = v;
                continue;
            case K_HTTP_CONTENT_LENGTH:
                http_cl = v;
                continue;
            case K_PATH_INFO:
                has_path = 1;
                break;
            case K_CONTENT_TYPE:
                has_ct = 1;
                break;
            case K_CONTENT_LENGTH:
                has_cl = 1;
                /* "-1", length unknown (FastCGI), or "" with a body (FastCGI's STDIN of a length
                 * the proxy did not know: nginx's chunked upload without request buffering): it
                 * is known now. A uwsgi body's length is CONTENT_LENGTH's: "" has none. */
                if ((v.n > 0 && v.p[0] == '-') || (v.n == 0 && req->body_len > 0)) {
                    if (set_u64(env, keys[K_CONTENT_LENGTH], req->body_len) < 0)
                        return -1;
                    continue;
                }
                break;
            case K_HTTPS:
            case K_REQUEST_SCHEME:
            case K_UWSGI_SCHEME:
                /* UWSGI_SCHEME is what the proxy explicitly says: it wins. */
                if (https < 0 || slot->id == K_UWSGI_SCHEME || is_https(slot->id, v))
                    https = is_https(slot->id, v);
                break;
            }
            rc = set_str(env, slot->key, v.p, v.n);
        } else {
            key = PyUnicode_DecodeLatin1(k.p, (Py_ssize_t)k.n, NULL);
            if (key == NULL)
                return -1;
            rc = set_str(env, key, v.p, v.n);
            Py_DECREF(key);
        }
        if (rc < 0)
            return -1;
    }
    if (!has_ct && http_ct.p != NULL &&
        set_str(env, keys[K_CONTENT_TYPE], http_ct.p, http_ct.n) < 0)
        return -1;
    /* Without CONTENT_LENGTH: a FastCGI body is STDIN, whose length is known now (the client's
     * Content-Length header may say anything: helper-53 had 999 for 100 bytes); otherwise the
     * header's. */
    if (!has_cl && it.fcgi && req->body_len > 0) {
        if (set_u64(env, keys[K_CONTENT_LENGTH], req->body_len) < 0)
            return -1;
    } else if (!has_cl && !it.fcgi && http_cl.p != NULL &&
               set_str(env, keys[K_CONTENT_LENGTH], http_cl.p, http_cl.n) < 0) {
        return -1;
    }
    if (!has_path && set_path_info(env, uri.p, uri.n, NULL) < 0)
        return -1;
    if (https == 1 && PyDict_SetItem(env, k_url_scheme, s_https) < 0)
        return -1;
    if (req->vars_untrusted &&
        (set_str(env, keys[K_REMOTE_ADDR], req->remote_addr, strlen(req->remote_addr)) < 0 ||
         (req->remote_port > 0 &&
          set_u64(env, keys[K_REMOTE_PORT], (uint64_t)req->remote_port) < 0)))
        return -1;
    return 0;
}

/* SERVER_NAME / SERVER_PORT from a Host value "name", "name:port", "[v6]:port". */
static int set_host(PyObject *env, const char *h, size_t n)
{
    size_t name_len = n;
    const char *port = "80";
    size_t port_len = 2;

    if (n > 0 && h[0] == '[') {
        const char *end = memchr(h, ']', n);

        name_len = end ? (size_t)(end - h) + 1 : n;
    } else {
        const char *colon = memchr(h, ':', n);

        name_len = colon ? (size_t)(colon - h) : n;
    }
    if (name_len + 1 < n && h[name_len] == ':') { /* "name:" is the scheme's port */
        port = h + name_len + 1;
        port_len = n - name_len - 1;
    }
    if (set_str(env, keys[K_SERVER_NAME], h, name_len) < 0)
        return -1;
    return set_str(env, keys[K_SERVER_PORT], port, port_len);
}

/* environ key for a header: "HTTP_" + name upper-cased with '-' as '_'. */
static PyObject *header_key(const char *name, size_t n, int *id)
{
    char stack[128];
    char *buf = n + 5 <= sizeof stack ? stack : PyMem_Malloc(n + 5);
    const key_slot_t *slot;
    PyObject *key;

    if (buf == NULL)
        return PyErr_NoMemory();
    memcpy(buf, "HTTP_", 5);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];

        buf[5 + i] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    slot = key_find(buf, n + 5);
    if (slot != NULL) {
        *id = slot->id;
        key = slot->key;
        Py_INCREF(key);
    } else {
        *id = -1;
        key = PyUnicode_DecodeLatin1(buf, (Py_ssize_t)n + 5, NULL);
    }
    if (buf != stack)
        PyMem_Free(buf);
    return key;
}

static int add_header(PyObject *env, PyObject *key, int id, wd_slice_t v)
{
    PyObject *old = PyDict_GetItemWithError(env, key); /* borrowed */
    PyObject *add, *nv;
    int rc;

    if (old == NULL)
        return PyErr_Occurred() ? -1 : set_str(env, key, v.p, v.n);
    /* A repeated header: the values joined as one, as a proxy would. */
    add = PyUnicode_DecodeLatin1(v.p, (Py_ssize_t)v.n, NULL);
    if (add == NULL)
        return -1;
    nv = PyUnicode_FromFormat("%U%s%U", old, id == K_HTTP_COOKIE ? "; " : ", ", add);
    Py_DECREF(add);
    if (nv == NULL)
        return -1;
    rc = PyDict_SetItem(env, key, nv);
    Py_DECREF(nv);
    return rc;
}

/* X-Forwarded-* and Forwarded: what strip-forwarded-headers leaves out from untrusted peers. */
static int is_forwarded_header(wd_slice_t name)
{
    return wd_slice_ieq(name.p, name.n, "forwarded") ||
           (name.n > 12 && wd_slice_ieq(name.p, 12, "x-forwarded-"));
}

/* Whether a Host value ends with a port ("h:80", "[::1]:80"; "h:" has none: RFC 3986 3.2.3, the
 * scheme's, which under https was taken as 80). */
static int host_has_port(const char *h, size_t n)
{
    const char *close = n > 0 && h[0] == '[' ? memchr(h, ']', n) : NULL;
    const char *colon = close != NULL ? close + 1 : memchr(h, ':', n);

    return colon != NULL && colon + 1 < h + n;
}

static int environ_http(PyObject *env, const wd_req_t *req)
{
    const wd_http_t *h = req->http;
    wd_slice_t url = wd_http_slice(h, h->url), authority, method = wd_http_method(h);
    char proto[16];
    int has_host = 0, n;
    wd_slice_t host = {"", 0}; /* the Host the environ took */

    if (set_str(env, keys[K_REQUEST_METHOD], method.p, method.n) < 0 ||
        set_str(env, keys[K_REQUEST_URI], url.p, url.n) < 0 ||
        set_path_info(env, url.p, url.n, keys[K_QUERY_STRING]) < 0)
        return -1;
    if (h->http_major < 10 && h->request_minor < 10) { /* no printf on every request */
        memcpy(proto, "HTTP/1.1", 8);
        proto[5] = (char)('0' + h->http_major);
        proto[7] = (char)('0' + h->request_minor);
        n = 8;
    } else {
        n = snprintf(proto, sizeof proto, "HTTP/%u.%u", h->http_major, h->request_minor);
    }
    if (set_str(env, keys[K_SERVER_PROTOCOL], proto, (size_t)n) < 0)
        return -1;
    if (h->has_content_length || h->chunked || req->body_len > 0)
        if (set_u64(env, keys[K_CONTENT_LENGTH], req->body_len) < 0)
            return -1;
    if (set_str(env, keys[K_REMOTE_ADDR], req->remote_addr, strlen(req->remote_addr)) < 0)
        return -1;
    /* A TCP client's port: the peer's, or the one a PROXY header named (on a unix listener too,
     * where it was left out); a unix peer has none (0), and a forwarding header says none. */
    if (req->remote_port > 0 && !req->forwarded &&
        set_u64(env, keys[K_REMOTE_PORT], (uint64_t)req->remote_port) < 0)
        return -1;
    if (req->fwd_https == 1 && (PyDict_SetItem(env, k_url_scheme, s_https) < 0 ||
                                set_str(env, keys[K_HTTPS], "on", 2) < 0))
        return -1;
    /* A trusted proxy's host wins; then an absolute-form target's (RFC 9112 3.2.2: the Host
     * field is ignored); then Host. */
    if (req->fwd_host.n > 0) {
        if (set_host(env, req->fwd_host.p, req->fwd_host.n) < 0 ||
            set_str(env, keys[K_HTTP_HOST], req->fwd_host.p, req->fwd_host.n) < 0)
            return -1;
        has_host = 1;
        host = req->fwd_host;
    } else if (wd_url_authority(url.p, url.n, &authority)) {
        if (set_host(env, authority.p, authority.n) < 0 ||
            set_str(env, keys[K_HTTP_HOST], authority.p, authority.n) < 0)
            return -1;
        has_host = 1;
        host = authority;
    }

    for (unsigned i = 0; i < h->n_headers; i++) {
        wd_slice_t name = wd_http_slice(h, h->headers[i].name);
        wd_slice_t v = wd_http_slice(h, h->headers[i].value);
        PyObject *key;
        int id, rc;

        /* Underscores could impersonate another header once mapped to '_': drop them. */
        if (memchr(name.p, '_', name.n) != NULL)
            continue;
        if (req->strip_forwarded && is_forwarded_header(name))
            continue;
        key = header_key(name.p, name.n, &id);
        if (key == NULL)
            return -1;
        switch (id) {
        case K_HTTP_CONTENT_LENGTH:
        case K_HTTP_TRANSFER_ENCODING:
            rc = 0; /* the body is buffered: CONTENT_LENGTH above says it all */
            break;
        case K_HTTP_CONTENT_TYPE:
            rc = add_header(env, keys[K_CONTENT_TYPE], id, v);
            break;
        case K_HTTP_HOST:
            /* An empty Host (a target without an authority) names no server: SERVER_NAME is the
             * listener's, as without one (PEP 3333: never empty). */
            rc = has_host || v.n == 0 ? 0 : set_host(env, v.p, v.n);
            if (rc == 0 && !has_host) {
                rc = set_str(env, key, v.p, v.n);
                host = v;
            }
            has_host = v.n > 0 || has_host;
            break;
        default:
            rc = add_header(env, key, id, v);
        }
        Py_DECREF(key);
        if (rc < 0)
            return -1;
    }
    /* https as a trusted proxy says, and a host without a port: the port is https's. */
    if (has_host && req->fwd_https == 1 && !host_has_port(host.p, host.n) &&
        set_str(env, keys[K_SERVER_PORT], "443", 3) < 0)
        return -1;
    if (!has_host) {
        if (set_str(env, keys[K_SERVER_NAME], req->server_addr, strlen(req->server_addr)) < 0)
            return -1;
        if (req->is_unix ? set_str(env, keys[K_SERVER_PORT], "80", 2)
                         : set_u64(env, keys[K_SERVER_PORT], (uint64_t)req->server_port))
            return -1;
    }
    return 0;
}

/* Whether the decoded path p (n bytes) is under mount point a (whole path segments). */
static int under(const wd_py_mount_t *a, const char *p, size_t n)
{
    return a->len == 0 ||
           (n >= a->len && memcmp(p, a->prefix, a->len) == 0 && (n == a->len || p[a->len] == '/'));
}

static const wd_py_mount_t *mount_of(const char *p, size_t n)
{
    for (size_t i = 0; i < wd__py.n_apps; i++)
        if (under(&wd__py.apps[i], p, n))
            return &wd__py.apps[i];
    return NULL;
}

/* Where a reading p (n bytes) of a target's path goes: the mount of what follows the proxy's
 * SCRIPT_NAME sn in it ("" over HTTP), or &not_routed when it does not start with sn. */
static const wd_py_mount_t not_routed;

static const wd_py_mount_t *mount_after(wd_slice_t sn, const char *p, size_t n)
{
    if (n < sn.n || memcmp(p, sn.p, sn.n) != 0)
        return &not_routed;
    return mount_of(p + sn.n, n - sn.n);
}

/* Whether every reading of a request target's path p (n bytes, as sent) names the mount found
 * (after the proxy's SCRIPT_NAME sn): as sent (with the escapes a client must use decoded, so
 * that a mount point with letters outside ASCII is reached: helper-61; wd_url_decode_needed),
 * decoded (as PATH_INFO reads), decoded and normalised (wd_url_normalize: nginx, Caddy), and as
 * Apache reads it: dot segments removed with the escapes of unreserved characters alone decoded,
 * so that "%2F" is no segment boundary yet, then the rest decoded but "%2F" (AllowEncodedSlashes
 * NoDecode; with Off, the default, a "%2F" left is Apache's 404), or all of it and normalised
 * again (On). Apache's readings were missing (helper-83): behind "<Location /admin> Require ..."
 * and a ProxyPass ... nocanon (which passes the target on as sent), /admin/a%2Fb/../../public/x
 * read /public/x to Apache and ran in /admin's app, as did /admin/../admin%2Fx under NoDecode.
 * buf has room for n bytes. */
static int readings_agree(const char *p, size_t n, wd_slice_t sn, const wd_py_mount_t *found,
                          char *buf)
{
    size_t k;

    if (mount_after(sn, buf, wd_url_decode_needed(buf, p, n)) != found)
        return 0;
    k = wd_url_decode(buf, p, n);
    if (mount_after(sn, buf, k) != found || mount_after(sn, buf, wd_url_normalize(buf, k)) != found)
        return 0;
    k = wd_url_normalize(buf, wd_url_decode_unreserved(buf, p, n));
    if (mount_after(sn, buf, wd_url_decode_but_slash(buf, buf, k)) != found)
        return 0;
    k = wd_url_decode(buf, buf, wd_url_normalize(buf, wd_url_decode_unreserved(buf, p, n)));
    return mount_after(sn, buf, wd_url_normalize(buf, k)) == found;
}

/* A request goes to the mount its decoded path is under, as PATH_INFO reads (dot segments and
 * all), unless the path read another way names another mount (readings_agree). Proxies read paths
 * several ways before they pick a location or apply an ACL: nginx and Apache decode and normalise,
 * HAProxy's path_beg takes the target as sent. Taken one way, GET /admin/../public/x got past
 * nginx's "location /admin { deny all; }" (nginx read /public/x) and ran in /admin's app; taken
 * the other, /x/../admin/x or /%61dmin/x got past HAProxy's "deny if { path_beg /admin }"
 * (helper-59). A path whose readings disagree names no app for sure: *ambiguous, and the caller
 * answers 400. A browser resolves dot segments before it sends, and escapes no letter, digit or
 * "/"; a "//" from a careless join of base + "/" + path does come, and gets 400 in a group with
 * mounts, behind nginx too since helper-83's readings over uwsgi and FastCGI (helper-84: README).
 *
 * Over uwsgi and FastCGI a PATH_INFO from the proxy is the path, the last one sent as in the
 * environ (helper-83: nginx's uwsgi_params sends $document_uri, and a uwsgi_param PATH_INFO after
 * it was the app's PATH_INFO but not the one routed: every request under a prefix got 404), and it
 * is read as it is and normalised. When the target's path decoded (REQUEST_URI) is the proxy's
 * SCRIPT_NAME (its last) and then PATH_INFO, normalised or not, the target is read every way
 * above too, after that SCRIPT_NAME: HAProxy's fcgi-app sends its decoded path as PATH_INFO (or
 * split by its path-info regex) and applies path_beg to the target as sent, so GET /%61dmin/x got
 * past "deny if { path_beg /admin }" and ran in /admin's app, as /site/%61dmin/x did behind
 * path-info ^(/site)(/.*)$ and path_beg /site/admin (helper-83). A PATH_INFO that is not (the
 * proxy rewrote the path) is the proxy's own choice, routed as it is. */
const wd_py_mount_t *wd__py_route(const wd_req_t *req, int *ambiguous)
{
    const wd_py_mount_t *apps = wd__py.apps, *found;
    wd_slice_t target, path, query, pi = {NULL, 0}, sn = {"", 0}, k, v;
    char stack[4096], *buf = stack;
    int check = 1;

    *ambiguous = 0;
    if (wd__py.n_apps == 1 && apps[0].len == 0)
        return &apps[0]; /* no mounts: every request is the group's app's */
    if (req->kind != WD_REQ_HTTP) {
        vars_t it = {.fcgi = req->kind == WD_REQ_FCGI};

        target = it.fcgi ? req->fcgi->uri : req->uwsgi->uri;
        if (it.fcgi)
            wd_fcgi_nv_iter_init(&it.f, req->fcgi->params, req->fcgi->params_len);
        else
            wd_uwsgi_iter_init(&it.u, req->uwsgi);
        while (vars_next(&it, &k, &v)) { /* the last of each, as environ_vars takes them */
            if (k.n == 9 && memcmp(k.p, "PATH_INFO", 9) == 0)
                pi = v; /* as the proxy decoded it */
            else if (k.n == 11 && memcmp(k.p, "SCRIPT_NAME", 11) == 0)
                sn = v;
        }
    } else {
        target = wd_http_slice(req->http, req->http->url);
    }
    wd_url_split(target.p, target.n, &path, &query);
    if (path.n + pi.n > sizeof stack)
        buf = xmalloc(path.n + pi.n);
    if (pi.p != NULL) {
        char *npi = buf + path.n;
        size_t m, n;

        found = mount_of(pi.p, pi.n);
        memcpy(npi, pi.p, pi.n);
        m = wd_url_normalize(npi, pi.n);
        if (mount_of(npi, m) != found)
            *ambiguous = 1;
        n = wd_url_decode(buf, path.p, path.n);
        check = n >= sn.n && memcmp(buf, sn.p, sn.n) == 0 &&
                (n = wd_url_normalize(buf + sn.n, n - sn.n)) == m &&
                memcmp(buf + sn.n, npi, m) == 0;
    } else {
        sn.n = 0; /* the path is REQUEST_URI's: a SCRIPT_NAME beside it is not cut from it */
        found = mount_of(buf, wd_url_decode(buf, path.p, path.n));
    }
    if (!*ambiguous && check && !readings_agree(path.p, path.n, sn, found, buf))
        *ambiguous = 1;
    if (buf != stack)
        free(buf);
    return found;
}

/* The mount point moves from the start of PATH_INFO to the end of SCRIPT_NAME. */
static int split_at_mount(PyObject *env, const wd_py_mount_t *a)
{
    PyObject *pi = PyDict_GetItemWithError(env, keys[K_PATH_INFO]); /* borrowed */
    PyObject *old, *prefix, *sn;
    const char *p;
    size_t n;
    int rc;

    if (pi == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (PyUnicode_KIND(pi) != PyUnicode_1BYTE_KIND)
        return 0;
    p = (const char *)PyUnicode_1BYTE_DATA(pi);
    n = (size_t)PyUnicode_GET_LENGTH(pi);
    if (!under(a, p, n))
        return 0;
    old = PyDict_GetItemWithError(env, keys[K_SCRIPT_NAME]); /* borrowed */
    prefix = PyUnicode_DecodeLatin1(a->prefix, (Py_ssize_t)a->len, NULL);
    if (prefix == NULL)
        return -1;
    if (old != NULL) {
        sn = PyUnicode_Concat(old, prefix);
        Py_DECREF(prefix);
    } else {
        sn = prefix;
    }
    if (sn == NULL)
        return -1;
    rc = PyDict_SetItem(env, keys[K_SCRIPT_NAME], sn);
    Py_DECREF(sn);
    if (rc < 0 || set_str(env, keys[K_PATH_INFO], p + a->len, n - a->len) < 0)
        return -1;
    return 0;
}

PyObject *wd__py_environ_new(const wd_req_t *req, const wd_py_mount_t *app, PyObject **input)
{
    PyObject *env = PyDict_Copy(app->interp->environ);
    PyObject *in = NULL, *errors = NULL, *id = NULL;

    *input = NULL;
    if (env == NULL)
        return NULL;
    if ((req->kind == WD_REQ_HTTP ? environ_http(env, req) : environ_vars(env, req)) < 0)
        goto fail;
    if (app->len > 0 && split_at_mount(env, app) < 0)
        goto fail;
    in = wd__py_input_new(req);
    errors = wd__py_errors_new(req->id);
    id = PyUnicode_FromString(req->id);
    if (in == NULL || errors == NULL || id == NULL || PyDict_SetItem(env, k_input, in) < 0 ||
        PyDict_SetItem(env, k_errors, errors) < 0 || PyDict_SetItem(env, k_request_id, id) < 0)
        goto fail;
    Py_DECREF(errors);
    Py_DECREF(id);
    *input = in;
    return env;
fail:
    Py_XDECREF(in);
    Py_XDECREF(errors);
    Py_XDECREF(id);
    Py_DECREF(env);
    return NULL;
}

void wd__py_request_target(const wd_req_t *req, wd_slice_t *m, wd_slice_t *u)
{
    if (req->kind == WD_REQ_UWSGI) {
        *m = req->uwsgi->method;
        *u = req->uwsgi->uri;
    } else if (req->kind == WD_REQ_FCGI) {
        *m = req->fcgi->method;
        *u = req->fcgi->uri;
    } else {
        *m = wd_http_method(req->http); /* http->method is NULL for an extension method */
        *u = wd_http_slice(req->http, req->http->url);
    }
}

void wd__py_request_line(const wd_req_t *req, char *buf, size_t cap)
{
    wd_slice_t m, u;

    wd__py_request_target(req, &m, &u);
    if (u.n > 200)
        u.n = 200;
    snprintf(buf, cap, "%.*s %.*s", (int)m.n, m.p ? m.p : "", (int)u.n, u.p ? u.p : "");
}
