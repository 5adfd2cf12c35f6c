/* The error log and the access log.
 *
 * Every line carries a timestamp, the level and who speaks ("master" or "site1:1234"), and the
 * caller adds what the line concerns (request id, peer). Lines are written with one write(2) each,
 * so lines from several threads of a process never interleave; a worker's go to the master
 * through pipes, which it writes to the files in whole lines (daemon/master/master_logpipe.c). */
#ifndef WD_DAEMON_LOG_H
#define WD_DAEMON_LOG_H

#include "config.h"
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>

/* Sets who speaks ("master" or "GROUP:PID") and the level. Safe to call again. */
void wd_log_init(const char *who, wd_log_level_t level);
/* The same for a worker of group: "GROUP:PID", the pid its own in a child it forks too. */
void wd_log_init_worker(const char *group, wd_log_level_t level);
/* Opens (or reopens, for logrotate) the error and access logs. "-" is stderr, "off" none.
 * Returns 0 or -errno (the old files stay open on failure). The master's: a worker never opens
 * a log by name, the master gives it the files (wd_log_use). */
int wd_log_open(const char *error_path, const char *access_path);
/* Opens a log file path to append to, creating it 0640 (less the umask): the fd (non-blocking:
 * the master, which alone writes the logs, must not wait for a FIFO), or -errno.
 * Started as root, wsgid writes its lines and its workers' through no symbolic link at the end
 * of path (-ELOOP), into no file with other hard links (-EMLINK), and into a FIFO only in a
 * directory that only root may write (-WD_LOG_ENOTFILE): a group's user who may write the
 * directory could otherwise point the path at any file, which root would then append to, or
 * read the lines and hold wsgid up (helper-72). */
#define WD_LOG_ENOTFILE ENOSTR
/* ... and through a symbolic link on the way (a directory of the path) only if the link is root's
 * or the directory that holds it is only root's to write (-WD_LOG_EUNSAFE): the group's user
 * could otherwise swap a directory of its own for a link to anywhere (helper-79). */
#define WD_LOG_EUNSAFE ENOLINK
int wd_log_file_open(const char *path);
/* Why wd_log_file_open failed, for a message that goes on "cannot open the access log PATH: ". */
const char *wd_log_file_why(int rc);
/* Where the logs go from now on: an fd to take over (a file the master opened), or one of: */
#define WD_LOG_STDERR (-1) /* "-" */
#define WD_LOG_OFF (-2)    /* "off" */
void wd_log_use(int error_fd, int access_fd);
/* What "-" writes to, instead of fd 2: a worker's fd 2 is a pipe the master reads, and its own
 * lines go to the master's stderr, which it is given as another fd (spawn.h). */
void wd_log_use_stderr(int fd);
int wd_log_level_enabled(wd_log_level_t level);
/* The error log's fd (stderr's for "-"), which stays the same across reopens; -1 when "off". */
int wd_log_fd(void);
/* The error log's path as last opened ("-" for stderr). */
const char *wd_log_path(void);
/* The master's, once it supervises: its lines go to sink (its loop thread's alone), which never
 * waits for the file (master_logs.c); before that, and with NULL, they are written to the error
 * log at once, waiting for room, so that a user sees a start's errors before wsgid exits. */
void wd_log_set_sink(void (*sink)(const char *line, size_t n));
/* A line as wd_log makes it, with its stamp and its newline, in buf: its length. */
size_t wd_log_format(char *buf, size_t cap, wd_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

void wd_log(wd_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void wd_log_v(wd_log_level_t level, const char *fmt, va_list ap);
#define wd_log_error(...) wd_log(WD_LOG_ERROR, __VA_ARGS__)
#define wd_log_warn(...) wd_log(WD_LOG_WARN, __VA_ARGS__)
#define wd_log_info(...) wd_log(WD_LOG_INFO, __VA_ARGS__)
#define wd_log_debug(...)                                                                          \
    do {                                                                                           \
        if (wd_log_level_enabled(WD_LOG_DEBUG))                                                    \
            wd_log(WD_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

/* Lines a peer can trigger at will (bad input, a client going away, a refused PROXY header): at
 * most WD_LOG_BURST a second from one call site, so that a flood of bad requests is not a flood of
 * log lines (design §8). The lines left out are counted in the next one that gets through:
 * "... [37 more like this were left out]". */
#define WD_LOG_BURST 5
typedef struct wd_log_rate {
    uint64_t second;             /* the second (CLOCK_MONOTONIC) the count is for */
    unsigned n;                  /* lines written in it */
    unsigned long long left_out; /* since the last line written */
} wd_log_rate_t;

/* Whether a line goes out at now_s (seconds): 1, with *left_out the lines left out before it
 * (then reset), or 0 (counted). Pure; the caller serialises (wd_log_rated does). */
int wd_log_rate_pass(wd_log_rate_t *r, uint64_t now_s, unsigned long long *left_out);
void wd_log_rated(wd_log_rate_t *r, wd_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* wd_log(level, ...) through a rate of its own call site's. */
#define wd_log_peer(level, ...)                                                                    \
    do {                                                                                           \
        static wd_log_rate_t wd_log_rate_;                                                         \
        wd_log_rated(&wd_log_rate_, (level), __VA_ARGS__);                                         \
    } while (0)

/* A worker's logs are pipes to the master (spawn.h), which appends what comes to the files: no
 * worker holds a log file another group or the master writes (helper-79). Its write ends are
 * non-blocking, so that the worker's loop never waits for the master: an error log line (at most
 * PIPE_BUF, so whole) of the loop thread's that a full pipe refuses is dropped (a Python thread
 * waits for room, as it did for a file); an access log line waits in the worker, then it is
 * dropped too: WD_LOG_PENDING_MAX at most wait beside a pipe of WD_LOG_PIPE_SIZE, and beside a
 * smaller one what it lacks too (so that WD_LOG_PIPE_SIZE + WD_LOG_PENDING_MAX may be in flight
 * whatever the pipe). What was dropped is counted, and said in the next error log line that
 * goes, with the pipe's size. The master asks WD_LOG_PIPE_SIZE for each pipe; the kernel may
 * give less (master_logpipe.c). */
#define WD_LOG_PIPE_SIZE (1 << 20)
#define WD_LOG_PENDING_MAX (64 * 1024)
#define WD_LOG_BATCH (16 * 1024) /* the loop thread's access lines written at once at most */
#define WD_LOG_LINE_MAX 8192     /* an access log line's longest (daemon/worker/conn_log.c) */

/* The calling thread (the worker's loop thread) never waits for the pipes: an error log line
 * that a full pipe refuses is dropped and counted (other threads wait for room), and its access
 * log lines are kept until wd_log_flush, which it calls at the end of each turn of its loop. */
void wd_log_no_wait(void);
/* The calling thread, a Python thread of a worker, holds the loop's lock (on) or let go of it
 * (0): it runs the loop's code meanwhile (parking, daemon/worker/handoff.h), and its error log
 * lines do not wait for the pipe either, as the loop thread's: a line waiting there held the
 * whole loop up, every connection of the worker, for as long as the master read nothing. */
void wd_log_loop_held(int on);

/* Writes one finished line (with its '\n', at most WD_LOG_LINE_MAX) to the access log, if there
 * is one. The caller serialises (in a worker, the loop's lock: the loop thread, or a parked
 * thread), as what waits for the pipe is the loop's. */
void wd_log_access(const char *line, size_t len);
/* Writes what waits for the access log's pipe, if it takes it; with wait, waits for it to (a
 * worker that exits); then says what was dropped, if any. 0 once nothing waits, -1 otherwise:
 * the loop polls wd_log_access_fd for room and calls it again (daemon/worker/worker.c).
 * The loop thread's. */
int wd_log_flush(int wait);
int wd_log_access_enabled(void);
/* The access log's fd (a worker's: its pipe to the master), or -1 when there is none. */
int wd_log_access_fd(void);
/* The worker's loop polls that pipe for room (on), or does not (wd_log_flush says when it must). */
void wd_log_set_polled(int on);
/* Lines wait for the pipe and nobody polls it: a thread that held the loop's lock while the loop
 * slept (a parked one, handoff.h) left them, and the loop must turn to poll, or they waited for
 * its next tick. The loop's lock held. */
int wd_log_unpolled(void);

/* Writes raw text to the error log as it is (a Python traceback, say), prefixed per line. */
void wd_log_text(wd_log_level_t level, const char *prefix, const char *text, size_t len);

#endif
