/* The control socket's wire format, apart from the socket (control.c) and from what the commands
 * do (master.c): cutting the byte stream into lines, reading a line as a request, and naming its
 * command. Pure: no libuv, no I/O; tests/fuzz/fuzz_control.c drives these very functions. The
 * format itself is described in control.h. */
#ifndef WD_DAEMON_CONTROL_PROTO_H
#define WD_DAEMON_CONTROL_PROTO_H

#include <jansson.h>
#include <stddef.h>

/* Longest request line (control.c's read buffer): a longer one is refused. */
#define WD_CONTROL_LINE_MAX 65536

/* The next complete line of buf[0, len), its '\n' replaced by a NUL; *used = its length with the
 * '\n'. NULL when buf holds no complete line yet. An empty line is returned too (skip it). */
char *wd_control_line(char *buf, size_t len, size_t *used);

/* A line as a request: the JSON object (a new reference), or NULL with *error set to the reply to
 * send ({"ok": false, "error": ...}, a new reference; NULL only if jansson could not make it). */
json_t *wd_control_parse(const char *line, json_t **error);

typedef enum wd_control_cmd {
    WD_CONTROL_NONE = 0, /* no "cmd" string */
    WD_CONTROL_UNKNOWN,
    WD_CONTROL_STATUS,
    WD_CONTROL_RESTART,
    WD_CONTROL_RELOAD,
    WD_CONTROL_STOP,
    WD_CONTROL_START,
    WD_CONTROL_REOPEN_LOGS,
    WD_CONTROL_DRAIN,
    WD_CONTROL_UNDRAIN,
    WD_CONTROL_STACKS,
} wd_control_cmd_t;

typedef struct wd_control_command {
    wd_control_cmd_t cmd;
    const char *name;  /* the "cmd" string as sent (NULL for WD_CONTROL_NONE) */
    const char *group; /* a "group" string, else NULL (borrowed from the request) */
    int all;           /* "all": true */
} wd_control_command_t;

/* Names the command of request (a JSON object); the strings stay valid while request lives. */
void wd_control_decode(json_t *request, wd_control_command_t *c);

#endif
