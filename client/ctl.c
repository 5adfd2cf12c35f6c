/* wsgictl's connection to the master: see ctl.h. */
#include "ctl.h"
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- talking to the master ---------------------------------------------------------------- */

static int connect_to(const char *path, int timeout_ms)
{
    struct sockaddr_un sun;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int fd;

    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* a unix connect waits while the listener's backlog is full (a master that stopped
     * accepting): SO_SNDTIMEO bounds it, and the sends after it */
    if (timeout_ms > 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Waits until fd is readable: 1, 0 at the deadline (none when timeout_ms is 0), -1 when a
 * signal set *stop. */
static int wait_readable(int fd, double deadline, volatile sig_atomic_t *stop)
{
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        double left = deadline > 0 ? deadline - now_ms() : -1;
        int n;

        if (deadline > 0 && left <= 0)
            return 0;
        n = poll(&p, 1, deadline > 0 ? (int)left + 1 : -1);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 1; /* let read() say what is wrong */
        if (stop != NULL && *stop)
            return -1;
    }
}

json_t *wd_ctl_call(const char *path, json_t *request, int timeout_ms, volatile sig_atomic_t *stop)
{
    char *text = json_dumps(request, JSON_COMPACT), *buf = NULL;
    size_t len = 0, cap = 0, off = 0, tlen;
    double deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
    json_error_t jerr;
    json_t *reply = NULL;
    ssize_t n;
    int fd, w;

    fd = connect_to(path, timeout_ms);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS)
            fprintf(stderr,
                    "wsgictl: wsgid did not take the connection within %g s (control socket %s): "
                    "is its master stuck? (ps, or `kill -0` its pid)\n",
                    timeout_ms / 1000.0, path);
        else if (!(errno == EINTR && stop != NULL && *stop))
            fprintf(stderr,
                    "wsgictl: cannot reach wsgid (is wsgid running?) control socket %s: %s\n", path,
                    strerror(errno));
        free(text);
        return NULL;
    }
    tlen = strlen(text);
    text[tlen++] = '\n'; /* json_dumps leaves room: we overwrite its NUL and send tlen bytes */
    while (off < tlen) {
        n = write(fd, text + off, tlen - off);
        if (n < 0 && errno == EINTR && !(stop != NULL && *stop))
            continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            break; /* wsgid answered and closed before reading us (a refusal): read it */
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            goto timed_out;
        if (n < 0)
            goto lost;
        off += (size_t)n;
    }
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            if (buf == NULL)
                abort();
        }
        w = wait_readable(fd, deadline, stop);
        if (w == 0)
            goto timed_out;
        if (w < 0)
            goto interrupted;
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && len == 0)
            goto lost;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (memchr(buf + len - (size_t)n, '\n', (size_t)n) != NULL)
            break;
    }
    if (len == 0) {
        errno = 0;
        goto lost;
    }
    buf[len] = '\0';
    reply = json_loads(buf, JSON_DISABLE_EOF_CHECK, &jerr);
    if (reply == NULL || !json_is_object(reply)) {
        fprintf(stderr, "wsgictl: cannot understand the reply of wsgid: %s\n", jerr.text);
        json_decref(reply);
        reply = NULL;
    }
    close(fd);
    free(text);
    free(buf);
    return reply;

timed_out:
    fprintf(stderr,
            "wsgictl: wsgid did not answer within %g s (control socket %s): an operation may "
            "still be running (wsgictl status tells), or its master is stuck (ps, or `kill -0` "
            "its pid)\n",
            timeout_ms / 1000.0, path);
    goto out;
lost:
    fprintf(stderr, "wsgictl: the connection to wsgid (%s) was lost: %s\n", path,
            errno ? strerror(errno) : "no reply");
    goto out;
interrupted:
out:
    close(fd);
    free(text);
    free(buf);
    return NULL;
}

const char *wd_ctl_safe(const char *s)
{
    static char *ring[16];
    static size_t next;
    char *out, *o;

    if (s == NULL)
        return "";
    if (strcspn(s, "\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13"
                   "\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f\xc2") == strlen(s))
        return s;
    o = out = malloc(strlen(s) * 6 + 1);
    if (out == NULL)
        abort();
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f) {
            o += sprintf(o, "\\x%02x", *p);
        } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            o += sprintf(o, "\\u%04x", p[1]); /* a C1 control, as UTF-8 */
            p++;
        } else {
            *o++ = (char)*p;
        }
    }
    *o = '\0';
    next = (next + 1) % (sizeof ring / sizeof ring[0]);
    free(ring[next]);
    ring[next] = out;
    return out;
}

/* The control socket: -s, $WSGID_CONTROL, or `control:` of -c FILE (default ./wsgid.yaml). */
char *wd_ctl_find_socket(const char *sock, const char *config)
{
    wd_config_t conf;
    char err[1024], *path;

    if (sock != NULL)
        return strdup(sock);
    if (config == NULL && getenv("WSGID_CONTROL") != NULL)
        return strdup(getenv("WSGID_CONTROL"));
    if (config == NULL) {
        if (access("wsgid.yaml", R_OK) != 0) {
            fprintf(stderr, "wsgictl: where is wsgid? use -s SOCKET, -c CONFIG or set "
                            "$WSGID_CONTROL (no ./wsgid.yaml)\n");
            return NULL;
        }
        config = "wsgid.yaml";
    }
    memset(&conf, 0, sizeof conf);
    if (wd_config_load_file_flags(&conf, config, WD_CONFIG_NO_FILE_CHECKS, NULL, NULL, err,
                                  sizeof err) < 0) {
        fprintf(stderr, "wsgictl: %s\n", err);
        return NULL;
    }
    if (conf.control == NULL) {
        fprintf(stderr, "wsgictl: %s has no `control:` socket\n", config);
        wd_config_free(&conf);
        return NULL;
    }
    path = strdup(conf.control);
    wd_config_free(&conf);
    return path;
}
