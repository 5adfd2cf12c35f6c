/* Names shared by the master's files only: the runtime model (the types below) and the functions
 * one file calls in another. The master is master.c (its life: setup, signals, teardown),
 * master_groups.c (config generations, the scoreboard, groups, slots, processes),
 * master_spawn.c (privileges, a worker's names and environment, spawning), master_life.c
 * (messages from a worker, stopping, exits and respawns), master_rolling.c (rolling operations,
 * reload), master_commands.c (status, control commands), master_watch.c (periodic checks and
 * the deadlock watchdog) and master_autoreload.c (reload-on-change: watching files, rolling a
 * group when they change). One thread: the master's libuv loop. */
#ifndef WD_DAEMON_MASTER_INT_H
#define WD_DAEMON_MASTER_INT_H

#include "master.h"
#include "control.h"
#include "listen.h"
#include "metrics.h"
#include "scoreboard.h"
#include "log.h"
#include "scm.h"

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <uv.h>

#define WD_MASTER_LINE_MAX 4096
#define WD_MASTER_QUICK_DEATH_MS 10000   /* a worker dying sooner than this is a crash loop */
#define WD_MASTER_STABLE_MS 30000        /* ready this long: the backoff starts over */
#define WD_MASTER_BACKOFF_MAX 60         /* seconds */
#define WD_MASTER_TICK_MS 1000           /* memory-limit, restart-interval, stopped checks */
#define WD_MASTER_STOPPED_MS 3000        /* a worker stopped (SIGSTOP) this long is killed */
#define WD_MASTER_RECYCLE_RETRY_MS 30000 /* a failed replacement of a recycling worker: retry */
#define WD_MASTER_KILL_SLACK_MS 1000     /* past a draining worker's timeouts, before SIGKILL */
#define WD_MASTER_DUMP_MS 1000     /* a deadlocked worker's stack dump (SIGUSR2), then SIGKILL */
#define WD_MASTER_DEATH_REQUESTS 4 /* running requests named when a worker is killed */

/* CLOCK_MONOTONIC in nanoseconds: the workers' clock (the scoreboard's start_ns, heartbeat_ns). */
static inline uint64_t wd__m_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct wd_gen wd_gen_t;
typedef struct wd_group wd_group_t;
typedef struct wd_slot wd_slot_t;
typedef struct wd_proc wd_proc_t;
typedef struct wd_op wd_op_t;
typedef struct wd_batch wd_batch_t;
typedef struct wd_autoreload wd_autoreload_t;
typedef struct wd_output wd_output_t;
typedef struct wd_logpipe wd_logpipe_t;
typedef struct wd_logdest wd_logdest_t;
typedef struct wd_say wd_say_t;

struct wd_gen {
    wd_config_t *conf;
    int owned; /* conf was loaded by us (a reload), not handed by main() */
    /* Per group of conf (fds[i] for conf->groups[i]), a memfd with the text its workers get:
     * the top-level keys and that group alone (wd_config_split: no other group's env:). */
    int *fds;
    size_t n_fds;
    int refs;
};

#define WD_MASTER_ADOPT_FDS 64 /* see wd_proc_t.adopt_fds */

typedef enum wd_proc_state {
    WD_PROC_STARTING, /* spawned, has not reported ready yet */
    WD_PROC_READY,
    WD_PROC_DRAINING, /* told to stop, finishing its requests */
} wd_proc_state_t;

struct wd_proc {
    uv_process_t process;
    uv_pipe_t pipe;   /* our end of the socketpair */
    uv_timer_t timer; /* startup-timeout, then the kill deadline */
    wd_master_t *m;
    wd_group_t *g;                /* holds a reference */
    wd_gen_t *gen;                /* the config it was started with (a reference) */
    const wd_group_conf_t *gconf; /* its group's there (a renamed group's name differs) */
    wd_slot_t *s;                 /* NULL once it has left its slot */
    int slot;
    int pid;    /* 0 once reaped */
    int record; /* scoreboard record, -1 once freed */
    wd_proc_state_t state;
    uint64_t started_at; /* uv_now(), ms */
    uint64_t ready_at;
    uint64_t recycle_at; /* restart-interval deadline, 0 = none */
    uint64_t rss;
    uint64_t ready_rss;  /* its RSS when it said ready (memory-limit: master_watch.c) */
    uint64_t stopped_at; /* first seen in state T (stopped), 0 = running */
    int recycling;       /* a replacement was asked for */
    int told_last;       /* told "stop last" (its group or wsgid stops): it takes the queue */
    int unlistened;      /* ... and then said it accepts no more */
    int deadlocked;      /* the watchdog found its loop stopped; killed shortly */
    int handles;         /* not closed yet; freed at 0 */
    int pipe_closed;
    int exited;    /* reaped: its last lines are read, but a "ready" among them counts no more */
    int skipping;  /* dropping the rest of an overlong line */
    int stacks_fd; /* the read end of its stacks pipe (spawn.h), -1 = none */
    wd_output_t *out[2];          /* what it writes to its stdout and stderr (master_output.c) */
    wd_logpipe_t *logs[2];        /* its error log and access log lines (master_logpipe.c) */
    wd_say_t *says, *says_last;   /* lines its socket did not take yet (wd__m_proc_say) */
    struct wd_say_room *say_room; /* ... sent when it has room: a poll (master_groups.c) */
    /* The connections that came with its last "adopt" lines, read past libuv (drain_socket in
     * master_life.c), in order: after any libuv holds. */
    int adopt_fds[WD_MASTER_ADOPT_FDS];
    size_t n_adopt_fds;
    char failed[512];
    /* What a starting worker said it loads ("app /srv/app.py (mount /reports)"): its lines
     * while it starts name it, so that a hang or a crash in an import says which app. */
    char loading[1024];
    wd_proc_t *next, *prev;
    size_t line_len;
    char line[WD_MASTER_LINE_MAX];
};

/* Called when a replacement of a slot is ready (ok = 1) or has failed (ok = 0, err says why). */
typedef void (*wd_repl_cb)(wd_slot_t *s, void *ctx, int ok, const char *err, int old_pid,
                           int new_pid);

struct wd_slot {
    uv_timer_t timer; /* respawn backoff */
    wd_group_t *g;
    int slot; /* 1-based */
    wd_proc_t *cur;
    wd_proc_t *repl;
    wd_repl_cb repl_cb;
    void *repl_ctx;
    int backing_off;
    unsigned restarts;
    unsigned backoff;    /* seconds waited before the last respawn after a quick death */
    int quick_respawned; /* a worker that was serving died soon after its start and was
                          * replaced at once; the next such death backs off */
    int ever_ready;
    uint64_t recycle_retry_at;
    char last_error[512];
    char last_restart[512]; /* why its worker was last replaced while serving (a recycle, a
                             * restart, a reload) */
    char recycle_why[256];  /* why the replacement on its way was started (recycling) */
    /* A worker asks to be recycled once (maximum-requests, inactivity-timeout, a request stuck
     * past request-timeout): its ask stays here until a replacement took over from it, and the
     * tick asks again for it after a replacement failed (wd__m_tick_cb). */
    int recycle_ask_pid;
    char recycle_ask[256];
    /* A reload's rolling change failed after this slot took a worker of the new config: it goes
     * back to the group's (a slot past the group's processes goes away), at the next tick
     * (wd__m_roll_back). */
    int roll_back;
};

struct wd_group {
    wd_master_t *m;
    char *name;
    wd_gen_t *gen;               /* a reference */
    const wd_group_conf_t *conf; /* in gen */
    wd_listen_t **ls;
    size_t n_ls;
    wd_slot_t **slots;
    int n_slots;
    int stopped; /* by `wsgictl stop GROUP`, or at the end of a drain */
    /* `wsgictl drain`: uv_now() when the group stops (0 = not draining); readiness fails till
     * then while it keeps serving (wd__m_drain_check, at every tick). */
    uint64_t drain_until;
    int removed; /* by a reload */
    int refs;    /* the master's list + its processes */
    int warned;
    const wd_group_conf_t *memory_warned; /* the config whose memory-limit it warned of */
    wd_op_t *op;                          /* the rolling operation in progress */
    wd_status_group_t totals;
    /* Its scoreboard (scoreboard.h): a memfd of WD_SCORE_MAX records, mapped by its workers
     * alone, each of which writes its own record and reads its siblings' (balance.h). One for
     * every group let any worker read the requests of every other group and write their
     * heartbeats (helper-72). NULL when it could not be made: its workers cannot start. */
    wd_score_t *score;
    int score_fd;
    unsigned char used[WD_SCORE_MAX];
    int n_records; /* of them it uses: WD_SCORE_MAX, or WSGID_SCORE_RECORDS */
    /* Its operation waits for a record to be freed (WD_BOARD_WAITING), or one was as a worker
     * exited (WD_BOARD_FREED: the operation goes on once the exit is handled). */
    int board_wait;
    int board_warned; /* said that every record is taken, until one is taken again */
    /* Why its last rolling operation failed, as the worker said ("" = it succeeded): shown by
     * `wsgictl status` until one succeeds; and which it was ("start", "restart", "reload"). */
    char reload_error[512];
    const char *failed_op;
};

enum { WD_BOARD_WAITING = 1, WD_BOARD_FREED = 2 };

typedef enum wd_op_kind { WD_OP_RESTART, WD_OP_START, WD_OP_CHANGE } wd_op_kind_t;

struct wd_op {
    wd_group_t *g;
    wd_batch_t *batch;
    wd_op_kind_t kind;
    wd_gen_t *gen; /* target config (a reference) */
    const wd_group_conf_t *conf;
    wd_listen_t **ls; /* target listeners */
    size_t n_ls;
    int next; /* index of the slot being replaced */
};

struct wd_batch {
    wd_control_req_t *req; /* NULL: nobody waits (SIGHUP) */
    int pending;
    json_t *reply;    /* the object being built */
    json_t *replaced; /* [{group, slot, old_pid, new_pid}] */
    json_t *errors;   /* [string] */
    uint64_t t0;
    char *what; /* for the log: "restart", "reload"... (a copy) */
    int notify; /* a reload: READY=1 to systemd when it is done (RELOADING=1 began it) */
};

struct wd_master {
    uv_loop_t loop;
    wd_gen_t *gen; /* the current config */
    wd_group_t **groups;
    size_t n_groups;
    wd_proc_t *procs;
    char exe[PATH_MAX]; /* our path at the start (wd__m_spawn: what workers run) */
    struct stat exe_st; /* the file there then: our own image */
    uv_signal_t signals[4];
    size_t n_signals;
    uv_timer_t tick;
    wd_control_t *control;
    size_t n_alive;
    size_t n_first; /* workers of the initial start */
    size_t n_first_ready;
    int starting; /* until every worker has been ready once */
    int stopping;
    int drain_exit;  /* `wsgictl drain` of every group: wsgid stops once they all stopped */
    int hup_pending; /* a SIGHUP came during a rolling operation: reload once none runs */
    int finished;
    int exit_code;
    int pidfile_written;
    dev_t pidfile_dev; /* the file written, which the exit removes only if still there */
    ino_t pidfile_ino;
    char *pidfile;
    /* what the master opened at its start, which a reload does not change: control, metrics
     * and agent-check ("HOST:PORT"), each NULL when not set */
    char *run_control, *run_metrics, *run_agent, *run_health;
    uint64_t t0;
    wd_control_req_t **stop_reqs; /* wsgictl stop of wsgid: answered once it has stopped */
    size_t n_stop_reqs;
    wd_autoreload_t *autoreload; /* the groups with reload-on-change (a list) */
    struct wd_stacks *stacks;    /* the `wsgictl stacks` being collected, at most one */
    wd_output_t *outputs;        /* the workers' stdout and stderr readers (master_output.c) */
};

extern wd_metrics_t wd__m_metrics, wd__m_agent, wd__m_health; /* `metrics:`, `agent-check:`,
                                                                 `health:` */

/* master_groups.c */
/* A free record of g's scoreboard, zeroed, or -1 when none is (or g has no scoreboard).
 * board_full: whether every record of g's board is taken. record_release frees an exited
 * worker's record, and lets an operation that waited for one go on (op_record_freed, then
 * op_board_go at the end of the exit). */
int wd__m_record_take(wd_group_t *g);
int wd__m_board_full(const wd_group_t *g);
void wd__m_close_pipe(wd_proc_t *p);
void wd__m_gen_unref(wd_gen_t *gen);
void wd__m_group_unref(wd_group_t *g);
void wd__m_listeners_refuse_if_stopped(wd_group_t *g);
int wd__m_listeners_resume(wd_group_t *g);
void wd__m_listeners_release(wd_listen_t **ls, size_t n, wd_listen_t **keep, size_t n_keep);
void wd__m_proc_close_cb(uv_handle_t *h);
void wd__m_proc_drain(wd_proc_t *p, const char *why);
/* Stops g: every worker drains (why), its listeners refuse connections once they are gone.
 * Returns the pids stopped (a JSON array, new). */
json_t *wd__m_group_stop(wd_group_t *g, const char *why);
void wd__m_proc_kill_cb(uv_timer_t *t);
/* line to p: what its socket does not take now waits, in order, for wd__m_proc_flush (as soon
 * as the socket has room, and at every tick). */
void wd__m_proc_say(wd_proc_t *p, const char *line);
/* The same with fd, which goes with the line's first byte (SCM_RIGHTS) and is closed here once
 * sent, or with the line if it never is (the worker gone). */
void wd__m_proc_say_fd(wd_proc_t *p, const char *line, int fd);
void wd__m_proc_flush(wd_proc_t *p);
void wd__m_record_release(wd_proc_t *p);
void wd__m_slot_free(wd_slot_t *s);
wd_gen_t *wd__m_gen_new(wd_config_t *conf, int owned, const char *text, size_t len);
wd_gen_t *wd__m_gen_ref(wd_gen_t *gen);
/* Whether group ga of config a and gb of b differ in anything a reload restarts a group for
 * (master_rolling.c). */
int wd__m_group_changed(const wd_config_t *a, const wd_group_conf_t *ga, const wd_config_t *b,
                        const wd_group_conf_t *gb);
/* The memfd of gen for the workers of its group conf, or -1 when conf is none of gen's. */
int wd__m_gen_fd(const wd_gen_t *gen, const wd_group_conf_t *conf);
wd_group_t *wd__m_find_group(wd_master_t *m, const char *name);
wd_group_t *wd__m_group_new(wd_master_t *m, wd_gen_t *gen, const wd_group_conf_t *conf,
                            wd_listen_t **ls);
wd_group_t *wd__m_group_ref(wd_group_t *g);
wd_listen_t **wd__m_listeners_open(const wd_group_conf_t *conf, wd_listen_t **reuse,
                                   size_t n_reuse);
/* One address to the letter (a listener of one can serve the other; a unix path is compared with
 * its directories' symbolic links resolved): wd_config_listen_same also counts a wildcard host as
 * the same as the others of its family on the port. */
int wd__m_same_address(const wd_listen_conf_t *a, const wd_listen_conf_t *b);
wd_slot_t *wd__m_slot_new(wd_group_t *g, int n);

/* p's record in its group's scoreboard, or NULL once it is freed. */
static inline wd_score_t *wd__m_record(const wd_proc_t *p)
{
    return p->record >= 0 && p->g->score != NULL ? &p->g->score[p->record] : NULL;
}

/* master_spawn.c */
char *wd__m_display_name(const wd_group_conf_t *g, int slot);
int wd__m_check_privileges(const wd_config_t *conf, char *err, size_t errlen);
void wd__m_warn_nobody(wd_group_t *g);
wd_proc_t *wd__m_spawn(wd_master_t *m, wd_slot_t *s, wd_gen_t *gen, const wd_group_conf_t *conf,
                       wd_listen_t **ls, size_t n_ls);

/* master_life.c */
void wd__m_abort_start(wd_master_t *m, wd_group_t *g, const char *why);
void wd__m_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);
void wd__m_begin_stop(wd_master_t *m, int exit_code);
/* master_commands.c: stops the groups whose drain-delay is over (at every tick). */
void wd__m_drain_check(wd_master_t *m);
void wd__m_exit_cb(uv_process_t *process, int64_t status, int sig);
void wd__m_finish(wd_master_t *m);
void wd__m_kill_all(wd_master_t *m);
void wd__m_proc_recycle(wd_master_t *m, wd_proc_t *p, const char *reason);
void wd__m_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
/* " while loading app X (mount /m)" for a starting worker that said what it loads, else "". */
const char *wd__m_proc_loading(const wd_proc_t *p, char *buf, size_t cap);
void wd__m_recycle_done(wd_slot_t *s, void *ctx, int ok, const char *err, int old_pid, int new_pid);

/* master_rolling.c */
void wd__m_batch_done_one(wd_master_t *m, wd_batch_t *b);
void wd__m_op_step(wd_op_t *op);
void wd__m_op_record_freed(wd_group_t *g);
void wd__m_op_board_go(wd_group_t *g);
/* wsgid stops during the operation: its waiting wsgictl gets the failure (it got no reply, and
 * the operation, its batch and its group reference were never freed). */
void wd__m_op_abandon(wd_op_t *op);
void wd__m_reload(wd_master_t *m, wd_control_req_t *req);
/* What a rolling operation is, as status and messages name it: start, restart, reload, reload on
 * change. */
const char *wd__m_op_name(const wd_op_t *op);
/* A SIGHUP that came while a rolling operation ran: the reload, once none runs (every tick). */
void wd__m_reload_if_pending(wd_master_t *m);
wd_batch_t *wd__m_batch_new(wd_master_t *m, wd_control_req_t *req, const char *what);
wd_op_t *wd__m_op_new(wd_group_t *g, wd_batch_t *b, wd_op_kind_t kind, wd_gen_t *gen,
                      const wd_group_conf_t *conf, wd_listen_t **ls, size_t n_ls);

/* master_commands.c */
uint64_t wd__m_read_rss(int pid);
void wd__m_control_cb(void *data, json_t *request, wd_control_req_t *req);

/* master_logs.c: the master opens the workers' log files and writes them (spawn.h's "logs").
 * logs_give makes a new worker's pipes (readers[0] its error log's, readers[1] its access log's,
 * NULL for "off") and writes its line on its end of the socketpair before it starts: 0 or -errno
 * (a file that cannot be opened is logged, and its lines go to stderr until a reopen can open
 * it). reopen_logs reopens the master's error log
 * and every access log a worker still writes in place: 0, or -1 with why in err (a log that cannot
 * be opened now; those stay where they were). */
int wd__m_logs_give(wd_master_t *m, int sock, const wd_config_t *conf, const wd_group_conf_t *g,
                    int slot, wd_logpipe_t *readers[2]);
/* Appends whole lines to dest (NULL: the master's error log): 0, or -1 when some wait (a FIFO
 * nobody reads: they go once it has room). */
int wd__m_logs_write(wd_logdest_t *dest, const char *p, size_t n);
/* From the start of the supervision (logs_start) to the exit (logs_end), the master's own lines
 * and its workers' go to the error log and stderr without waiting: what they do not take is
 * held, 1 MiB at most (and 64 KiB more for the master's own), then dropped and said where the
 * lines are missing; logs_stop ends the retries (the loop's end), logs_end says in the error log
 * file what stderr could not take at the stop. logs_app(1) marks the master's lines that are a
 * worker's output (master_output.c): they get no more room than a worker's. */
void wd__m_logs_start(wd_master_t *m);
void wd__m_logs_stop(void);
void wd__m_logs_end(void);
void wd__m_logs_app(int on);
/* An access log's users, its workers' pipes (logpipe_open holds, logpipe_close releases): it is
 * closed and forgotten when the last one goes, and no longer reopened. */
void wd__m_logs_hold(wd_logdest_t *dest);
void wd__m_logs_release(wd_logdest_t *dest);
int wd__m_reopen_logs(wd_master_t *m, char *err, size_t cap);
/* Opens the error log again (a reload): wd_log_open's 0 or -errno, and what it held goes there. */
int wd__m_logs_open_error(const char *path);

/* master_logpipe.c: a pipe for a worker's error log (dest NULL: the master's) or access log
 * (dest: its file), whose whole lines the master appends there (logs_write); returns the
 * worker's end (non-blocking), or -errno. Attached to its worker (*ref, NULLed at close);
 * detached when the worker exited, after a drain of what it left. close_all ends every one. */
int wd__m_logpipe_open(wd_master_t *m, wd_logdest_t *dest, wd_logpipe_t **out);
void wd__m_logpipe_attach(wd_logpipe_t *o, wd_logpipe_t **ref);
void wd__m_logpipe_detach(wd_logpipe_t **ref);
void wd__m_logpipe_drain(wd_logpipe_t *o); /* what it holds now */
/* master_output.c: reads a pipe end through p (both readers); rfd closed on failure. */
int wd__m_pipe_read_start(uv_pipe_t *p, int rfd, uv_alloc_cb on_alloc, uv_read_cb on_read);
void wd__m_logpipe_close(wd_logpipe_t *o);
void wd__m_logpipe_close_all(void);

/* master_output.c: a pipe for a worker's stdout or stderr, whose lines go to the error log at
 * level; returns the worker's end, or -errno. Attached to its worker (*ref, which it NULLs when
 * it closes) it says "group G worker N (pid P) STREAM: ..."; detached when the worker exited,
 * after a drain of what it left; died (a signal, a failure status, an exit not asked for) says
 * the lines its level held back (OUTPUT_HELD). A drain reads what is there now; close_all ends
 * every reader. */
int wd__m_output_open(wd_master_t *m, const char *stream, wd_log_level_t level, wd_output_t **out);
/* log: its worker's error log pipe, read before what comes on its stdout and stderr. */
void wd__m_output_attach(wd_output_t *o, wd_output_t **ref, wd_logpipe_t **log, const char *group,
                         int slot, int pid);
void wd__m_output_detach(wd_output_t **ref, int died);
void wd__m_output_close(wd_output_t *o);
void wd__m_output_drain(wd_output_t *o);
void wd__m_output_close_all(wd_master_t *m);

/* master_stacks.c: the pipe a worker gets for its stacks (pipe[1] is the worker's end); 0 or
 * -errno. wsgictl stacks GROUP. */
int wd__m_stacks_pipe(int pipe[2]);
void wd__m_stacks(wd_master_t *m, wd_control_req_t *req, const char *group);

/* master_watch.c */
void wd__m_tick_cb(uv_timer_t *t);

/* master_autoreload.c */
void wd__m_autoreload_update(wd_master_t *m);
/* A unix socket of a listener let go is removed: not a change (own_file) for a while. */
void wd__m_autoreload_socket_removed(const char *path);
void wd__m_autoreload_stop(wd_master_t *m);
void wd__m_autoreload_op_done(wd_group_t *g);

/* master.c */
const char *wd__m_signame(int sig);
void wd__m_start(wd_master_t *m);

/* master_rolling.c: the slots a failed reload's change left on the new config go back to their
 * group's (at every tick, for a group with no operation in progress). */
void wd__m_roll_back(wd_master_t *m);

#endif
