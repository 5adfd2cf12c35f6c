/* Lines with files between the master and its workers (spawn.h): the files go as SCM_RIGHTS with
 * the first byte of their line. */
#ifndef WD_COMMON_SCM_H
#define WD_COMMON_SCM_H

#include <stddef.h>
#include <sys/types.h>

#define WD_SCM_MAX 4 /* files a message carries, at most */

/* sendmsg of len bytes with n_fds files (at most WD_SCM_MAX): the bytes sent, or -errno. */
int wd_scm_send(int sock, const char *bytes, size_t len, const int *fds, int n_fds, int flags);
/* recvmsg of up to cap bytes (close-on-exec files): the files that came are appended to fds,
 * *n_fds of max held; those past max are closed. The bytes read, 0 at the end, or -1 (errno). */
ssize_t wd_scm_recv(int sock, char *buf, size_t cap, int flags, int *fds, size_t *n_fds,
                    size_t max);

#endif
