/* wsgictl's connection to the master: finding the control socket and one request/reply
 * exchange (daemon/master/control.h: one JSON object per line each way). */
#ifndef WD_CLIENT_CTL_H
#define WD_CLIENT_CTL_H

#include <jansson.h>

/* The control socket: -s SOCKET, $WSGID_CONTROL, or `control:` of -c FILE (default
 * ./wsgid.yaml). A malloc'd path, or NULL with a message printed. */
char *wd_ctl_find_socket(const char *sock, const char *config);

/* Sends request, waits for the one-line reply (a rolling restart may take a while). Returns the
 * reply (a new reference), or NULL with a message printed: the daemon cannot be reached. */
json_t *wd_ctl_call(const char *path, json_t *request);

#endif
