/* The listening sockets: see listen.h. */
#include "listen.h"
#include "alloc.h"
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
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define WD_LISTEN_BACKLOG 1024
#define WD_LISTEN_FDS_START 3 /* SD_LISTEN_FDS_START */
#ifndef SIOCUNIXFILE
#define SIOCUNIXFILE (SIOCPROTOPRIVATE + 0) /* linux/un.h, which clashes with sys/un.h */
#endif

/* The sockets systemd passed us (socket activation), until a listener takes them. */
typedef struct activated {
    int fd;
    int taken;
    char name[64]; /* from LISTEN_FDNAMES, or "" */
} activated_t;

static int act_initialized;
static activated_t *act_fds;
static size_t act_n;

/* What the operator wrote, with unix paths made absolute, for messages. */
static void describe(const wd_listen_conf_t *conf, char *buf, size_t cap)
{
    if (conf->is_unix)
        snprintf(buf, cap, "unix:%s", conf->path);
    else
        snprintf(buf, cap, "%s", conf->spec);
}

static char last_error[768]; /* wd_listen_last_error */

static void fail_msg(const wd_group_conf_t *group, const wd_listen_conf_t *conf, const char *what)
{
    char addr[512];

    describe(conf, addr, sizeof addr);
    snprintf(last_error, sizeof last_error, "group %s: cannot listen on %s: %s", group->name, addr,
             what);
    wd_log_error("%s", last_error);
}

const char *wd_listen_last_error(void)
{
    return last_error;
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

/* socket-user / socket-group as uid / gid (-1: leave it), -ENOENT having said which is unknown. */
static int unix_owner_ids(const wd_group_conf_t *group, const wd_listen_conf_t *conf, uid_t *uid,
                          gid_t *gid)
{
    struct passwd *pw;
    struct group *gr;
    char msg[256];

    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (group->socket_user != NULL) {
        pw = getpwnam(group->socket_user);
        if (pw == NULL) {
            snprintf(msg, sizeof msg, "socket-user: no such user \"%s\"", group->socket_user);
            fail_msg(group, conf, msg);
            return -ENOENT;
        }
        *uid = pw->pw_uid;
    }
    if (group->socket_group != NULL) {
        gr = getgrnam(group->socket_group);
        if (gr == NULL) {
            snprintf(msg, sizeof msg, "socket-group: no such group \"%s\"", group->socket_group);
            fail_msg(group, conf, msg);
            return -ENOENT;
        }
        *gid = gr->gr_gid;
    }
    return 0;
}

/* What is at a socket's path instead of it, for a message. */
static const char *what_is_there(const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? "nothing (the socket file was removed or moved)"
                               : "a file wsgid cannot look at";
    if (S_ISLNK(st.st_mode))
        return "a symbolic link";
    if (S_ISSOCK(st.st_mode))
        return "another socket";
    return "a file that is not a socket";
}

/* An O_PATH descriptor of the very file sock is bound to, when conf->path names that file now (and
 * it is l's, when l has one); else -ESTALE (or -errno) with nothing opened. The ioctl
 * SIOCUNIXFILE (Linux 6.0, root) opens the inode the socket is bound to, whatever its path names
 * since; without it, the path is opened without following a symbolic link and must be a socket
 * (the one the bind made, or l's). The path is then looked up once more (lstat) to be sure it still
 * names that inode. The mode and owner are changed through the descriptor, never through the
 * path: a chmod or chown of the path follows a symbolic link, and the socket's directory may be
 * writable by a group's user (a run/ directory it owns), whose app could put a link to any root
 * file there between the bind or a reload and the change (helper-72: a reload made /etc/...
 * root:socket-group 0660). */
static int bound_file(int sock, const wd_listen_t *l, const wd_listen_conf_t *conf, struct stat *st)
{
    struct stat at;
    int pfd, rc = -ESTALE;

    pfd = ioctl(sock, SIOCUNIXFILE);
    if (pfd < 0)
        pfd = open(conf->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0)
        return errno == ENOENT ? -ESTALE : -errno;
    if (fstat(pfd, st) < 0)
        rc = -errno;
    else if (S_ISSOCK(st->st_mode) &&
             (!l->created || (st->st_dev == l->dev && st->st_ino == l->ino)) &&
             lstat(conf->path, &at) == 0 && at.st_dev == st->st_dev && at.st_ino == st->st_ino)
        return pfd;
    close(pfd);
    return rc;
}

/* socket-mode, socket-user and socket-group on the file pfd opened (bound_file). */
static int unix_apply(int pfd, const wd_group_conf_t *group, const wd_listen_conf_t *conf)
{
    int mode = group->socket_mode >= 0 ? group->socket_mode : 0660;
    char proc[64], msg[256];
    uid_t uid;
    gid_t gid;
    int rc;

    /* chmod needs a path: /proc's link to the descriptor is the inode itself, not a name. */
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
    if (chmod(proc, (mode_t)mode) < 0) {
        rc = -errno;
        snprintf(msg, sizeof msg, "chmod: %s", strerror(-rc));
        fail_msg(group, conf, msg);
        return rc;
    }
    rc = unix_owner_ids(group, conf, &uid, &gid);
    if (rc < 0)
        return rc;
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
        fchownat(pfd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
        snprintf(msg, sizeof msg, "chown: %s", strerror(errno));
        fail_msg(group, conf, msg);
        return -EPERM;
    }
    return 0;
}

/* Removes the socket file when it is still the one l bound. */
static void unlink_ours(const wd_listen_t *l, const wd_listen_conf_t *conf)
{
    struct stat st;

    if (l->created && lstat(conf->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
        unlink(conf->path);
}

static int open_unix(wd_listen_t *l, const wd_group_conf_t *group, const wd_listen_conf_t *conf)
{
    struct sockaddr_un sun;
    struct stat st;
    char msg[512];
    int fd = -1, pfd = -1, rc;

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
    /* Without SIOCUNIXFILE (wsgid not root, a kernel before 6.0) the file just made is known by
     * its path alone: a root-owned socket moved there in the microseconds between the bind and
     * bound_file's look would be taken for it. With it, the inode is the socket's own. */
    pfd = bound_file(fd, l, conf, &st);
    if (pfd < 0) {
        snprintf(msg, sizeof msg,
                 "right after the bind its path names %s, not the socket: another process that "
                 "may write to the directory replaced it; nothing was changed there: let root "
                 "alone write to the socket's directory",
                 what_is_there(conf->path));
        fail_msg(group, conf, msg);
        rc = -EADDRINUSE;
        goto fail;
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    l->created = 1;
    rc = unix_apply(pfd, group, conf);
    if (rc < 0)
        goto fail;
    close(pfd);
    l->fd = fd;
    return 0;

fail:
    if (pfd >= 0)
        close(pfd);
    if (fd >= 0)
        close(fd);
    l->fd = -1;
    unlink_ours(l, conf);
    l->created = 0;
    return rc;
}

int wd_listen_reapply(wd_listen_t *l, const wd_group_conf_t *group, const wd_listen_conf_t *conf)
{
    struct stat st;
    int pfd, rc;

    if (!conf->is_unix || !l->created || l->fd < 0)
        return 0;
    pfd = bound_file(l->fd, l, conf, &st);
    if (pfd < 0) {
        snprintf(last_error, sizeof last_error,
                 "group %s: unix:%s: socket-mode, socket-user and socket-group not applied: the "
                 "path names %s, not the socket the group bound; nothing was changed: remove what "
                 "is there, then `wsgictl stop %s` and `wsgictl start %s` bind the socket anew",
                 group->name, conf->path, what_is_there(conf->path), group->name, group->name);
        wd_log_error("%s", last_error);
        return pfd;
    }
    rc = unix_apply(pfd, group, conf);
    close(pfd);
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

/* ---- socket activation ----------------------------------------------------------------- */

static void activation_names(void)
{
    const char *names = getenv("LISTEN_FDNAMES");
    const char *p = names, *colon;
    size_t i, n;

    for (i = 0; p != NULL && i < act_n; i++) {
        colon = strchr(p, ':');
        n = colon != NULL ? (size_t)(colon - p) : strlen(p);
        snprintf(act_fds[i].name, sizeof act_fds[i].name, "%.*s", (int)n, p);
        p = colon != NULL ? colon + 1 : NULL;
    }
}

int wd_listen_activation_init(void)
{
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
    struct stat st;
    long pid, n;
    int fd;

    if (act_initialized)
        return (int)act_n;
    act_initialized = 1;
    if (pid_s == NULL || fds_s == NULL)
        goto out;
    pid = strtol(pid_s, NULL, 10);
    n = strtol(fds_s, NULL, 10);
    if (pid != (long)getpid() || n <= 0 || n > 4096)
        goto out;
    act_fds = xcalloc((size_t)n, sizeof *act_fds);
    for (fd = WD_LISTEN_FDS_START; fd < WD_LISTEN_FDS_START + n; fd++) {
        /* Ours from now on: not inherited by the workers (they get the listeners the master
         * hands them), and non-blocking like the sockets we bind ourselves. */
        if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
            wd_log_warn("socket activation: fd %d is not a socket; ignoring it", fd);
            continue;
        }
        fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        act_fds[act_n].fd = fd;
        act_n++;
    }
    activation_names();
    wd_log_info("socket activation: systemd passed %zu sockets", act_n);

out:
    /* Only we were meant to see these; the workers must not take them for theirs. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return (int)act_n;
}

static int is_wildcard(const struct sockaddr *sa)
{
    static const struct in6_addr any6 = IN6ADDR_ANY_INIT;

    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    return memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr, &any6, sizeof any6) == 0;
}

static int port_of(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

/* Whether the bound address `have` is what `want` (from the config) asks for. A wildcard
 * 0.0.0.0 entry also accepts systemd's usual dual-stack [::] socket on the same port. */
static int same_inet(const struct sockaddr *have, const struct sockaddr *want)
{
    if (port_of(have) != port_of(want))
        return 0;
    if (have->sa_family != want->sa_family)
        return have->sa_family == AF_INET6 && is_wildcard(have) && is_wildcard(want);
    if (have->sa_family == AF_INET)
        return ((const struct sockaddr_in *)have)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)want)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)have)->sin6_addr,
                  &((const struct sockaddr_in6 *)want)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

static int matches(int fd, const wd_listen_conf_t *conf)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct addrinfo hints, *res = NULL, *ai;
    char port[16];
    int type = 0, found = 0;
    socklen_t tlen = sizeof type;

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 || type != SOCK_STREAM)
        return 0;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (conf->is_unix) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;

        return ss.ss_family == AF_UNIX && len > offsetof(struct sockaddr_un, sun_path) &&
               strncmp(sun->sun_path, conf->path, sizeof sun->sun_path) == 0;
    }
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
        return 0;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof port, "%d", conf->port);
    if (getaddrinfo(conf->host != NULL && conf->host[0] != '\0' ? conf->host : NULL, port, &hints,
                    &res) != 0)
        return 0;
    for (ai = res; ai != NULL && !found; ai = ai->ai_next)
        found = (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
                same_inet((struct sockaddr *)&ss, ai->ai_addr);
    freeaddrinfo(res);
    return found;
}

/* The passed socket bound where conf says, or -1. */
static int take_activated(const wd_listen_conf_t *conf)
{
    size_t i;

    for (i = 0; i < act_n; i++) {
        if (!act_fds[i].taken && matches(act_fds[i].fd, conf)) {
            act_fds[i].taken = 1;
            return act_fds[i].fd;
        }
    }
    return -1;
}

void wd_listen_activation_done(void)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[INET6_ADDRSTRLEN + 112] = "?";
    size_t i;

    for (i = 0; i < act_n; i++) {
        if (act_fds[i].taken)
            continue;
        memset(&ss, 0, sizeof ss);
        len = sizeof ss;
        if (getsockname(act_fds[i].fd, (struct sockaddr *)&ss, &len) == 0) {
            if (ss.ss_family == AF_UNIX)
                snprintf(addr, sizeof addr, "unix:%s", ((struct sockaddr_un *)&ss)->sun_path);
            else if (getnameinfo((struct sockaddr *)&ss, len, addr, sizeof addr - 8, NULL, 0,
                                 NI_NUMERICHOST) == 0)
                snprintf(addr + strlen(addr), 8, ":%d", port_of((struct sockaddr *)&ss));
        }
        wd_log_warn("socket activation: the socket passed by systemd as fd %d%s%s (%s) matches "
                    "no listen entry; closing it",
                    act_fds[i].fd, act_fds[i].name[0] ? " named " : "", act_fds[i].name, addr);
        close(act_fds[i].fd);
    }
    free(act_fds);
    act_fds = NULL;
    act_n = 0;
}

int wd_listen_open(wd_listen_t *l, const wd_group_conf_t *group, const wd_listen_conf_t *conf)
{
    char addr[512];
    int rc;

    memset(l, 0, sizeof *l);
    last_error[0] = '\0';
    l->fd = -1;
    l->group = group;
    l->conf = conf;
    wd_listen_activation_init();
    l->fd = take_activated(conf);
    if (l->fd >= 0) {
        /* systemd bound it and applied SocketMode= and friends; we only use it. */
        l->activated = 1;
        describe(conf, addr, sizeof addr);
        wd_log_info("group %s: %s: using the socket passed by systemd", group->name, addr);
        rc = 0;
    } else {
        rc = conf->is_unix ? open_unix(l, group, conf) : open_tcp(l, group, conf);
    }
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

int wd_listen_pause(wd_listen_t *l)
{
    if (l->fd < 0 || l->activated || l->paused)
        return 0;
    if (shutdown(l->fd, SHUT_RD) < 0) {
        int rc = -errno;

        wd_log_error("group %s: %s: cannot stop taking connections: %s", l->group->name,
                     l->conf->spec, strerror(-rc));
        return rc;
    }
    /* A TCP listener's shutdown resets what waits in its backlog; a unix socket's keeps it, and
     * those clients would wait until the group starts (helper-79): they are taken and closed, so
     * that a proxy tries another server at once. */
    if (l->conf->is_unix) {
        int fd, n = 0;

        while ((fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0 ||
               errno == EINTR || errno == ECONNABORTED) {
            if (fd >= 0) {
                close(fd);
                n++;
            }
        }
        if (n > 0)
            wd_log_info("group %s: %s: closed %d connections that came as it stopped",
                        l->group->name, l->conf->spec, n);
    }
    l->paused = 1;
    return 0;
}

void wd_listen_close(wd_listen_t *l);

/* A unix socket shut down cannot listen again: a new one takes its path, where the file is still
 * the one bound by the socket paused, or none. Another file there (a group a reload gave the path
 * to, another process) is left to its owner, and the start fails saying so. */
static int unix_rebind(wd_listen_t *l)
{
    wd_listen_t fresh = {.fd = -1, .group = l->group, .conf = l->conf};
    struct stat st;
    int rc;

    if (lstat(l->conf->path, &st) == 0) {
        if (!l->created || st.st_dev != l->dev || st.st_ino != l->ino) {
            fail_msg(l->group, l->conf,
                     "another socket or file took its path while the group was stopped; remove "
                     "it, or give the group another path and reload");
            return -EADDRINUSE;
        }
        if (unlink(l->conf->path) < 0) {
            rc = -errno;
            fail_msg(l->group, l->conf, strerror(-rc));
            return rc;
        }
    }
    l->created = 0; /* the file is gone: if the new bind fails, closing l removes nothing */
    rc = open_unix(&fresh, l->group, l->conf);
    if (rc == 0 && listen(fresh.fd, WD_LISTEN_BACKLOG) < 0) {
        rc = -errno;
        fail_msg(l->group, l->conf, strerror(-rc));
        wd_listen_close(&fresh);
    }
    if (rc < 0)
        return rc;
    close(l->fd);
    l->fd = fresh.fd;
    l->created = fresh.created;
    l->dev = fresh.dev;
    l->ino = fresh.ino;
    l->paused = 0;
    return 0;
}

int wd_listen_resume(wd_listen_t *l)
{
    if (l->fd < 0 || !l->paused)
        return 0;
    if (l->conf->is_unix)
        return unix_rebind(l);
    if (listen(l->fd, WD_LISTEN_BACKLOG) < 0) {
        int rc = -errno;

        fail_msg(l->group, l->conf, strerror(-rc));
        return rc;
    }
    l->paused = 0;
    return 0;
}

void wd_listen_close(wd_listen_t *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    /* Only remove the file if it is still the socket we bound: another wsgid may have replaced
     * a file that we were told was ours (by an operator deleting it, say). */
    unlink_ours(l, l->conf);
    l->created = 0;
}
