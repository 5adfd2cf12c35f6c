/* The error log and the access log: see log.h. */
#include "log.h"
#include "alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char log_who[64] = "wsgid";
static wd_log_level_t log_level = WD_LOG_INFO;
static int std_fd = 2; /* "-": stderr, or in a worker the master's (wd_log_use_stderr) */
static int log_fd = 2;
static int access_fd = 2;
static int log_slot = -1; /* the fd numbers the log files keep (see open_one) */
static int access_slot = -1;
/* Lines a full pipe to the master refused (a worker's: log.h), error log's and access log's,
 * said in the next line that goes. Atomics: any thread logs. */
static unsigned long dropped[2];
/* The part of the access log's lines that its pipe did not take yet, the loop thread's alone:
 * pend_len bytes from pend + pend_off, in a buffer of pend_cap (pend_keep). */
static char *pend;
static size_t pend_off, pend_len, pend_cap;
static size_t pend_max;        /* what it may hold (pend_bound), 0 until it is known */
static int pend_polled;        /* the loop polls the pipe for room (wd_log_set_polled) */
static __thread int no_wait;   /* the worker's loop thread: wd_log_no_wait */
static __thread int loop_held; /* a Python thread holds the loop's lock: wd_log_loop_held */
/* The master's, once it supervises (wd_log_set_sink): where its lines go instead of log_fd. */
static void (*log_sink)(const char *line, size_t n);
static char log_path[1024] = "-"; /* the error log's, for the master's messages */

void wd_log_set_sink(void (*sink)(const char *line, size_t n))
{
    log_sink = sink;
}

const char *wd_log_path(void)
{
    return log_path;
}

void wd_log_no_wait(void)
{
    no_wait = 1;
}

void wd_log_loop_held(int on)
{
    loop_held = on;
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void wd_log_init(const char *who, wd_log_level_t level)
{
    snprintf(log_who, sizeof log_who, "%s", who);
    log_level = level;
}

/* A worker's "GROUP:PID", whose PID follows a fork: a child the app forks (a process pool, a
 * subprocess before its exec) logs under its own pid (helper-58: its print() said the worker's). */
static char log_group[48];

static void who_after_fork(void)
{
    snprintf(log_who, sizeof log_who, "%s:%d", log_group, (int)getpid());
}

static void who_follow_forks(void)
{
    pthread_atfork(NULL, NULL, who_after_fork);
}

void wd_log_init_worker(const char *group, wd_log_level_t level)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    snprintf(log_group, sizeof log_group, "%s", group);
    who_after_fork();
    log_level = level;
    pthread_once(&once, who_follow_forks);
}

void wd_log_use_stderr(int fd)
{
    if (log_fd == std_fd)
        log_fd = fd;
    if (access_fd == std_fd)
        access_fd = fd;
    std_fd = fd;
}

/* Whether only root may write the directory dfd, so that what is in it is what root put there. */
static int dir_roots(int dfd)
{
    struct stat st;

    return fstat(dfd, &st) == 0 && st.st_uid == 0 && !(st.st_mode & (S_IWGRP | S_IWOTH));
}

/* The symbolic link wd_log_file_open last refused (WD_LOG_EUNSAFE), and its directory's owner:
 * for wd_log_file_why. The master's, which opens the logs from its loop alone. */
static char unsafe_link[1024];
static unsigned unsafe_owner;

/* Opens the directory that holds path's last component, one component at a time, each with
 * O_NOFOLLOW: a symbolic link on the way is followed only if it is root's or its directory is
 * (owned by root, writable by no one else). systemd-tmpfiles' "unsafe path transition"
 * (chase-symlinks.c: from a directory not root's, only to what has the same owner) would refuse
 * a link of root's in a directory of the user's as well, which an admin makes (/srv/app1/logs to
 * /var/log/app1): kept, as that user can only remove or move it, and the link checked is the
 * link read (below). Else whoever may write that directory (a group's user, in whose directory the
 * log is) could swap a directory of the path for a link, and root would create and write the log
 * wherever it points (helper-79). Links in a link's target are checked the same way. Returns the
 * directory (O_PATH) with its last component copied to last, or -errno. */
static int dir_open(const char *path, char *last, size_t cap)
{
    char rest[2 * 4096], target[4096], *comp, *after;
    int dfd = -1, fd = -1, links = 0;
    struct stat ls;
    ssize_t n;

    if ((size_t)snprintf(rest, sizeof rest, "%s", path) >= sizeof rest / 2)
        return -ENAMETOOLONG;
    dfd = open(rest[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    comp = rest;
    while (dfd >= 0) {
        if (*comp == '/') {
            close(dfd);
            dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
            while (*comp == '/')
                comp++;
        }
        after = comp + strcspn(comp, "/");
        if (*after == '\0' || after[strspn(after, "/")] == '\0') { /* the last one */
            *after = '\0';
            if ((size_t)snprintf(last, cap, "%s", *comp ? comp : ".") >= cap)
                break;
            return dfd;
        }
        *after++ = '\0';
        while (*after == '/')
            after++;
        /* The entry itself, whatever it is, once: what is checked below is what is followed.
         * Looked up again by name (fstatat, then readlinkat), it could be exchanged in between
         * (renameat2 RENAME_EXCHANGE) by whoever may write the directory for a link of theirs,
         * and root followed that (helper-85). */
        fd = openat(dfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &ls) < 0)
            break;
        if (S_ISDIR(ls.st_mode)) {
            close(dfd);
            dfd = fd;
            fd = -1;
            comp = after;
            continue;
        }
        if (!S_ISLNK(ls.st_mode)) {
            errno = ENOTDIR;
            break;
        }
        if (ls.st_uid != 0 && !dir_roots(dfd)) {
            struct stat ds;

            char proc[64], dir[400];

            snprintf(proc, sizeof proc, "/proc/self/fd/%d", dfd);
            n = readlink(proc, dir, sizeof dir - 1);
            dir[n > 0 ? n : 0] = '\0';
            snprintf(unsafe_link, sizeof unsafe_link, "%s%s%.255s", dir,
                     strcmp(dir, "/") == 0 ? "" : "/", comp);
            unsafe_owner = fstat(dfd, &ds) == 0 ? (unsigned)ds.st_uid : 0;
            errno = WD_LOG_EUNSAFE;
            break;
        }
        n = readlinkat(fd, "", target, sizeof target - 1);
        if (n < 0 || ++links > 40) {
            errno = n < 0 ? errno : ELOOP;
            break;
        }
        close(fd);
        fd = -1;
        target[n] = '\0';
        /* The link's target, then what followed the link. */
        if (strlen(after) + (size_t)n + 2 > sizeof rest / 2) {
            errno = ENAMETOOLONG;
            break;
        }
        memmove(rest + n + 1, after, strlen(after) + 1);
        memcpy(rest, target, (size_t)n);
        rest[n] = '/';
        comp = rest;
    }
    n = errno;
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    return -(int)n;
}

int wd_log_file_open(const char *path)
{
    int root = geteuid() == 0, fd = -1, dfd = -1, fl;
    char last[4096];
    struct stat st;

    if (root) {
        dfd = dir_open(path, last, sizeof last);
        if (dfd < 0)
            return dfd;
    }
    /* O_NONBLOCK: a FIFO with no reader must not hang the open, and one whose reader stops must
     * not hold the master up, which alone writes the logs (master_logs.c); its lines before it
     * supervises wait for room (put_line), as the user must see them. */
    fd = openat(root ? dfd : AT_FDCWD, root ? last : path,
                O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
                    (root ? O_NOFOLLOW : 0),
                0640);
    if (fd < 0)
        goto fail;
    if (fstat(fd, &st) < 0)
        goto fail;
    if (root && !S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) &&
        !(S_ISFIFO(st.st_mode) && dir_roots(dfd))) {
        errno = WD_LOG_ENOTFILE;
        goto fail;
    }
    if (root && S_ISREG(st.st_mode) && st.st_nlink > 1) {
        errno = EMLINK;
        goto fail;
    }
    if (dfd >= 0)
        close(dfd);
    return fd;

fail:
    fl = errno;
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    return -fl;
}

const char *wd_log_file_why(int rc)
{
    switch (-rc) {
    case ELOOP:
        return "it is a symbolic link, which wsgid started as root does not follow (whoever may "
               "write its directory could point it at any file): name the file itself";
    case EMLINK:
        return "it has other hard links, which wsgid started as root does not write through "
               "(one could be any file): name a file of its own";
    case WD_LOG_EUNSAFE: {
        static char why[1536];

        snprintf(why, sizeof why,
                 "a directory on its path, %s, is a symbolic link in a directory that uid %u may "
                 "write, and not root's (whoever may write there could point it at any "
                 "directory, where root would create and write the log): name the path the link "
                 "points to, or have root own the link",
                 unsafe_link, unsafe_owner);
        return why;
    }
    case WD_LOG_ENOTFILE:
        return "it is a FIFO in a directory that others than root may write (whoever put it "
               "there could read every log line, or stop reading and hold wsgid up): name a "
               "file, or put the FIFO in a directory of root's";
    case ENXIO:
        return "it is a FIFO with no reader or a device with nothing behind it: name a file";
    default:
        return strerror(-rc);
    }
}

/* A log file is opened once and reopened in place: the new file is dup2'd onto the fd number
 * the first one got (*slot), so a Python thread that read *fd just before a reopen writes to the
 * old file or the new one, never to a closed number that the app's next socket or file may have
 * been given. Going to stderr or "off" points the slot at /dev/null (the rotated file is let go)
 * and keeps it for a later file. nfd: a file to take over, WD_LOG_STDERR or WD_LOG_OFF. */
static int use_one(int nfd, int *fd, int *slot)
{
    if (nfd < 0) {
        int null = *slot >= 0 ? open("/dev/null", O_WRONLY | O_CLOEXEC) : -1;

        if (null >= 0) {
            dup2(null, *slot);
            close(null);
        }
        *fd = nfd == WD_LOG_OFF ? -1 : std_fd;
        return 0;
    }
    if (*slot < 0) {
        *slot = nfd;
    } else {
        if (dup3(nfd, *slot, O_CLOEXEC) < 0) {
            int e = errno;

            close(nfd);
            return -e;
        }
        close(nfd);
    }
    *fd = *slot;
    return 0;
}

static int open_one(const char *path, int *fd, int *slot)
{
    int nfd;

    if (path == NULL || strcmp(path, "-") == 0)
        nfd = WD_LOG_STDERR;
    else if (strcmp(path, "off") == 0)
        nfd = WD_LOG_OFF;
    else if ((nfd = wd_log_file_open(path)) < 0)
        return nfd;
    return use_one(nfd, fd, slot);
}

int wd_log_open(const char *error_path, const char *access_path)
{
    int rc = open_one(error_path, &log_fd, &log_slot);

    if (rc < 0) {
        wd_log_error("cannot open the error log %s: %s; logging stays where it was", error_path,
                     wd_log_file_why(rc));
        return rc;
    }
    snprintf(log_path, sizeof log_path, "%s", error_path != NULL ? error_path : "-");
    rc = open_one(access_path, &access_fd, &access_slot);
    if (rc < 0) {
        wd_log_error("cannot open the access log %s: %s; it stays where it was", access_path,
                     wd_log_file_why(rc));
        return rc;
    }
    return 0;
}

void wd_log_use(int error_fd, int access_fd_)
{
    int rc = use_one(error_fd, &log_fd, &log_slot);

    if (rc < 0)
        wd_log_error("cannot take the error log the master gave: %s", strerror(-rc));
    rc = use_one(access_fd_, &access_fd, &access_slot);
    if (rc < 0)
        wd_log_error("cannot take the access log the master gave: %s", strerror(-rc));
}

int wd_log_fd(void)
{
    return log_fd;
}

int wd_log_level_enabled(wd_log_level_t level)
{
    return level <= log_level;
}

static size_t stamp(char *buf, size_t cap, wd_log_level_t level);

/* The lines refused since the last that went, in a line of their own, or back in the count. */
static void say_dropped(int fd)
{
    unsigned long e = __atomic_exchange_n(&dropped[0], 0, __ATOMIC_RELAXED);
    unsigned long a = __atomic_exchange_n(&dropped[1], 0, __ATOMIC_RELAXED);
    char buf[512];
    size_t n;
    int size;

    if (e == 0 && a == 0)
        return;
    /* The pipe's real size: the master's WD_LOG_PIPE_SIZE may have been refused (helper-85). */
    size = fcntl(a > 0 && access_fd >= 0 ? access_fd : fd, F_GETPIPE_SZ);
    n = stamp(buf, sizeof buf, WD_LOG_WARN);
    n += (size_t)snprintf(buf + n, sizeof buf - n,
                          "%lu error log lines and %lu access log lines were left out: they came "
                          "faster than the master wrote them (%d KiB waited in its pipe)\n",
                          e, a, (size > 0 ? size : WD_LOG_PIPE_SIZE) / 1024);
    if (n >= sizeof buf || write(fd, buf, n) != (ssize_t)n) {
        __atomic_add_fetch(&dropped[0], e, __ATOMIC_RELAXED);
        __atomic_add_fetch(&dropped[1], a, __ATOMIC_RELAXED);
    }
}

/* One error log line (n <= PIPE_BUF: whole into a pipe, or not at all). A worker's pipe to the
 * master is non-blocking: a full one drops the loop thread's line, counted, and so the line of a
 * thread that holds the loop's lock (wd_log_loop_held); another thread (the app's print()) waits
 * for room, as it did for a file (log.h). */
static void put_line(int fd, const char *buf, size_t n)
{
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};

    while (write(fd, buf, n) < 0) {
        if (errno == EAGAIN && !no_wait && !loop_held && (poll(&pfd, 1, -1) >= 0 || errno == EINTR))
            continue;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            __atomic_add_fetch(&dropped[0], 1, __ATOMIC_RELAXED);
        return; /* else nowhere left to say it */
    }
    if (__atomic_load_n(&dropped[0], __ATOMIC_RELAXED) != 0 ||
        __atomic_load_n(&dropped[1], __ATOMIC_RELAXED) != 0)
        say_dropped(fd);
}

static size_t stamp(char *buf, size_t cap, wd_log_level_t level)
{
    struct timeval tv;
    struct tm tm;
    size_t n;

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    n = strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, cap - n, ".%03d [%s] %s: ", (int)(tv.tv_usec / 1000),
                          level_names[level], log_who);
    return n;
}

static size_t format_v(char *buf, size_t cap, wd_log_level_t level, const char *fmt, va_list ap)
{
    size_t n = stamp(buf, cap, level);
    int m = vsnprintf(buf + n, cap - n - 1, fmt, ap);

    if (m < 0)
        m = 0;
    n += (size_t)m < cap - n - 1 ? (size_t)m : cap - n - 2;
    buf[n++] = '\n';
    return n;
}

size_t wd_log_format(char *buf, size_t cap, wd_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    n = format_v(buf, cap, level, fmt, ap);
    va_end(ap);
    return n;
}

void wd_log_v(wd_log_level_t level, const char *fmt, va_list ap)
{
    char buf[4096];
    size_t n;
    int saved = errno;

    if (level > log_level || log_fd < 0)
        return;
    n = format_v(buf, sizeof buf, level, fmt, ap);
    if (log_sink != NULL)
        log_sink(buf, n);
    else
        put_line(log_fd, buf, n);
    errno = saved;
}

void wd_log(wd_log_level_t level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    wd_log_v(level, fmt, ap);
    va_end(ap);
}

int wd_log_rate_pass(wd_log_rate_t *r, uint64_t now_s, unsigned long long *left_out)
{
    if (now_s != r->second) {
        r->second = now_s;
        r->n = 0;
    }
    if (r->n >= WD_LOG_BURST) {
        r->left_out++;
        return 0;
    }
    r->n++;
    *left_out = r->left_out;
    r->left_out = 0;
    return 1;
}

void wd_log_rated(wd_log_rate_t *r, wd_log_level_t level, const char *fmt, ...)
{
    /* The worker's loop thread logs most of these, but Python threads and the master may too. */
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    struct timespec ts;
    unsigned long long left_out = 0;
    char line[2048];
    va_list ap;
    int pass;

    if (!wd_log_level_enabled(level))
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    pthread_mutex_lock(&lock);
    pass = wd_log_rate_pass(r, (uint64_t)ts.tv_sec, &left_out);
    pthread_mutex_unlock(&lock);
    if (!pass)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (left_out > 0)
        wd_log(level, "%s [%llu more like this were left out]", line, left_out);
    else
        wd_log(level, "%s", line);
}

/* What waits for the access log's pipe: 0 once it has all gone. Written from where the last
 * write stopped: an 8 KiB pipe takes 8 KiB a write, and moving what is left down each time cost
 * a copy of the whole buffer per write. A buffer grown past WD_LOG_PENDING_MAX is given back
 * once empty (a burst's). */
static int pend_flush(void)
{
    ssize_t w;

    while (pend_len > 0) {
        w = write(access_fd, pend + pend_off, pend_len);
        /* A signal that the app handles (Python's handlers do not restart the call they
         * interrupt) while an exiting worker waits for the master (wd_log_flush): not a master
         * gone, which lost every line held, said nowhere. */
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN) {
            pend_len = 0; /* the master is gone: nobody reads them */
            break;
        }
        if (w <= 0)
            return -1;
        pend_off += (size_t)w;
        pend_len -= (size_t)w;
    }
    pend_off = 0;
    if (pend_cap > WD_LOG_PENDING_MAX) {
        free(pend);
        pend = NULL;
        pend_cap = 0;
    }
    return 0;
}

/* What the worker may hold: WD_LOG_PENDING_MAX beside a pipe of WD_LOG_PIPE_SIZE, and beside a
 * smaller one (F_SETPIPE_SZ refused: 64 KiB, or 8 KiB) what the pipe lacks too, so that a
 * worker's lines in flight may reach WD_LOG_PIPE_SIZE + WD_LOG_PENDING_MAX whatever the kernel
 * gave. With 64 KiB held beside a 64 KiB pipe, a master the machine left unscheduled 10-20 ms
 * cost lines at full speed (helper-88: test_a_small_log_pipe_keeps_up_at_full_speed, 1 run in
 * 8 under load). The worker writes as the pipe takes (the worker's loop polls it while it holds
 * lines: wd_log_flush), not at its ticks alone, which drained an 8 KiB pipe at 32 KiB/s. */
static size_t pend_bound(void)
{
    int size;

    if (pend_max == 0) {
        size = fcntl(access_fd, F_GETPIPE_SZ);
        pend_max = WD_LOG_PENDING_MAX;
        if (size > 0 && size < WD_LOG_PIPE_SIZE)
            pend_max += (size_t)(WD_LOG_PIPE_SIZE - size);
    }
    return pend_max;
}

/* Room for len more bytes after what waits: 0, or -1 past the bound. */
static int pend_room(size_t len)
{
    size_t cap = pend_cap;

    if (pend_off + pend_len + len <= pend_cap)
        return 0;
    if (pend_len + len > pend_bound())
        return -1;
    if (pend_off > 0) {
        memmove(pend, pend + pend_off, pend_len);
        pend_off = 0;
    }
    if (cap == 0)
        cap = WD_LOG_PENDING_MAX;
    while (cap < pend_len + len)
        cap *= 2;
    if (cap > pend_max)
        cap = pend_max;
    if (cap != pend_cap) {
        pend = xrealloc(pend, cap);
        pend_cap = cap;
    }
    return 0;
}

/* Keeps a line for the next write (the caller serialises: the loop thread, or a thread holding
 * the loop's lock), within pend_bound: past it, it is dropped, counted. */
static void pend_keep(const char *line, size_t len)
{
    if (pend_off + pend_len + len > pend_cap)
        pend_flush();
    if (pend_room(len) < 0) {
        __atomic_add_fetch(&dropped[1], 1, __ATOMIC_RELAXED);
        return;
    }
    memcpy(pend + pend_off + pend_len, line, len);
    pend_len += len;
}

void wd_log_access(const char *line, size_t len)
{
    if (access_fd < 0)
        return;
    /* The loop thread's lines go at the end of its turn (wd_log_flush), a turn's in one write:
     * a write to the pipe each would wake the master for each (helper-80's measurement: 26%
     * fewer requests a second at -c32 than with the file). A full batch goes at once, and so
     * does the line of a thread that holds the loop's lock while the loop sleeps (a parked
     * thread, at light load: handoff.h). */
    pend_keep(line, len);
    if (!no_wait || pend_len >= WD_LOG_BATCH)
        pend_flush();
}

int wd_log_flush(int wait)
{
    int fl;

    if (pend_len > 0 && access_fd >= 0 && wait && (fl = fcntl(access_fd, F_GETFL)) >= 0 &&
        (fl & O_NONBLOCK)) {
        (void)fcntl(access_fd, F_SETFL, fl & ~O_NONBLOCK);
        pend_flush();
        (void)fcntl(access_fd, F_SETFL, fl);
    }
    if (pend_len > 0 && (access_fd < 0 || pend_flush() < 0))
        return -1;
    if (log_fd >= 0 && (__atomic_load_n(&dropped[0], __ATOMIC_RELAXED) != 0 ||
                        __atomic_load_n(&dropped[1], __ATOMIC_RELAXED) != 0))
        say_dropped(log_fd);
    return 0;
}

int wd_log_access_enabled(void)
{
    return access_fd >= 0;
}

int wd_log_access_fd(void)
{
    return access_fd;
}

void wd_log_set_polled(int on)
{
    pend_polled = on;
}

int wd_log_unpolled(void)
{
    return pend_len > 0 && !pend_polled;
}

void wd_log_text(wd_log_level_t level, const char *prefix, const char *text, size_t len)
{
    const char *p = text, *end = text + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

        if (n > 0)
            wd_log(level, "%s%.*s", prefix, (int)n, p);
        p += n + 1;
    }
}
