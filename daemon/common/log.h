/* The error log and the access log.
 *
 * Every line carries a timestamp, the level and who speaks ("master" or "site1:1234"), and the
 * caller adds what the line concerns (request id, peer). Lines are written with one write(2) each,
 * so lines from several threads and processes sharing a file never interleave. */
#ifndef WD_DAEMON_LOG_H
#define WD_DAEMON_LOG_H

#include "config.h"
#include <stdarg.h>

/* Sets who speaks ("master" or "GROUP:PID") and the level. Safe to call again. */
void wd_log_init(const char *who, wd_log_level_t level);
/* Opens (or reopens, for logrotate) the error and access logs. "-" is stderr, "off" none.
 * Returns 0 or -errno (the old files stay open on failure). */
int wd_log_open(const char *error_path, const char *access_path);
int wd_log_level_enabled(wd_log_level_t level);
/* The error log's fd (2 for stderr), which stays the same across reopens; -1 when "off". */
int wd_log_fd(void);

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

/* Writes one finished line (with its '\n') to the access log, if there is one. */
void wd_log_access(const char *line, size_t len);
int wd_log_access_enabled(void);

/* Writes raw text to the error log as it is (a Python traceback, say), prefixed per line. */
void wd_log_text(wd_log_level_t level, const char *prefix, const char *text, size_t len);

#endif
