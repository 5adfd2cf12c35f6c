/* wsgictl's connection to the master: finding the control socket and one request/reply
 * exchange (daemon/master/control.h: one JSON object per line each way). */
#ifndef WD_CLIENT_CTL_H
#define WD_CLIENT_CTL_H

#include <jansson.h>
#include <signal.h>

/* The control socket: -s SOCKET, $WSGID_CONTROL, or `control:` of -c FILE (default
 * ./wsgid.yaml). A malloc'd path, or NULL with a message printed. */
char *wd_ctl_find_socket(const char *sock, const char *config);

/* Sends request, waits for the one-line reply, at most timeout_ms (0: as long as it takes, for a
 * rolling restart). Returns the reply (a new reference), or NULL with a message printed: the
 * daemon cannot be reached, or did not answer in time (a stopped master kept wsgictl, and top,
 * waiting for ever); or NULL without one when a signal set *stop (top's ^C). */
#define WD_CTL_QUERY_TIMEOUT_MS 10000
json_t *wd_ctl_call(const char *path, json_t *request, int timeout_ms, volatile sig_atomic_t *stop);

/* s (a string of a reply: an app's error, a request's path) with its control characters but
 * newline and tab escaped as \xNN (C1 ones as \u00NN), so that it cannot drive the terminal (an
 * import error with ESC [2J cleared the screen of wsgictl status); "" for NULL. The result lives
 * until 16 more calls. */
const char *wd_ctl_safe(const char *s);

#endif
