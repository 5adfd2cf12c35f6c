/* The ceiling backend: what nginx and wrk reach on this machine with a backend that costs almost
 * nothing. One thread, one epoll; no application, no parsing beyond finding the end of the
 * request; every request gets the same 13-byte hello.
 *
 *   ceiling UWSGI_SOCKET_PATH HTTP_SOCKET_PATH
 *
 * On the uwsgi socket it reads one packet (4-byte header + vars; no body), answers and closes, as
 * nginx's uwsgi_pass expects. On the HTTP socket it answers each head ending in a blank line with
 * Content-Length and keeps the connection (nginx proxy_pass with upstream keepalive).
 *
 * bench/run measures it behind the same nginx as the servers: a server's req/s over the
 * ceiling's is the share of what this machine allows that the server reaches. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define BUF 8192

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 13\r\n\r\nHello, World!";

typedef struct conn {
    int fd;
    int http;
    size_t len;
    char buf[BUF];
} conn_t;

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0 || strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "ceiling: %s: cannot make a socket\n", path);
        exit(1);
    }
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0) {
        fprintf(stderr, "ceiling: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    chmod(path, 0666);
    return fd;
}

static void drop(int ep, conn_t *c, int registered)
{
    if (registered)
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Answers every complete request in c->buf; returns 0 to keep the connection, -1 to close. */
static int serve(conn_t *c)
{
    if (!c->http) {
        size_t need;

        if (c->len < 4)
            return 0;
        need = 4 + ((size_t)(unsigned char)c->buf[1] | (size_t)(unsigned char)c->buf[2] << 8);
        if (c->len < need)
            return need > BUF ? -1 : 0;
        if (write(c->fd, reply, sizeof reply - 1) < 0) {
            /* The proxy went away: closing is all there is to do. */
        }
        return -1;
    }
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        size_t used;

        if (end == NULL)
            return c->len == BUF ? -1 : 0;
        used = (size_t)(end + 4 - c->buf);
        if (write(c->fd, reply, sizeof reply - 1) < 0)
            return -1;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }
}

/* Accepts what is waiting; reads each new connection at once (the request is usually there) and
 * watches it only when it is not complete or stays open. */
static void accept_all(int ep, int lfd, int http)
{
    int fd;

    while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct epoll_event e = {.events = EPOLLIN};
        conn_t *c = calloc(1, sizeof *c);
        ssize_t k;

        if (c == NULL)
            abort();
        c->fd = fd;
        c->http = http;
        k = read(fd, c->buf, BUF);
        if (k == 0 || (k < 0 && errno != EAGAIN)) {
            drop(ep, c, 0);
            continue;
        }
        c->len = k > 0 ? (size_t)k : 0;
        if (serve(c) < 0) {
            drop(ep, c, 0);
            continue;
        }
        e.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    }
}

int main(int argc, char **argv)
{
    struct epoll_event ev[256];
    int ep, lu, lh;

    if (argc != 3) {
        fprintf(stderr, "usage: ceiling UWSGI_SOCKET_PATH HTTP_SOCKET_PATH\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    lu = listen_unix(argv[1]);
    lh = listen_unix(argv[2]);
    ep = epoll_create1(EPOLL_CLOEXEC);
    ev[0] = (struct epoll_event){.events = EPOLLIN, .data.ptr = &lu};
    epoll_ctl(ep, EPOLL_CTL_ADD, lu, &ev[0]);
    ev[0] = (struct epoll_event){.events = EPOLLIN, .data.ptr = &lh};
    epoll_ctl(ep, EPOLL_CTL_ADD, lh, &ev[0]);
    for (;;) {
        int n = epoll_wait(ep, ev, 256, -1);

        for (int i = 0; i < n; i++) {
            conn_t *c = ev[i].data.ptr;
            ssize_t k;

            if (ev[i].data.ptr == &lu || ev[i].data.ptr == &lh) {
                accept_all(ep, *(int *)ev[i].data.ptr, ev[i].data.ptr == &lh);
                continue;
            }
            k = read(c->fd, c->buf + c->len, BUF - c->len);
            if (k <= 0) {
                if (k < 0 && errno == EAGAIN)
                    continue;
                drop(ep, c, 1);
                continue;
            }
            c->len += (size_t)k;
            if (serve(c) < 0)
                drop(ep, c, 1);
        }
    }
}
