/* See scm.h. */
#include "scm.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int wd_scm_send(int sock, const char *bytes, size_t len, const int *fds, int n_fds, int flags)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * WD_SCM_MAX)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {(void *)bytes, len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *c;
    ssize_t n;

    if (n_fds > WD_SCM_MAX)
        return -EINVAL;
    if (n_fds > 0) {
        memset(&ctl, 0, sizeof ctl);
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n_fds);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n_fds);
    }
    do
        n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : (int)n;
}

ssize_t wd_scm_recv(int sock, char *buf, size_t cap, int flags, int *fds, size_t *n_fds, size_t max)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * WD_SCM_MAX)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {buf, cap};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n;

    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof ctl.buf;
    n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        size_t k, nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int fd;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        for (k = 0; k < nfd; k++) {
            memcpy(&fd, CMSG_DATA(c) + k * sizeof fd, sizeof fd);
            if (*n_fds < max)
                fds[(*n_fds)++] = fd;
            else
                close(fd);
        }
    }
    return n;
}
