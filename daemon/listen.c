/* The listening sockets: see listen.h. */
#include "listen.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define WD_LISTEN_BACKLOG 1024

/* What the operator wrote, with unix paths made absolute, for messages. */
static void describe(const wd_listen_conf_t *conf, char *buf, size_t cap)
{
    if (conf->is_unix)
        snprintf(buf, cap, "unix:%s", conf->path);
    else
        snprintf(buf, cap, "%s", conf->spec);
}

static void fail_msg(const wd_group_conf_t *group, const wd_listen_conf_t *conf, const char *what)
{
    char addr[512];

    describe(conf, addr, sizeof addr);
    wd_log_error("group %s: cannot listen on %s: %s", group->name, addr, what);
}

/* A socket file is stale when nothing accepts on it any more: connect() is refused. A listener
 * whose backlog is full answers EAGAIN on a non-blocking connect, which still means "alive".
 * Returns 1 stale (or gone), 0 alive, -errno when we cannot tell. */
static int unix_is_stale(const struct sockaddr_un *sun)
{
    int fd, rc;

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0)
        rc = 0;
    else if (errno == ECONNREFUSED || errno == ENOENT)
        rc = 1;
    else if (errno == EAGAIN || errno == EINPROGRESS)
        rc = 0;
    else
        rc = -errno;
    close(fd);
    return rc;
}

/* Clears the way for bind(): a missing parent directory is created (one level, like a run/
 * directory next to the config), a stale socket is removed, anything else is refused. */
static int unix_prepare(const wd_group_conf_t *group, const wd_listen_conf_t *conf,
                        const struct sockaddr_un *sun)
{
    struct stat st;
    char dir[sizeof sun->sun_path];
    char *slash;
    int rc;

    if (lstat(conf->path, &st) < 0) {
        if (errno != ENOENT) {
            rc = -errno;
            fail_msg(group, conf, strerror(-rc));
            return rc;
        }
        snprintf(dir, sizeof dir, "%s", conf->path);
        slash = strrchr(dir, '/');
        if (slash != NULL && slash != dir) {
            *slash = '\0';
            if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                rc = -errno;
                fail_msg(group, conf, strerror(-rc));
                return rc;
            }
        }
        return 0;
    }
    if (!S_ISSOCK(st.st_mode)) {
        fail_msg(group, conf, "a file that is not a socket is in the way");
        return -EEXIST;
    }
    rc = unix_is_stale(sun);
    if (rc == 0) {
        fail_msg(group, conf, "in use by another process");
        return -EADDRINUSE;
    }
    if (rc < 0) {
        fail_msg(group, conf, strerror(-rc));
        return rc;
    }
    wd_log_info("group %s: removing the stale socket %s", group->name, conf->path);
    if (unlink(conf->path) < 0 && errno != ENOENT) {
        rc = -errno;
        fail_msg(group, conf, strerror(-rc));
        return rc;
    }
    return 0;
}

static int unix_owner(const wd_group_conf_t *group, const wd_listen_conf_t *conf)
{
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    struct passwd *pw;
    struct group *gr;
    char msg[256];

    if (group->socket_user != NULL) {
        pw = getpwnam(group->socket_user);
        if (pw == NULL) {
            snprintf(msg, sizeof msg, "socket-user: no such user \"%s\"", group->socket_user);
            fail_msg(group, conf, msg);
            return -ENOENT;
        }
        uid = pw->pw_uid;
    }
    if (group->socket_group != NULL) {
        gr = getgrnam(group->socket_group);
        if (gr == NULL) {
            snprintf(msg, sizeof msg, "socket-group: no such group \"%s\"", group->socket_group);
            fail_msg(group, conf, msg);
            return -ENOENT;
        }
        gid = gr->gr_gid;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(conf->path, uid, gid) < 0) {
        snprintf(msg, sizeof msg, "chown: %s", strerror(errno));
        fail_msg(group, conf, msg);
        return -EPERM;
    }
    return 0;
}

static int open_unix(wd_listen_t *l, const wd_group_conf_t *group, const wd_listen_conf_t *conf)
{
    struct sockaddr_un sun;
    struct stat st;
    int mode = group->socket_mode >= 0 ? group->socket_mode : 0660;
    int fd = -1, rc;

    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(conf->path) >= sizeof sun.sun_path) {
        fail_msg(group, conf, "the path is too long for a unix socket (107 bytes at most)");
        return -ENAMETOOLONG;
    }
    memcpy(sun.sun_path, conf->path, strlen(conf->path));

    rc = unix_prepare(group, conf, &sun);
    if (rc < 0)
        return rc;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        rc = -errno;
        fail_msg(group, conf, strerror(-rc));
        goto fail;
    }
    l->created = 1;
    if (stat(conf->path, &st) == 0) {
        l->dev = st.st_dev;
        l->ino = st.st_ino;
    }
    if (chmod(conf->path, (mode_t)mode) < 0) {
        rc = -errno;
        fail_msg(group, conf, strerror(-rc));
        goto fail;
    }
    rc = unix_owner(group, conf);
    if (rc < 0)
        goto fail;
    l->fd = fd;
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    l->fd = -1;
    if (l->created)
        unlink(conf->path);
    l->created = 0;
    return rc;
}

static int open_tcp(wd_listen_t *l, const wd_group_conf_t *group, const wd_listen_conf_t *conf)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[16];
    int fd = -1, rc, one = 1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof port, "%d", conf->port);
    rc = getaddrinfo(conf->host != NULL && conf->host[0] != '\0' ? conf->host : NULL, port, &hints,
                     &res);
    if (rc != 0) {
        fail_msg(group, conf, gai_strerror(rc));
        return -EADDRNOTAVAIL;
    }

    /* A name may resolve to several addresses ("localhost": ::1 and 127.0.0.1); one listen entry
     * is one socket for the workers, so the first address that binds wins. */
    rc = -EADDRNOTAVAIL;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        rc = -errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fail_msg(group, conf, strerror(-rc));
        return rc;
    }
    l->fd = fd;
    return 0;
}

int wd_listen_open(wd_listen_t *l, const wd_group_conf_t *group, const wd_listen_conf_t *conf)
{
    int rc;

    memset(l, 0, sizeof *l);
    l->fd = -1;
    l->group = group;
    l->conf = conf;
    rc = conf->is_unix ? open_unix(l, group, conf) : open_tcp(l, group, conf);
    if (rc < 0)
        return rc;
    if (listen(l->fd, WD_LISTEN_BACKLOG) < 0) {
        rc = -errno;
        fail_msg(group, conf, strerror(-rc));
        wd_listen_close(l);
        return rc;
    }
    return 0;
}

void wd_listen_close(wd_listen_t *l)
{
    struct stat st;

    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    /* Only remove the file if it is still the socket we bound: another wsgid may have replaced
     * a file that we were told was ours (by an operator deleting it, say). */
    if (l->created && stat(l->conf->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
        unlink(l->conf->path);
    l->created = 0;
}
