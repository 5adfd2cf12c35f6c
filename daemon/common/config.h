/* The YAML configuration (design §4): loading, checking, and the structures the master and the
 * workers read. Every error names file:line:column and the key. Relative paths are resolved
 * against the directory of the file at load time, so that everything below holds absolute paths
 * (except `app` when it is a "module:callable" name). */
#ifndef WD_DAEMON_CONFIG_H
#define WD_DAEMON_CONFIG_H

#include "cidr.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum wd_protocol {
    WD_PROTOCOL_AUTO = 0,
    WD_PROTOCOL_UWSGI,
    WD_PROTOCOL_HTTP,
    WD_PROTOCOL_FASTCGI,
} wd_protocol_t;

typedef enum wd_log_level {
    WD_LOG_ERROR = 0,
    WD_LOG_WARN,
    WD_LOG_INFO,
    WD_LOG_DEBUG,
} wd_log_level_t;

typedef struct wd_listen_conf {
    char *spec; /* as written, e.g. "unix:run/a.sock" or "127.0.0.1:8080" */
    int is_unix;
    char *path; /* unix: absolute path */
    char *real; /* unix: path with its directories' symbolic links resolved, to compare */
    char *host; /* tcp: host part ("127.0.0.1", "::1" from "[::1]:80", "0.0.0.0", "localhost") */
    int port;   /* tcp: 1..65535 */
    int dual;   /* "::" takes IPv4 too (the metrics and agent listeners, one address each) */
} wd_listen_conf_t;

typedef struct wd_env_conf {
    char *name;
    char *value;
    int line, column; /* of the name in the file, for messages */
} wd_env_conf_t;

/* application-group (mod_wsgi's WSGIApplicationGroup): which interpreter of the worker runs an
 * app. "%{GLOBAL}" is the main interpreter (the default: C extensions such as numpy refuse or
 * misbehave in sub-interpreters); "%{RESOURCE}" a sub-interpreter of the app's own; any other
 * name one sub-interpreter shared by every app of the group that gives it. */
#define WD_APP_GROUP_GLOBAL "%{GLOBAL}"
#define WD_APP_GROUP_RESOURCE "%{RESOURCE}"

/* `mounts: {PREFIX: APP}` or `{PREFIX: {app: APP, application-group: ..., python-path: [...],
 * env: {...}, chdir: DIR}}`: more apps in the same group, chosen by the longest URL prefix; the
 * group's own `app` (optional when there are mounts) serves what no mount matches. */
typedef struct wd_mount_conf {
    char *prefix; /* "/blog" (no trailing '/'), or "/" */
    char *app;    /* as wd_group_conf_t.app */
    int app_is_script;
    char *callable;          /* "application" unless app says "module:name" */
    char *application_group; /* NULL = the group's */
    char **python_path;      /* absolute; added to the group's in this app's interpreter */
    size_t n_python_path;
    wd_env_conf_t *env; /* set in this app's interpreter (os.environ) before it is imported */
    size_t n_env;
    char *chdir; /* absolute, NULL = not set: the working directory of its import and requests */
    int line, column;                     /* where the mount is defined, for messages */
    int app_group_line, app_group_column; /* where its application-group is given */
} wd_mount_conf_t;

/* processes: 1 .. this. A group's scoreboard holds twice as many records (scoreboard.h). */
#define WD_CONFIG_PROCESSES_MAX 1024

typedef struct wd_group_conf {
    char *name;
    int line; /* where the group is defined, for messages */

    char *app;          /* absolute script path, or "package.module:callable" / "package.module";
                           NULL when the group only has mounts */
    int app_is_script;  /* 1 when app is a file path (ends in .py/.wsgi or contains '/') */
    char *callable;     /* default "application" (a ":name" suffix of app overrides it) */
    int processes;      /* default 1 */
    int processes_set;  /* 1 when the key was given: then wsgi.multiprocess is True */
    int threads;        /* default 15 */
    char *display_name; /* default "%{GROUP}" */
    wd_listen_conf_t *listen;
    size_t n_listen;        /* at least 1 */
    wd_protocol_t protocol; /* default auto */
    int socket_mode;        /* default 0660; -1 = not set */
    char *socket_user;      /* NULL = not set */
    char *socket_group;
    char **python_path; /* absolute */
    size_t n_python_path;
    char *python_home; /* absolute, NULL = not set */
    char *chdir;       /* absolute, NULL = not set */
    wd_env_conf_t *env;
    size_t n_env;
    char *user;  /* NULL = not set */
    char *group; /* NULL = not set */

    /* Recycling and timeouts (issue 3); seconds as doubles, 0 = off. */
    uint64_t maximum_requests;
    uint64_t maximum_requests_jitter;
    uint64_t max_connections;       /* per worker; 0 = from the open-file limit (wd_accept_size) */
    uint64_t response_memory_limit; /* per worker, all responses (out.h: budget) */
    uint64_t response_disk_limit;   /* per worker, all responses' spill files (out.h: budget) */
    double restart_interval;
    double inactivity_timeout;
    uint64_t memory_limit;   /* bytes */
    double request_timeout;  /* default 60 */
    double deadlock_timeout; /* default 60: the master replaces a worker whose loop stopped */
    double queue_timeout;    /* default 45 */
    double startup_timeout;  /* default 15 */
    double graceful_timeout; /* default 15 */
    double shutdown_timeout; /* default 5 */
    double drain_delay;      /* default 10: wsgictl drain serves this long, then stops */
    double
        ready_queue_wait; /* default 10: /readyz fails while every worker's queue waits this long */
    /* trusted-proxies: peers whose X-Forwarded-* / Forwarded are believed (HTTP). */
    wd_cidr_t *trusted_proxies;
    size_t n_trusted_proxies;
    int strip_forwarded;   /* strip-forwarded-headers: drop them from other peers' requests */
    int forwarded_rfc7239; /* forwarded-headers: forwarded (RFC 7239) rather than x-forwarded */
    int proxy_protocol;    /* proxy-protocol: each connection starts with a PROXY v1/v2 header */
    /* Client-side timeouts (0 = none): whole head (30), between body reads (60), idle keep-alive
     * connection (75), between two writes that make progress (60). */
    double header_timeout;
    double body_timeout;
    double keepalive_timeout;
    double send_timeout;
    /* busy-poll (default 10us, 0 = off): while requests are in flight the loop polls without
     * sleeping this long after its last piece of work, and a Python thread that finds the queue
     * empty checks it this long before it sleeps. */
    double busy_poll;
    /* pin-threads: each worker's Python threads share one CPU, the workers spread over the CPUs
     * the master may use (worker/affinity.h). WD_PIN_AUTO (the default): only when the workers
     * of every group are at least as many as those CPUs, so that none is left without. */
    int pin_threads;
    char *access_log;    /* per-group access log: NULL = the global one, "-", "off", a path */
    int access_log_json; /* access-log-format: json (else combined) */

    /* Sizes in bytes. */
    uint64_t limit_request_body;   /* default 10M; 0 = unlimited */
    uint64_t header_buffer_size;   /* default 64K; 1K .. 1M */
    uint64_t body_buffer_size;     /* default 1M */
    uint64_t body_memory_limit;    /* per worker, all bodies in memory (conn_body.c) */
    uint64_t body_disk_limit;      /* per worker, all bodies' temp files (conn_body.c) */
    uint64_t response_buffer_size; /* default 1M */
    uint64_t response_spill_limit; /* default 1G; >= response_buffer_size */

    wd_mount_conf_t *mounts; /* optional, in file order */
    size_t n_mounts;
    char *application_group; /* default "%{GLOBAL}"; a mount may give its own */

    /* reload-on-change (read by the master only): the group is rolled, as by `wsgictl restart`,
     * when its app scripts (main and mounts) or a file matching `watch` change. */
    int reload_on_change; /* default 0; a `watch:` list without the key turns it on */
    char **watch;         /* absolute patterns (pathglob.h); a directory with a last `**` segment */
    size_t n_watch;
} wd_group_conf_t;

enum { WD_PIN_OFF = 0, WD_PIN_ON = 1, WD_PIN_AUTO = 2 }; /* pin_threads */

typedef struct wd_config {
    char *path;               /* absolute path of the file */
    char *dir;                /* its directory */
    char *control;            /* absolute, NULL = not set */
    char *pidfile;            /* absolute, NULL = not set */
    wd_log_level_t log_level; /* default info */
    char *log_file;           /* "-" = stderr (default), else absolute */
    char *access_log;         /* "-" = stderr (default), "off" = none, else absolute */
    char *metrics;            /* "HOST:PORT", NULL = not set */
    char *metrics_host;       /* metrics split: "127.0.0.1", "::1", "0.0.0.0" (from ":PORT") */
    int metrics_port;         /* 1..65535, 0 = not set */
    char *agent_check;        /* `agent-check:` "HOST:PORT" (HAProxy's agent), NULL = not set */
    char *agent_host;
    int agent_port;
    /* `health:` "HOST:PORT": GET /livez, /readyz[/GROUP] alone; NULL = not set. The address of
     * `metrics:` too is allowed: that listener serves them already (health_port is 0 then). */
    char *health;
    char *health_host;
    int health_port;
    wd_group_conf_t *groups; /* in file order */
    size_t n_groups;         /* at least 1 */
} wd_config_t;

/* The application group a mount's app runs in (the mount's own, else the group's); with m NULL,
 * the group's own app's. */
const char *wd_app_group_of(const wd_group_conf_t *g, const wd_mount_conf_t *m);

/* Loads text (len bytes) as if read from the file at path (used for messages and to resolve
 * relative paths). Returns 0, or -1 with a message "FILE:LINE:COL: KEY: what is wrong" in err. */
int wd_config_load_string(wd_config_t *conf, const char *text, size_t len, const char *path,
                          char *err, size_t errlen);

/* Reads the file and loads it; *text_out (if not NULL) receives a malloc'd copy of the text and
 * *len_out its length, so the master can hand the very same bytes to its workers. */
int wd_config_load_file(wd_config_t *conf, const char *path, char **text_out, size_t *len_out,
                        char *err, size_t errlen);

/* The same, with flags: WD_CONFIG_NO_FILE_CHECKS looks nothing up on the file system (that the
 * scripts and watched paths exist). A worker reads the file the master checked, as its group's
 * user: another group's private directory, or a script removed since, is no concern of its
 * own (the file's check by each worker stopped every group for one group's missing script).
 * wsgictl needs the control socket only. */
#define WD_CONFIG_NO_FILE_CHECKS 1
int wd_config_load_string_flags(wd_config_t *conf, const char *text, size_t len, const char *path,
                                int flags, char *err, size_t errlen);
int wd_config_load_file_flags(wd_config_t *conf, const char *path, int flags, char **text_out,
                              size_t *len_out, char *err, size_t errlen);

void wd_config_free(wd_config_t *conf);

/* The text a group's workers get from the master instead of the file's (config_split.c): the
 * top-level keys and, under groups:, that group alone, so that no other group's env:, apps or
 * paths reach them (helper-72). text (len bytes) is a file wd_config_load_string took; parts[i]
 * is the i-th group of the file, in its order. Loaded (at the file's path, so that relative paths
 * resolve as in the file), a part gives that group's configuration as the whole file does; its
 * lines are its own. Returns 0, or -1 when text is no such file (nothing allocated). */
typedef struct wd_config_part {
    char *group; /* the group's name */
    char *text;  /* NUL-terminated */
    size_t len;
} wd_config_part_t;
int wd_config_split(const char *text, size_t len, wd_config_part_t **parts, size_t *n_parts);
void wd_config_split_free(wd_config_part_t *parts, size_t n);

/* Where a worker of g goes among every group's workers, in the file's order (pin-threads): returns
 * the index of its slot (1-based) and sets *workers to their number. The master says both to
 * the worker, whose configuration holds its own group only. */
int wd_config_worker_index(const wd_config_t *conf, const wd_group_conf_t *g, int slot,
                           int *workers);

const wd_group_conf_t *wd_config_group(const wd_config_t *conf, const char *name);
/* Whether two listen addresses would bind the same socket (a wildcard host covers the others). */
int wd_config_listen_same(const wd_listen_conf_t *a, const wd_listen_conf_t *b);

/* Parses "64K", "10M", "1G", "512" (bytes). Returns 0 or -1. */
int wd_config_parse_size(const char *s, uint64_t *out);
/* Writes every numeric key of g to f, one "name value" line each, from the key table: reload
 * compares groups with it, so a key added to the table needs no more code there. */
void wd_config_group_numbers(FILE *f, const wd_group_conf_t *g);

#endif
