/* systemd notification: see notify.h. The protocol is one datagram of "KEY=VALUE\n" lines to the
 * unix socket named by $NOTIFY_SOCKET; we speak it directly rather than link libsystemd. */
#include "notify.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int initialized;
static int warned;
static struct sockaddr_un notify_addr;
static socklen_t notify_len; /* 0: not notifying */

int wd_notify_init(void)
{
    const char *path;
    size_t len;

    if (initialized)
        return notify_len > 0;
    initialized = 1;
    path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 0;
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof notify_addr.sun_path) {
        wd_log_warn("NOTIFY_SOCKET=%s is not a unix socket path: not notifying systemd", path);
        unsetenv("NOTIFY_SOCKET");
        return 0;
    }
    memset(&notify_addr, 0, sizeof notify_addr);
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, path, len);
    if (path[0] == '@')
        notify_addr.sun_path[0] = '\0'; /* the abstract namespace */
    notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    unsetenv("NOTIFY_SOCKET");
    return 1;
}

int wd_notify_enabled(void)
{
    return wd_notify_init();
}

int wd_notify_send(const char *msg)
{
    int fd, rc = 0;

    if (!wd_notify_init())
        return 0;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&notify_addr, notify_len) < 0)
        rc = -errno;
    close(fd);

fail:
    /* systemd being away (a manual run with a stale variable) is not worth a line per event. */
    if (rc < 0 && !warned) {
        warned = 1;
        wd_log_warn("cannot notify systemd: %s", strerror(-rc));
    }
    return rc;
}

/* Sends the fixed lines `head` followed by "STATUS=<fmt...>" (when fmt is not NULL). */
static int send_with_status(const char *head, const char *fmt, va_list ap)
{
    char msg[1024];
    int n;

    n = snprintf(msg, sizeof msg, "%s", head);
    if (fmt != NULL && n >= 0 && (size_t)n < sizeof msg - 8) {
        memcpy(msg + n, "STATUS=", 7);
        vsnprintf(msg + n + 7, sizeof msg - (size_t)n - 7, fmt, ap);
        /* A status is one line: a newline inside it would start a bogus assignment. */
        for (char *p = msg + n + 7; *p != '\0'; p++)
            if (*p == '\n')
                *p = ' ';
    }
    return wd_notify_send(msg);
}

static int send_fixed(const char *head, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = send_with_status(head, fmt, ap);
    va_end(ap);
    return rc;
}

int wd_notify_ready(const char *status)
{
    char head[64];

    if (!wd_notify_init())
        return 0;
    snprintf(head, sizeof head, "READY=1\nMAINPID=%d\n", (int)getpid());
    return status != NULL ? send_fixed(head, "%s", status) : wd_notify_send(head);
}

int wd_notify_status(const char *fmt, ...)
{
    va_list ap;
    int rc;

    if (!wd_notify_init())
        return 0;
    va_start(ap, fmt);
    rc = send_with_status("", fmt, ap);
    va_end(ap);
    return rc;
}

int wd_notify_reloading(void)
{
    struct timespec ts;
    char head[96];

    if (!wd_notify_init())
        return 0;
    /* systemd >= 253 wants the monotonic time of the reload request next to RELOADING=1. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(head, sizeof head, "RELOADING=1\nMONOTONIC_USEC=%llu\n",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    return send_fixed(head, "%s", "reloading");
}

int wd_notify_stopping(void)
{
    if (!wd_notify_init())
        return 0;
    return send_fixed("STOPPING=1\n", "%s", "stopping");
}
