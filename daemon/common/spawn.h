/* How the master starts a worker: the contract between daemon/master/ and daemon/worker/.
 *
 *   - it executes the wsgid binary again, the one the master runs (/proc/self/exe, even when a
 *     package upgrade has put another file at its path), with argv = { display name } only, so
 *     that ps shows the display name whole and nothing else;
 *   - the environment holds WSGID_WORKER="GROUP SLOT RECORD PLACE WORKERS" (slot 1-based, RECORD
 *     the index of its scoreboard record, PLACE its index among the WORKERS of every group in the
 *     file's order, for pin-threads) and WSGID_CONFIG=path of the config file (relative paths
 *     resolve against its directory; messages);
 *   - a master started as root starts every worker as root, with WD_WORKER_ENV_USER="UID GID
 *     NAME": the worker's first act is to take the user's groups (initgroups(NAME, GID)), GID and
 *     UID, and remove the variable; HOME, USER and LOGNAME are then that user's;
 *   - fd 3 (WD_WORKER_FD_MASTER) is a SOCK_STREAM socketpair end to the master,
 *     fd 4 (WD_WORKER_FD_CONFIG) is a memfd holding its group's part of the config text the
 *     master loaded: the top-level keys and its group alone (wd_config_split), read-only,
 *     fd 5 (WD_WORKER_FD_SCOREBOARD) is the scoreboard memfd (scoreboard.h),
 *     fd 6 (WD_WORKER_FD_STACKS) is the write end of a pipe whose read end the master keeps: on
 *     WD_WORKER_SIG_STACKS the worker writes its Python threads' stacks there (faulthandler),
 *     then the line WD_STACKS_END (`wsgictl stacks`, daemon/worker/stacks.h),
 *     fd 7 (WD_WORKER_FD_STDERR) is the master's stderr, where the worker's log lines go until
 *     it has its "logs" line (then it closes it: the master's stderr may be a file the master
 *     writes); fds 1 and 2 are pipes whose read ends the master keeps, and what comes there (a
 *     C library's messages, a fatal error's dump) it logs as the worker's
 *     (daemon/master/master_output.c),
 *     fds 8.. (WD_WORKER_FD_LISTEN) are the group's listening sockets in the order of `listen`.
 *   - messages on the master socket are lines. Worker to master: "ready\n" once its app is loaded
 *     and it accepts; "loading app FILE (mount /m)\n" before it imports each app and "loaded\n"
 *     once all are, so that the master's lines about a worker that hangs or dies in an import name
 *     that app; "failed MESSAGE\n" before it exits when the app cannot be loaded (the Python
 *     traceback has gone to the error log); "recycle REASON\n" when it wants to be replaced
 *     (maximum-requests reached, inactivity-timeout, a request stuck past request-timeout): the
 *     master then starts a replacement and, once that is ready, stops this one, as in a rolling
 *     restart; "unlistened\n" once it accepts no more after a "stop last"; "adopt INDEX IDLE_MS\n"
 *     with an idle kept connection accepted on its listener INDEX, idle IDLE_MS since its
 *     answer, or "adopt INDEX AGE_MS new\n" with one that has sent nothing yet, AGE_MS after its
 *     accept (or its PROXY header), either with " peer ADDR PORT TRUSTED" before the newline
 *     once a PROXY header named its client (proxy-protocol: ADDR "-" for a unix socket's,
 *     TRUSTED 1 if in trusted-proxies), whom the taker serves its requests as from (its
 *     descriptor as SCM_RIGHTS with the line's first byte), which a stopping worker hands over
 *     instead of closing it (daemon/worker/conn.c: wd__conn_hand_over): the
 *     master passes the line and the connection
 *     on to a ready worker of the group, of the same configuration, that listens there too
 *     (after the lines that wait for that worker's socket when it is full), or gives it back
 *     ("adopt INDEX back") when none runs; a worker whose socket the master has not read enough
 *     of to take the line sends it once it has room (worker.c: master_watch), its connection
 *     waiting meanwhile; any other file that comes is
 *     closed (master_life.c: drop_stray_files). Master to worker:
 *     "logs ERROR ACCESS\n" = its error log and its access log, each "fd" (the non-blocking
 *     write end of a pipe whose read end the master keeps, and whose lines it appends to the
 *     file: it comes with the line's first byte as SCM_RIGHTS, error log first) or "off"; the
 *     first line on a new worker's
 *     socket, written before it starts: a worker never opens a log, nor holds one
 *     (daemon/master/master_logs.c, master_logpipe.c; log.h); "stop\n" = stop
 *     accepting, finish in-flight and buffered responses, exit 0 (SIGTERM does the same);
 *     "stop last\n" = the same, its group (or wsgid) stopping: it first takes what waits in
 *     the listen queue, then says "unlistened", and the master shuts the group's TCP listeners
 *     once every worker has; "siblings RECORD:PID ...\n" = the ready workers of its group (itself
 * among them) by scoreboard record and pid, at most WD_SIBLINGS_MAX, sent to each of them and to
 * the group's stopping workers (which hand their kept connections over while it names a ready
 * one) whenever one becomes ready (daemon/worker/balance.h), before the worker it replaces is
 * told to stop;
 * "adopt INDEX IDLE_MS\n" with a connection, as above: the worker takes it as one it accepted on
 * its listener INDEX if it is a stream connection accepted there (daemon/worker/accept.c:
 * wd_accept_adopt), to wait keepalive-timeout less IDLE_MS for its next request (with " new":
 * header-timeout less AGE_MS for its first byte), and "adopt INDEX back" (with the " new" and
 * " peer ..." it went with) with one of its own that none could take, kept as it would have been
 * (closed once idle WD_STOP_IDLE_S) and not handed over again; "handed\n" = one of its "adopt"
 * lines was dealt with otherwise (passed on, or closed): a stopping worker ends only once each has
 * its answer, this or the connection back.
 *   - a worker whose app cannot be loaded exits with WD_WORKER_EXIT_APP. */
#ifndef WD_DAEMON_SPAWN_H
#define WD_DAEMON_SPAWN_H

#include <signal.h>

#define WD_WORKER_FD_MASTER 3
#define WD_WORKER_FD_CONFIG 4
#define WD_WORKER_FD_SCOREBOARD 5 /* see scoreboard.h */
#define WD_WORKER_FD_STACKS 6
#define WD_WORKER_FD_STDERR 7
#define WD_WORKER_FD_LISTEN 8

#define WD_WORKER_ENV_USER "WSGID_WORKER_USER" /* "UID GID NAME": who the worker becomes */

#define WD_SIBLINGS_MAX 32 /* workers named in a "siblings" line */

/* SIGURG, because its default action is to ignore it: a worker that has not set up its handler
 * yet (or any other process that gets it by mistake) is not killed. The workers never ask for
 * it (no F_SETOWN on their sockets), so it comes only from the master. */
#define WD_WORKER_SIG_STACKS SIGURG
#define WD_STACKS_END "--- wsgid: end of stacks ---\n"

#define WD_WORKER_EXIT_APP 3    /* the app could not be loaded */
#define WD_WORKER_EXIT_CONFIG 4 /* the config could not be read (should not happen) */

#endif
