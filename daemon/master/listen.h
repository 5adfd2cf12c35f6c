/* The listening sockets. The master binds every listener of every group before any worker starts
 * and keeps them open for its whole life, so that a worker restart never closes a socket and no
 * connection is refused while a group restarts (design §1); only a stopped group's listeners
 * refuse connections, until it starts again (wd_listen_pause). Workers inherit them as fds
 * WD_WORKER_FD_LISTEN.. (7.., spawn.h). */
#ifndef WD_DAEMON_LISTEN_H
#define WD_DAEMON_LISTEN_H

#include "config.h"

#include <sys/types.h>

typedef struct wd_listen {
    int fd;                       /* -1 when closed */
    const wd_group_conf_t *group; /* borrowed from the config */
    const wd_listen_conf_t *conf; /* borrowed from the config */
    int created;                  /* 1 when we created the unix socket file */
    dev_t dev;                    /* of that file, so that we only ever remove our own */
    ino_t ino;
    int activated; /* 1 when the fd was passed by systemd (socket activation) */
    int paused;    /* 1 while it refuses connections (wd_listen_pause) */
} wd_listen_t;

/* Socket activation: when $LISTEN_PID is our pid, takes the $LISTEN_FDS descriptors (3..3+N-1,
 * named by the optional $LISTEN_FDNAMES) that systemd passed us, marks them close-on-exec and
 * removes LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES from the environment. wd_listen_open calls it
 * itself the first time; calling it earlier is harmless. Returns the number of fds taken. */
int wd_listen_activation_init(void);

/* Warns about every passed fd that no listener took, and closes it. Call once every listener
 * has been opened. */
void wd_listen_activation_done(void);

/* Binds and listens on one address of a group: non-blocking, close-on-exec, backlog 1024.
 * When systemd passed a socket bound to the same address (unix path, or IP + port), that
 * socket is used instead ("using the socket passed by systemd") and never unlinked by us.
 * A unix socket file left by a dead process is replaced; one that a live process answers on is
 * an error. Applies socket-mode / socket-user / socket-group to unix sockets (to the file bound,
 * not through its path: see wd_listen_reapply).
 * Returns 0 or -errno, having logged the error with the group and the address. */
int wd_listen_open(wd_listen_t *l, const wd_group_conf_t *group, const wd_listen_conf_t *conf);

/* A unix socket we created, kept across a reload: socket-mode, and socket-user / socket-group
 * where set, as group now says (they were applied only when it was bound), once the reload's
 * change is committed. They are applied to the file the socket is bound to, and only while its
 * path still names that file: never through a symbolic link put there since. 0 or -errno, having
 * logged the error. Any other listener: 0, nothing done. */
int wd_listen_reapply(wd_listen_t *l, const wd_group_conf_t *group, const wd_listen_conf_t *conf);

/* A stopped group's listener stops taking connections but keeps its address: the connections
 * waiting in its backlog are reset and new ones refused, so that a proxy without active health
 * checks (nginx's proxy_next_upstream) tries another server at once instead of waiting on a group
 * that does not run (measured in tests/fleet: a stopped group held nginx's requests until
 * `wsgictl start`). shutdown(SHUT_RD) of a listening socket, as HAProxy pauses its own; resume
 * listens again. Linux cannot listen on a unix socket again after a shutdown: resume binds a new
 * one at its path (the file must still be the one bound; else it says so and fails). A unix
 * socket left queueing had nginx wait proxy_read_timeout for each request, then answer 504. A
 * socket passed by systemd is left as it is, as it outlives us: connections to it wait for the
 * next start. Both return 0 or -errno, having logged the error. */
int wd_listen_pause(wd_listen_t *l);
/* Why the last wd_listen_open that failed did ("" before any), as it logged it: for a reply. */
const char *wd_listen_last_error(void);
int wd_listen_resume(wd_listen_t *l);

/* Closes the fd and removes the socket file if we created it and it is still ours. */
void wd_listen_close(wd_listen_t *l);

#endif
