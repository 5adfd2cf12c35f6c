/* The master: the workers' log files. See master_int.h.
 *
 * The master opens every log file itself (as root when wsgid runs as root: log.c's
 * wd_log_file_open follows no symbolic link there) and writes to it alone: each worker gets a
 * pipe for its error log and one for its access log, in a "logs" line on the worker's socket
 * before it starts (spawn.h), and the master appends what comes there to the files
 * (master_logpipe.c). At a reopen-logs the master reopens the files in place; the workers'
 * pipes stay. A worker holding the files could take O_APPEND off and truncate the lines of the
 * other groups and of the master (helper-79). A worker never opens a log by name. When it did, as
 * its group's user, the master had to give that user the files (fchown), and so gave it any
 * root-owned file that the group's app put a symbolic link to at the log's path, the master's
 * own error log, and the access log the other groups share, which their users then could not
 * open (helper-72). Now every log file stays root's. */
#include "master_int.h"
#include "alloc.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* An access log file, opened once however many workers write it, and reopened in place (dup3
 * onto the same fd number). Its fd is non-blocking: a FIFO whose reader stops (a log shipper)
 * must not hold the master up, which serves every group; what it does not take waits here, in
 * order (whole lines stay whole), WD_LOGS_HELD_MAX at most, and is written again as soon as the
 * reader has made room (room_wait); past that, lines are dropped, counted, and said. */
#define WD_LOGS_HELD_MAX (1 << 20)
/* The error log and stderr are held the same way, once the master supervises (wd__m_logs_start):
 * written with blocking writes, a pipe nobody read (wsgid 2>&1 | less, paused; a stuck log
 * shipper; a full journal stream) or a FIFO held the master in write(2), and a master held there
 * restarted no worker, answered no wsgictl, handled no SIGTERM. The master's own lines (a worker
 * died, a restart) may go WD_LOGS_OWN_ROOM past the bound that drops the workers' (an app's
 * print() in a loop), so that they are not lost behind them: the cheapest way, as a line already
 * held is never taken out of the order it came in. What was dropped is said in the destination
 * where the lines are missing, in one line (drop_line), as soon as a line can be held again. */
#define WD_LOGS_OWN_ROOM (64 * 1024)
/* Lines that stderr drops are said in the error log too while they are dropped (and the
 * reverse), at most once every WD_LOGS_TELL_EVERY seconds a destination, with the count so far:
 * the drop line comes where they are missing only once it takes lines again. */
#define WD_LOGS_TELL_EVERY 5
#define WD_LOGS_HELD_CAP (WD_LOGS_HELD_MAX + WD_LOGS_OWN_ROOM + 2 * WD_LOG_LINE_MAX + 1024)

enum { DEST_ACCESS, DEST_ERROR, DEST_STDERR };
#define WD_LOGS_DROPS 16

struct wd_logdest {
    struct wd_logdest *next;
    char *path;     /* an access log's */
    char group[64]; /* the first group that writes it, for the messages */
    int fd;         /* -1 until it could be opened: the lines go to stderr meanwhile */
    int kind;
    int sock;       /* a socket (the journal's stream): send(MSG_DONTWAIT) */
    int dgram;      /* a datagram socket: a line a send */
    int said;       /* its error was reported */
    unsigned users; /* the access log pipes of the workers that write it (master_logpipe.c) */
    /* The destination that writes its lines while it is the same FIFO, pipe or terminal
     * (access_same), NULL while it writes them itself. Its workers hold it, not that one: a
     * reload that moves the error log off the FIFO gave their access lines to the new error log. */
    struct wd_logdest *share;
    char *held;
    size_t held_len;
    unsigned long long dropped; /* lines past WD_LOGS_HELD_MAX, since the last said */
    unsigned long long dropped_bytes, dropped_own;
    time_t since;                          /* the first of them */
    time_t stuck;                          /* when it first held lines, since it last held none */
    time_t took;                           /* when it last took some */
    unsigned long takes;                   /* the writes it took */
    unsigned long long taken, taken_stuck; /* the bytes it took: all, and when it was stuck */
    unsigned long long slack; /* what it may take stuck, nobody reading: a pipe's (say_lost) */
    time_t told; /* when its drops were last said in the other destination (say_elsewhere) */
    /* The drop lines held, oldest first: each stands for the lines it counts, not one, when
     * what is held is counted as lost (say_lost, a destination's error). Past WD_LOGS_DROPS the
     * last one takes the newer ones' counts too. */
    struct {
        size_t start, end;
        unsigned long long lines, bytes, own;
    } drops[WD_LOGS_DROPS];
    int n_drops;
    uv_poll_t *room; /* polled for room while it holds lines (room_wait), else NULL */
    int no_room;     /* it said it had room and took nothing: tried again by the timer */
    int mid;         /* what it holds begins with the rest of a line whose start it took */
};

static wd_logdest_t *access_files;
static int held_flush(wd_logdest_t *f);
static void say_elsewhere(wd_logdest_t *f);
static wd_logdest_t stderr_dest = {.fd = 2, .kind = DEST_STDERR};
static wd_logdest_t error_dest = {.fd = -1, .kind = DEST_ERROR};
static int own_line;  /* the line given is the master's own (the sink's) */
static int app_lines; /* the master's lines are a worker's output (wd__m_logs_app) */
static int started, ended;
/* Once the master stops, an access log no worker writes any more is kept, and what it holds is
 * waited for at the end with stderr's and the error log's (held_drain). */
static const wd_master_t *master;
static uv_loop_t *loop;
/* A destination that did not take all it was given (EAGAIN: the FIFO, pipe, terminal or socket
 * of a reader that is behind, or stopped) is polled for room, and what it holds goes as soon as
 * its reader has read (room_wait). The master tried again every 20 ms instead: 50 wake-ups a
 * second while a log shipper read nothing, and once it read again, a FIFO's size each 20 ms at
 * most (64 KiB: 3.2 MB/s, about 20,000 access lines a second; an 8 KiB FIFO 400 KiB/s), the lines
 * past the master's WD_LOGS_HELD_MAX dropped. The timer (WD_LOGS_RETRY_MS) is left for what is not
 * polled: stderr when it is a socket (fd 2's description, shared with whoever started wsgid: libuv
 * would make it non-blocking for them too), and a destination that said it had room and then
 * took nothing, which must not spin. */
#define WD_LOGS_RETRY_MS 20
static uv_timer_t retry_timer;
/* At the stop (wd__m_logs_end), what stderr and the error log hold is written, waiting for them as
 * long as they take some of it: WD_LOGS_END_WAIT_MS in all at most, and WD_LOGS_END_IDLE_MS while
 * they take nothing (a pipe nobody reads); only then is the rest counted as lost. A start that
 * fails (an app that cannot load) ends here too. */
#define WD_LOGS_END_WAIT_MS 10000
#define WD_LOGS_END_IDLE_MS 2000

static void room_free(uv_handle_t *h)
{
    free(h);
}

static void room_stop(wd_logdest_t *f)
{
    if (f->room != NULL) {
        uv_close((uv_handle_t *)f->room, room_free);
        f->room = NULL;
    }
}

static void room_wait(wd_logdest_t *f);

/* f has room, or its fd failed: what it holds goes, and it is waited for again if some is left,
 * by the timer if it took nothing. */
static void room_cb(uv_poll_t *h, int status, int events)
{
    wd_logdest_t *f = h->data;
    unsigned long takes = f->takes;

    (void)events;
    if (status == 0 && held_flush(f) != -1) {
        room_stop(f);
        return;
    }
    if (status < 0 || f->takes == takes) {
        room_stop(f);
        f->no_room = 1;
        room_wait(f);
    }
}

static void retry_cb(uv_timer_t *t)
{
    wd_logdest_t *all[2] = {&error_dest, &stderr_dest};

    (void)t;
    for (wd_logdest_t *f = access_files; f != NULL; f = f->next)
        if (f->room == NULL && held_flush(f) == -1)
            f->no_room = 0, room_wait(f);
    for (int i = 0; i < 2; i++)
        if (all[i]->room == NULL && held_flush(all[i]) == -1)
            all[i]->no_room = 0, room_wait(all[i]);
}

/* f holds lines it did not take: they go when it has room (see WD_LOGS_RETRY_MS). */
static void room_wait(wd_logdest_t *f)
{
    struct stat st;

    if (!started || f->room != NULL)
        return;
    if (!f->no_room && !f->sock && f->fd >= 0 && fstat(f->fd, &st) == 0 && !S_ISREG(st.st_mode)) {
        f->room = xmalloc(sizeof *f->room);
        if (uv_poll_init(loop, f->room, f->fd) == 0) {
            f->room->data = f;
            uv_unref((uv_handle_t *)f->room); /* as the timer: the loop's end does not wait */
            if (uv_poll_start(f->room, UV_WRITABLE, room_cb) == 0)
                return;
            room_stop(f);
        } else {
            free(f->room);
            f->room = NULL;
        }
    }
    if (!uv_is_active((uv_handle_t *)&retry_timer))
        uv_timer_start(&retry_timer, retry_cb, WD_LOGS_RETRY_MS, 0);
}

static wd_logdest_t *access_get(const char *path, const char *group)
{
    wd_logdest_t *f;

    for (f = access_files; f != NULL; f = f->next)
        if (strcmp(f->path, path) == 0)
            return f;
    f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    snprintf(f->group, sizeof f->group, "%s", group);
    f->fd = -1;
    f->next = access_files;
    access_files = f;
    return f;
}

/* An access log is kept while a worker writes it, and no longer: a reload that names another
 * file, once the old workers (still draining) have exited, leaves the old one, which the master
 * held and reopened at every reopen-logs for ever, an error for good once its path could not be
 * opened (helper-85). Held lines that it will not take now are dropped with it. */
void wd__m_logs_hold(wd_logdest_t *f)
{
    if (f != NULL && f != &stderr_dest && f != &error_dest)
        f->users++;
}

static void say_lost(wd_logdest_t *f, const char *when);
static void held_move(wd_logdest_t *from, wd_logdest_t *to);

static void dest_free_unused(wd_logdest_t *f)
{
    wd_logdest_t **p, *heir = NULL;

    if (f == NULL || f == &stderr_dest || f == &error_dest || f->users > 0 ||
        (master != NULL && master->stopping))
        return;
    for (p = &access_files; *p != NULL && *p != f; p = &(*p)->next)
        ;
    if (*p != NULL)
        *p = f->next;
    /* Its sharers are the same FIFO, pipe or terminal under other names: the first of them writes
     * it from now on, what f still holds first, and the others share that one (those of one that
     * shared go on to what it shared). What f held, their lines among it, was said lost "when no
     * worker wrote it any more" while another name of its file was still written, and each sharer
     * wrote the file itself again, where their lines could cut each other's. */
    for (wd_logdest_t *o = access_files; o != NULL; o = o->next) {
        if (o->share != f)
            continue;
        if (f->share == NULL && heir == NULL)
            heir = o;
        o->share = f->share != NULL ? f->share : heir != o ? heir : NULL;
    }
    room_stop(f);
    if (f->fd >= 0) {
        (void)held_flush(f);
        close(f->fd);
    }
    if (heir != NULL && heir->fd >= 0) {
        held_move(f, heir);
        if (held_flush(heir) == -1)
            room_wait(heir);
    }
    say_lost(f, "when no worker wrote it any more");
    free(f->held);
    free(f->path);
    free(f);
}

void wd__m_logs_release(wd_logdest_t *f)
{
    if (f == NULL || f == &stderr_dest || f == &error_dest || f->users == 0)
        return;
    f->users--;
    dest_free_unused(f);
}

/* Opens f, or reopens it in place: 0 or -errno (it stays where it was). */
static int access_open(wd_logdest_t *f)
{
    int fd = wd_log_file_open(f->path); /* non-blocking */

    if (fd < 0)
        return fd;
    if (f->fd < 0) {
        f->fd = fd;
        return 0;
    }
    if (dup3(fd, f->fd, O_CLOEXEC) < 0) {
        int e = -errno;

        close(fd);
        return e;
    }
    close(fd);
    return 0;
}

static wd_logdest_t *error_get(void);

static int same_file(const struct stat *st, int fd)
{
    struct stat o;

    return fd >= 0 && fstat(fd, &o) == 0 && o.st_dev == st->st_dev && o.st_ino == st->st_ino;
}

/* An access log that is the FIFO, pipe, terminal or socket of the error log, of stderr or of
 * another access log (under another name): that one's destination, which f is to share, else
 * NULL. Each held what the other had not taken, and wrote it when it had room: a write
 * of more than PIPE_BUF that a FIFO took a part of left the rest of its line held while the
 * other wrote its own lines after that part, and the reader got lines cut into each other. One
 * destination writes its lines in order. A file takes every write whole (O_APPEND). */
static wd_logdest_t *access_same(wd_logdest_t *f)
{
    wd_logdest_t *e = error_get(), *o;
    struct stat st;

    if (f->fd < 0 || fstat(f->fd, &st) < 0 || S_ISREG(st.st_mode))
        return NULL;
    if (e == &error_dest && same_file(&st, error_dest.fd))
        return &error_dest;
    if (same_file(&st, stderr_dest.fd))
        return &stderr_dest;
    for (o = access_files; o != NULL; o = o->next)
        if (o != f && o->share == NULL && same_file(&st, o->fd))
            return o;
    return NULL;
}

/* Whether f is the same file still as the destination it shares. */
static int share_still(wd_logdest_t *f)
{
    struct stat st;

    if (f->fd < 0 || fstat(f->fd, &st) < 0 || S_ISREG(st.st_mode))
        return 0;
    if (f->share == &error_dest && error_get() != &error_dest)
        return 0;
    return same_file(&st, f->share->fd);
}

/* After the error log or the access logs were opened again (a reload, a reopen-logs): an access
 * log shares a destination while it is the same file still, and one shares the one it is now the
 * same as. (No cycle: a share is only ever made to one sharing none.) One that holds lines (the
 * FIFO's reader behind at the reload) hands them to that one, which writes them first: it was left
 * a destination of its own, and the two wrote the FIFO, cutting each other's lines, until a reload
 * found it holding none. It keeps them when that one holds lines too (whose go first is not
 * known), and what it dropped and has not said yet stays its own to say. */
static void access_share_again(void)
{
    wd_logdest_t *f, *same;

    for (f = access_files; f != NULL; f = f->next)
        if (f->share != NULL && !share_still(f))
            f->share = NULL;
    for (f = access_files; f != NULL; f = f->next) {
        if (f->share != NULL || f->dropped != 0 || (same = access_same(f)) == NULL ||
            (f->held_len > 0 && (same->held_len > 0 || same->dropped > 0)))
            continue;
        held_move(f, same); /* what it holds waits for room there: retry_cb */
        f->share = same;
    }
}

/* Where a worker's access log lines go: NULL for "off". */
static wd_logdest_t *access_dest(const wd_config_t *conf, const wd_group_conf_t *g, int slot)
{
    const char *path = g->access_log ? g->access_log : conf->access_log;
    wd_logdest_t *f;
    int rc;

    if (path != NULL && strcmp(path, "off") == 0)
        return NULL;
    if (path == NULL || strcmp(path, "-") == 0)
        return &stderr_dest;
    f = access_get(path, g->name);
    if (f->fd < 0 && (rc = access_open(f)) < 0 && !f->said) {
        f->said = 1;
        wd_log_error("group %s worker %d: cannot open the access log %s: %s; its lines go to "
                     "stderr until a reopen-logs can open it",
                     g->name, slot, path, wd_log_file_why(rc));
    }
    if (f->users == 0 && f->held_len == 0 && f->dropped == 0)
        f->share = access_same(f);
    return f;
}

/* Counts p, n, which f will not take, as dropped: the drop lines held in it for what they count. */
static void count_lost(wd_logdest_t *f, const char *p, size_t n)
{
    size_t lines = 0, bytes = n, i;
    int held = f->held != NULL && p >= f->held && p < f->held + f->held_len;
    size_t at = held ? (size_t)(p - f->held) : 0;

    if (n == 0)
        return;
    for (i = 0; i < n; i++)
        lines += p[i] == '\n';
    lines += p[n - 1] != '\n';
    if (f->dropped == 0)
        f->since = time(NULL);
    for (int d = 0; held && d < f->n_drops; d++) {
        if (f->drops[d].start < at || f->drops[d].end > at + n)
            continue;
        lines += f->drops[d].lines - 1;
        bytes += f->drops[d].bytes - (f->drops[d].end - f->drops[d].start);
        f->dropped_own += f->drops[d].own;
    }
    f->dropped += lines;
    f->dropped_bytes += bytes;
}

/* Writes p, n: 0 done, -1 what is left (*off written) waits: EAGAIN, a FIFO that is full; -2 f
 * failed (EPIPE, EIO; a datagram too long): what it did not take is counted as dropped, not
 * kept, or it would be held for ever in front of the newer lines. A datagram socket gets a line
 * a send. */
static int write_some(wd_logdest_t *f, const char *p, size_t n, size_t *off)
{
    ssize_t w;
    size_t len;
    int failed = 0;

    *off = 0;
    while (*off < n) {
        len = n - *off;
        if (f->dgram) {
            const char *nl = memchr(p + *off, '\n', len);

            len = nl != NULL ? (size_t)(nl - (p + *off)) + 1 : len;
        }
        if (f->sock)
            w = send(f->fd, p + *off, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        else
            w = write(f->fd, p + *off, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == ENOBUFS))
            return -1;
        if (w > 0)
            f->took = time(NULL), f->takes++, f->taken += (unsigned long long)w;
        if (w > 0 && !f->dgram) {
            *off += (size_t)w;
            continue;
        }
        if (w < 0 || (w == 0 && len > 0)) {
            failed = 1;
            if (!f->dgram)
                len = n - *off; /* the rest: it would fail again */
            count_lost(f, p + *off, len);
        }
        *off += len;
    }
    return failed ? -2 : 0;
}

/* What names f in the master's lines. */
static const char *dest_name(const wd_logdest_t *f, char *buf, size_t cap)
{
    if (f->kind == DEST_STDERR)
        return "stderr";
    if (f->kind == DEST_ERROR)
        snprintf(buf, cap, "the error log %s", wd_log_path());
    else
        snprintf(buf, cap, "the access log %s (group %s)", f->path, f->group);
    return buf;
}

/* The line that says what f dropped, where the lines are missing (the error log, stderr): held
 * after the lines it took before, to go before those that come after. An access log's is said in
 * the error log, as its lines have no stamp. */
static void drop_line(wd_logdest_t *f)
{
    char buf[1200], when[16];
    const char *name = dest_name(f, buf, sizeof buf);
    struct tm tm;

    if (f->dropped == 0)
        return;
    localtime_r(&f->since, &tm);
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    if (f->kind == DEST_ACCESS) {
        wd_log_warn("%s did not take its lines fast enough (a FIFO that nobody reads, or reads "
                    "slowly?): %llu lines were dropped from %s on",
                    name, f->dropped, when);
    } else {
        size_t start;
        int d;

        if (f->held == NULL)
            f->held = xmalloc(WD_LOGS_HELD_CAP);
        start = f->held_len;
        f->mid = f->mid && start > 0; /* nothing held before it: what is held is whole lines */
        f->held_len += wd_log_format(f->held + f->held_len, 1024, WD_LOG_WARN,
                                     "%llu lines (%llu bytes) for %s were dropped from %s on, as "
                                     "it did not take them fast enough (a pipe, FIFO or terminal "
                                     "that nobody reads, or reads slowly?): %llu of them the "
                                     "master's own",
                                     f->dropped, f->dropped_bytes, name, when, f->dropped_own);
        if (f->n_drops < WD_LOGS_DROPS) {
            d = f->n_drops++;
            f->drops[d].start = start;
            f->drops[d].lines = f->drops[d].bytes = f->drops[d].own = 0;
        } else {
            /* the last one stands for this one too, and spans the lines between, which are
             * counted as lines */
            d = WD_LOGS_DROPS - 1;
            f->drops[d].lines--, f->drops[d].bytes += start - f->drops[d].end;
        }
        f->drops[d].end = f->held_len;
        f->drops[d].lines += f->dropped, f->drops[d].bytes += f->dropped_bytes;
        f->drops[d].own += f->dropped_own;
    }
    f->dropped = f->dropped_bytes = f->dropped_own = 0;
}

/* Takes off bytes from the front of what f holds. */
static void held_take(wd_logdest_t *f, size_t off)
{
    int d, k = 0;

    if (off == 0)
        return;
    f->mid = f->held[off - 1] != '\n';
    memmove(f->held, f->held + off, f->held_len - off);
    f->held_len -= off;
    for (d = 0; d < f->n_drops; d++) {
        if (f->drops[d].end <= off)
            continue; /* it went */
        f->drops[k] = f->drops[d];
        f->drops[k].start = f->drops[k].start > off ? f->drops[k].start - off : 0;
        f->drops[k++].end -= off;
    }
    f->n_drops = k;
}

/* What f holds goes first: 0 once it has all gone, -1 what is left waits, -2 f failed (what it
 * held was counted as dropped; the drop line waits for a write that goes). */
static int held_flush(wd_logdest_t *f)
{
    size_t off;
    int rc;

    if (f->held_len == 0 && f->dropped == 0)
        return 0;
    rc = write_some(f, f->held, f->held_len, &off);
    held_take(f, off);
    if (rc == 0 && f->dropped > 0) {
        drop_line(f);
        return held_flush(f);
    }
    return rc;
}

/* Hands what from holds (its lines not taken yet, with the drop lines among them, what it dropped
 * since, since when it is stuck) to to, the same FIFO, pipe or terminal, which holds nothing: to
 * writes it first, the rest of a line whose start the file took (mid) before anything else. The
 * caller has it wait for room (room_wait, retry_cb) once its fd is the one to poll. */
static void held_move(wd_logdest_t *from, wd_logdest_t *to)
{
    char *spare = to->held; /* empty: from's buffer from now on */

    if (from->held_len == 0 && from->dropped == 0)
        return;
    room_stop(from);
    to->held = from->held, to->held_len = from->held_len, to->mid = from->mid;
    from->held = spare, from->held_len = 0, from->mid = 0;
    memcpy(to->drops, from->drops, sizeof to->drops);
    to->n_drops = from->n_drops, from->n_drops = 0;
    to->dropped = from->dropped, to->dropped_bytes = from->dropped_bytes;
    to->dropped_own = from->dropped_own, to->since = from->since;
    from->dropped = from->dropped_bytes = from->dropped_own = 0;
    /* what it took since it first held lines, for say_lost (unsigned: wraps back) */
    to->stuck = from->stuck, to->slack = from->slack;
    to->taken_stuck = to->taken - (from->taken - from->taken_stuck);
    if (from->took > to->took)
        to->took = from->took;
    to->no_room = 0;
}

/* Keeps what f did not take: the rest of a line cut, then whole lines within the bound (the
 * master's own lines WD_LOGS_OWN_ROOM past it). */
static void held_keep(wd_logdest_t *f, const char *p, size_t n)
{
    size_t bound = WD_LOGS_HELD_MAX + (own_line && !app_lines ? WD_LOGS_OWN_ROOM : 0), first;
    const char *nl;

    if (f->held == NULL)
        f->held = xmalloc(WD_LOGS_HELD_CAP);
    if (f->held_len == 0 && f->dropped == 0) {
        struct stat st;

        f->stuck = time(NULL), f->taken_stuck = f->taken;
        /* A pipe or FIFO nobody reads still takes a piece of a longer write into the rest of its
         * last page (a write of more than a page is merged into it): less than a page. A socket
         * or a terminal that takes a byte has a reader. */
        f->slack = fstat(f->fd, &st) == 0 && S_ISFIFO(st.st_mode)
                       ? (unsigned long long)sysconf(_SC_PAGESIZE) - 1
                       : 0;
    }
    while (n > 0) {
        int whole = f->held_len == 0 || f->held[f->held_len - 1] == '\n';

        nl = memchr(p, '\n', n);
        first = nl != NULL ? (size_t)(nl - p) + 1 : n;
        if (whole && f->held_len + first > bound) {
            if (f->dropped++ == 0)
                f->since = time(NULL);
            f->dropped_bytes += first;
            f->dropped_own += own_line && !app_lines;
        } else if (f->held_len + first <= WD_LOGS_HELD_CAP - 1024) {
            if (whole)
                drop_line(f); /* where the lines dropped were */
            memcpy(f->held + f->held_len, p, first);
            f->held_len += first;
        }
        p += first;
        n -= first;
    }
    say_elsewhere(f);
}

/* Says in the other destination (the error log for stderr, stderr for the error log) that f drops
 * lines, rate-limited (WD_LOGS_TELL_EVERY). */
static void say_elsewhere(wd_logdest_t *f)
{
    static int in;
    int was_own = own_line, was_app = app_lines;
    time_t now = time(NULL);
    char when[16], name[1200], line[1536];
    struct tm tm;
    size_t n;

    if (in || f->kind == DEST_ACCESS || f->dropped == 0 || now - f->told < WD_LOGS_TELL_EVERY ||
        error_get() != &error_dest)
        return; /* the error log is stderr, or off: nowhere else to say it */
    f->told = now;
    localtime_r(&f->since, &tm);
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    in = 1;
    own_line = 1, app_lines = 0;
    n = wd_log_format(line, sizeof line, WD_LOG_WARN,
                      "%s does not take its lines fast enough (a pipe, FIFO or terminal that "
                      "nobody reads, or reads slowly?): %llu lines (%llu bytes) dropped there "
                      "from %s on so far, counted there once it takes lines again",
                      dest_name(f, name, sizeof name), f->dropped, f->dropped_bytes, when);
    (void)wd__m_logs_write(f == &stderr_dest ? &error_dest : &stderr_dest, line, n);
    own_line = was_own, app_lines = was_app;
    in = 0;
}

/* Where the master's error log lines go: NULL for "off". */
static wd_logdest_t *error_get(void)
{
    int fd = wd_log_fd();

    if (fd < 0)
        return NULL;
    if (fd == 2)
        return &stderr_dest;
    error_dest.fd = fd;
    return &error_dest;
}

int wd__m_logs_write(wd_logdest_t *f, const char *p, size_t n)
{
    size_t off = 0;

    if (f == NULL && (f = error_get()) == NULL)
        return 0;
    while (f->share != NULL)
        f = f->share;
    if (f->fd < 0)
        f = &stderr_dest; /* an access log not open */
    if (held_flush(f) != -1 && write_some(f, p, n, &off) != -1)
        return 0; /* written, or f failed: counted */
    if (f->held_len == 0 && f->dropped == 0) {
        f->mid = off > 0 && p[off - 1] != '\n';
        p += off;
        n -= off;
    }
    if (ended)
        return 0; /* nobody would write them: said in wd__m_logs_end */
    held_keep(f, p, n);
    room_wait(f);
    return -1;
}

static void own_sink(const char *line, size_t n)
{
    own_line = 1;
    (void)wd__m_logs_write(NULL, line, n);
    own_line = 0;
}

void wd__m_logs_app(int on)
{
    app_lines = on;
}

void wd__m_logs_start(wd_master_t *m)
{
    struct stat st;
    int fd;

    loop = &m->loop;
    master = m;
    uv_timer_init(&m->loop, &retry_timer);
    uv_unref((uv_handle_t *)&retry_timer);
    /* stderr: a description of its own, non-blocking, where it can be had (a pipe, a FIFO, a
     * terminal), as fd 2's is shared with whoever started wsgid (a shell's terminal, the other
     * processes of a pipeline): O_NONBLOCK is never set on it, as they would get EAGAIN too, and
     * keep it after the master's end. A socket is sent to with MSG_DONTWAIT; a file does not
     * block. Where /proc/self/fd/2 cannot be opened (wsgid run as a user who does not own the
     * pipe or terminal: su, setpriv, sudo -u; no /proc), fd 2 is written waiting, as before,
     * said once. */
    started = 1;
    wd_log_set_sink(own_sink);
    if (fstat(2, &st) == 0 && S_ISSOCK(st.st_mode)) {
        int type = 0;
        socklen_t len = sizeof type;

        stderr_dest.sock = 1;
        stderr_dest.dgram =
            getsockopt(2, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_DGRAM;
    } else if (fstat(2, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) {
        fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd >= 0)
            stderr_dest.fd = fd;
        else
            wd_log_warn("stderr (a %s) cannot be opened again non-blocking (/proc/self/fd/2: "
                        "%s): the master waits for it as it writes, and a reader that stops "
                        "holds it up; run wsgid as the user that owns it, or set log.file to a "
                        "file",
                        S_ISFIFO(st.st_mode) ? "pipe or FIFO" : "terminal", strerror(errno));
    }
}

void wd__m_logs_stop(void)
{
    if (started)
        uv_close((uv_handle_t *)&retry_timer, NULL);
    for (wd_logdest_t *f = access_files; f != NULL; f = f->next)
        room_stop(f);
    room_stop(&error_dest);
    room_stop(&stderr_dest);
    started = 0;
}

/* At the stop (or when an access log is let go), what f could not write, said in the error log
 * when that is a file (one that takes it: a file does), else nowhere: nothing would take it. */
static void say_lost(wd_logdest_t *f, const char *when)
{
    unsigned long long lines = f->dropped, bytes = f->dropped_bytes;
    char name[1200], since[16], why[96];
    struct stat st;
    struct tm tm;
    /* What is true: it took nothing since it first held lines (a pipe's slack apart: a paced
     * flood left "too slowly" said of one nobody read, test_logs_stuck), or too slowly. */
    int none = f->taken - f->taken_stuck <= f->slack;

    count_lost(f, f->held, f->held_len);
    lines = f->dropped, bytes = f->dropped_bytes;
    f->n_drops = 0;
    if (lines == 0)
        return;
    localtime_r(none ? &f->stuck : &f->took, &tm);
    strftime(since, sizeof since, "%H:%M:%S", &tm);
    snprintf(why, sizeof why,
             none ? "it took none from %s on"
                  : "it did not take them fast enough "
                    "(the last at %s)",
             since);
    f->held_len = 0;
    f->dropped = f->dropped_bytes = f->dropped_own = 0;
    if (f->kind == DEST_ACCESS) {
        wd_log_warn("%s, %llu lines (%llu bytes) for %s were lost: %s (a FIFO that nobody reads, "
                    "or reads slowly?)",
                    when, lines, bytes, dest_name(f, name, sizeof name), why);
        return;
    }
    if (f == &error_dest) {
        /* to stderr, if it takes it (a journal), else nowhere */
        char line[1536];
        size_t n, off;

        if (stderr_dest.held_len > 0 || stderr_dest.dropped > 0)
            return;
        n = wd_log_format(line, sizeof line, WD_LOG_WARN,
                          "%s, %llu lines (%llu bytes) for %s were lost: %s (a pipe, FIFO or "
                          "terminal that nobody reads, or reads slowly?)",
                          when, lines, bytes, dest_name(f, name, sizeof name), why);
        (void)write_some(&stderr_dest, line, n, &off);
        return;
    }
    if (wd_log_fd() < 0 || wd_log_fd() == 2 || fstat(wd_log_fd(), &st) < 0 || !S_ISREG(st.st_mode))
        return; /* the error log is stderr, or not a file: nothing would take it */
    wd_log_warn("%s, %llu lines (%llu bytes) for %s were lost: %s (a pipe, FIFO or terminal that "
                "nobody reads, or reads slowly?)",
                when, lines, bytes, dest_name(f, name, sizeof name), why);
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int dest_pending(const wd_logdest_t *f)
{
    return f->fd >= 0 && (f->held_len > 0 || f->dropped > 0);
}

/* Writes what the destinations hold (the access logs too, with all), waiting for them while
 * they take it (see WD_LOGS_END_WAIT_MS), until end at most, and *idle while they take nothing.
 * An access log was written once at the stop, and what a FIFO read slowly (a log shipper) had not
 * taken yet was lost. Every access log is waited for: the first 62 were, in arrays of 64 with
 * the error log and stderr, and what the others held was counted lost at once (a config of 70
 * groups, each its own access log). */
static void held_drain(long long end, long long *idle, int all)
{
    size_t cap = 2, k = 0;
    wd_logdest_t **dests;
    struct pollfd *pfd;
    long long now;

    for (wd_logdest_t *f = access_files; all && f != NULL; f = f->next)
        cap++;
    dests = xmalloc(cap * sizeof *dests);
    pfd = xmalloc(cap * sizeof *pfd);
    dests[k++] = &error_dest;
    dests[k++] = &stderr_dest;
    for (wd_logdest_t *f = access_files; all && f != NULL; f = f->next)
        dests[k++] = f;
    for (;;) {
        size_t before = 0, after = 0;
        nfds_t n = 0;
        int pending = 0;

        for (size_t i = 0; i < k; i++) {
            before += dests[i]->held_len;
            if (dest_pending(dests[i]))
                (void)held_flush(dests[i]);
            after += dests[i]->held_len;
            pending |= dest_pending(dests[i]);
        }
        now = now_ms();
        if (after < before)
            *idle = now + WD_LOGS_END_IDLE_MS;
        if (!pending || now >= end || now >= *idle)
            break;
        for (size_t i = 0; i < k; i++)
            if (dest_pending(dests[i]))
                pfd[n++] = (struct pollfd){.fd = dests[i]->fd, .events = POLLOUT};
        /* 20 ms at most: a destination that says it has room and takes nothing must not spin */
        if (after < before)
            (void)poll(pfd, n, 20);
        else
            (void)poll(NULL, 0, 20);
    }
    free(pfd);
    free(dests);
}

/* What an access log still holds after the wait is counted in the error log: then the error
 * log and stderr are waited for again, within the same bounds (a stderr that took nothing is not
 * waited for twice), as that line is held there. */
void wd__m_logs_end(void)
{
    long long end = now_ms() + WD_LOGS_END_WAIT_MS, idle = now_ms() + WD_LOGS_END_IDLE_MS;
    wd_logdest_t *f;

    if (ended)
        return;
    held_drain(end, &idle, 1);
    for (f = access_files; f != NULL; f = f->next)
        say_lost(f, "at the stop");
    held_drain(end, &idle, 0);
    say_lost(&stderr_dest, "at the stop");
    say_lost(&error_dest, "at the stop");
    ended = 1; /* a line from now on goes if it is taken at once, else nowhere */
    while ((f = access_files) != NULL) {
        access_files = f->next;
        if (f->fd >= 0)
            close(f->fd);
        free(f->held);
        free(f->path);
        free(f);
    }
}

int wd__m_logs_give(wd_master_t *m, int sock, const wd_config_t *conf, const wd_group_conf_t *g,
                    int slot, wd_logpipe_t *readers[2])
{
    wd_logdest_t *access = access_dest(conf, g, slot);
    int off[2] = {conf->log_file != NULL && strcmp(conf->log_file, "off") == 0, access == NULL};
    int fds[2] = {-1, -1}, n_fds = 0, rc = 0, i;
    char line[32];

    readers[0] = readers[1] = NULL;
    for (i = 0; i < 2 && rc >= 0; i++)
        if (!off[i] && (rc = wd__m_logpipe_open(m, i == 0 ? NULL : access, &readers[i])) >= 0)
            fds[n_fds++] = rc;
    snprintf(line, sizeof line, "logs %s %s\n", off[0] ? "off" : "fd", off[1] ? "off" : "fd");
    /* The socket is new and empty: the line goes whole, and is there when the worker starts. */
    if (rc >= 0)
        rc = wd_scm_send(sock, line, strlen(line), fds, n_fds, 0);
    for (i = 0; i < n_fds; i++)
        close(fds[i]);
    if (rc < 0) {
        for (i = 0; i < 2; i++) {
            wd__m_logpipe_close(readers[i]);
            readers[i] = NULL;
        }
    }
    dest_free_unused(access); /* no pipe took it */
    return rc < 0 ? rc : 0;
}

/* The error log is opened again onto the same fd (log.c's dup3): a poll of the old file stops
 * first, as epoll holds the file, not the fd, and drops it once the file is closed; libuv, which
 * still saw the fd polled, polled nothing, and what the error log held waited for its next line
 * (a reload while a FIFO's reader was behind). */
static void error_held_stays(const struct stat *old);

static int error_open(const char *path)
{
    struct stat old;
    int was = error_get() == &error_dest && fstat(error_dest.fd, &old) == 0;
    int rc;

    room_stop(&error_dest);
    rc = wd_log_open(path, "off");
    if (was)
        error_held_stays(&old);
    if (error_get() != &error_dest && (error_dest.held_len > 0 || error_dest.dropped > 0)) {
        /* The error log is stderr now, or off (a reload): what the old one held goes there, as
         * it would have gone to the old one. It stayed held for the old one's fd, which log.c
         * points at /dev/null then, where it went, and was said nowhere. */
        const char *p, *nl;
        size_t n;

        drop_line(&error_dest); /* what it dropped, where the lines are missing */
        p = error_dest.held, n = error_dest.held_len;
        if (error_dest.mid && (nl = memchr(p, '\n', n)) != NULL) {
            n -= (size_t)(nl + 1 - p); /* the rest of a line whose start the old one has */
            p = nl + 1;
        }
        error_dest.held_len = 0, error_dest.n_drops = 0;
        (void)wd__m_logs_write(NULL, p, n);
    }
    return rc;
}

/* The error log is another file now (a reload), and what its destination held was for the old one:
 * when that is the FIFO, pipe or terminal of an access log that shared the destination, what it
 * held goes there, through that access log, which writes it from now on. It went to the new error
 * log (a file), or nowhere with log.file "off", and the access lines among it never reached the
 * FIFO's reader. */
static void error_held_stays(const struct stat *old)
{
    wd_logdest_t *f;

    if ((error_dest.held_len == 0 && error_dest.dropped == 0) ||
        (error_get() == &error_dest && same_file(old, error_dest.fd)))
        return;
    for (f = access_files; f != NULL; f = f->next)
        if (f->share == &error_dest && same_file(old, f->fd))
            break;
    if (f == NULL)
        return;
    drop_line(&error_dest); /* what it dropped, where the lines are missing (held too) */
    f->share = NULL;        /* its other sharers share f: access_share_again */
    held_move(&error_dest, f);
}

int wd__m_logs_open_error(const char *path)
{
    int rc = error_open(path);

    access_share_again();
    retry_cb(NULL); /* what it holds goes to the new one, or waits for room there */
    return rc;
}

int wd__m_reopen_logs(wd_master_t *m, char *err, size_t cap)
{
    size_t used = 0;
    wd_logdest_t *f;
    int rc;

    /* The files are opened again onto the same fds (dup3): a poll of the old one stops first
     * (error_open), and what they hold goes to the new one. */
    for (f = access_files; f != NULL; f = f->next)
        room_stop(f);
    rc = error_open(m->gen->conf->log_file);

    err[0] = '\0';
    if (rc == 0)
        wd_log_info("log files reopened");
    else
        used = (size_t)snprintf(err, cap, "cannot open the error log %s: %s",
                                m->gen->conf->log_file, wd_log_file_why(rc));
    for (f = access_files; f != NULL; f = f->next) {
        rc = access_open(f);
        if (rc == 0) {
            f->said = 0;
            continue;
        }
        wd_log_error("cannot open the access log %s (group %s): %s; it stays where it was", f->path,
                     f->group, wd_log_file_why(rc));
        if (used < cap)
            used += (size_t)snprintf(err + used, cap - used,
                                     "%scannot open the access log %s (group %s): %s",
                                     used ? "; " : "", f->path, f->group, wd_log_file_why(rc));
    }
    access_share_again();
    if (used > 0 && used < cap)
        snprintf(err + used, cap - used, "; the logs that cannot be opened stay where they were");
    retry_cb(NULL);
    return used > 0 ? -1 : 0;
}
