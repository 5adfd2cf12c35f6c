/* systemd Type=notify (sd_notify(3) protocol, without libsystemd): datagrams to the unix socket
 * named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). Without NOTIFY_SOCKET
 * every call is a no-op. Best effort: a failed send is logged once as a warning. */
#ifndef WD_DAEMON_NOTIFY_H
#define WD_DAEMON_NOTIFY_H

/* Reads $NOTIFY_SOCKET once and removes it from the environment (workers must not notify).
 * Calling it is optional: the first notification does it. Returns 1 when notifying, else 0. */
int wd_notify_init(void);
int wd_notify_enabled(void);

/* Sends msg as it is ("KEY=VALUE" lines separated by '\n'). Returns 0 or -errno. */
int wd_notify_send(const char *msg);

/* "READY=1", "MAINPID=<pid>" and "STATUS=<status>" in one datagram (status may be NULL). */
int wd_notify_ready(const char *status);
/* "STATUS=..." (printf-style), e.g. "serving 2 groups, 5 workers", "restarting site1 2/4". */
int wd_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "RELOADING=1", "MONOTONIC_USEC=<now>" and "STATUS=reloading"; follow with wd_notify_ready()
 * when the reload is done. */
int wd_notify_reloading(void);
/* "STOPPING=1" and "STATUS=stopping". */
int wd_notify_stopping(void);

#endif
