/* The master: reload-on-change. See master_int.h.
 *
 * For each group with `reload-on-change`, the patterns are its app scripts (the group's and its
 * mounts') and its `watch:` entries (daemon/common/pathglob.h). Linux's inotify, which libuv's
 * uv_fs_event_t uses, watches one directory at a time (UV_FS_EVENT_RECURSIVE is not supported
 * there), so each group gets one handle per directory where a pattern may match: the base of
 * each pattern (the directories before its first wildcard) and, below it, every directory the
 * pattern may reach (`**`: all of them but noise such as .git and __pycache__; symbolic links to
 * directories are not followed, so that a loop cannot make the walk endless). A single file is
 * watched through its directory: editors save by writing a new file and renaming it over the old
 * one, which a watch of the file itself would not survive. Directories created later get their
 * watches when their parent reports them; those removed lose theirs.
 *
 * An inotify watch follows an inode, not a path: a base directory moved away (`mv src src.old;
 * mkdir src`), removed and made again, or reached through a symbolic link that a deploy switches
 * (`ln -s releases/2 tmp && mv -T tmp current`) would leave the watch on the old directory, deaf
 * to the new one (helper-62's finding). So every directory above a base is watched too (a
 * guard), for the names that lead to the base only: when one of them is created, removed or
 * renamed, the path is resolved again, and each watched directory whose identity (device,
 * inode, birth time) is no longer what the path names is watched anew, as a change. A guard is
 * one watch per level of the path, shared by the bases below it; its events about other names
 * cost a string comparison.
 *
 * A change to a matching path starts a quiet period (debounce), restarted by every further
 * change, so that a save that is several writes, or a `git checkout` of many files, rolls the
 * group once. Then the group is rolled as `wsgictl restart GROUP` does (master_rolling.c): a
 * replacement that cannot load the app leaves the old workers serving, and the error stays in
 * `wsgictl status` until a roll succeeds (wd_group_t.reload_error). If a rolling operation is
 * already running on the group, the roll waits until it is done (wd__m_autoreload_op_done).
 *
 * Kernel notifications, not polling: an idle site costs nothing. */
#include "master_int.h"
#include "alloc.h"
#include "log.h"
#include "pathglob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

/* A save is a truncate and a few writes within a millisecond or two; a checkout or an rsync of a
 * tree, a burst of changes much less than this apart. */
#define WD_AUTORELOAD_DEBOUNCE_MS 400
/* A file that never stops changing (a log written under a `**` pattern) delays the roll no more
 * than this. */
#define WD_AUTORELOAD_MAX_WAIT_MS 5000
/* A change seen while the first workers are still starting is rolled once they are all ready. */
#define WD_AUTORELOAD_START_RETRY_MS 500
/* inotify watches are a per-user kernel resource (fs.inotify.max_user_watches): a `**` over a
 * big tree (a virtualenv, node_modules) must not take them all. */
#define WD_AUTORELOAD_MAX_DIRS 1024
#define WD_AUTORELOAD_MAX_DEPTH 64

/* What a path named when its directory was watched. The inode number alone is not enough: a
 * file system may give a directory made again the number of the one just removed (ext4 reuses
 * freed inodes); its birth time (statx, where the file system keeps one) tells them apart. */
typedef struct wd_autoreload_id {
    uint32_t dev_major, dev_minor;
    uint64_t ino;
    int64_t btime_s;
    uint32_t btime_ns;
} wd_autoreload_id_t;

typedef struct wd_autoreload_dir wd_autoreload_dir_t;

/* One watched directory; freed in its handle's close callback. */
struct wd_autoreload_dir {
    uv_fs_event_t ev;
    wd_autoreload_t *a;
    char *path;
    wd_autoreload_id_t id; /* what path named when the watch began */
    int guard;             /* above a base: only the names that lead to a base count */
    wd_autoreload_dir_t *next;
};

/* One group's watches and its pending roll; freed in its timer's close callback. */
struct wd_autoreload {
    uv_timer_t timer; /* the debounce */
    wd_master_t *m;
    wd_group_t *g; /* a reference */
    char **patterns;
    size_t n_patterns;
    /* The plain paths among the patterns that are symbolic links to a file (app.py ->
     * ../code/app.py) and what each named when the watches were built: the file they name is
     * watched too (its own pattern), and a link that names another one at a roll has the
     * watches built again. */
    char **links, **targets;
    size_t n_links;
    char **bases; /* where the patterns start: the directories guarded */
    size_t n_bases;
    wd_autoreload_dir_t *dirs;   /* the bases and the directories below them */
    wd_autoreload_dir_t *guards; /* the directories above the bases */
    size_t n_dirs, n_guards;
    wd_log_rate_t rate; /* the warnings about what cannot be watched */
    int capped;         /* WD_AUTORELOAD_MAX_DIRS was reached (and logged) */
    int dirty;          /* a change was seen that no roll has started for yet */
    int waiting;        /* the quiet period ended while the group was busy: roll when its op ends */
    int others;         /* other paths than `changed` changed too */
    uint64_t first_at, last_at; /* uv_now() of the first and the last change of the burst */
    char changed[PATH_MAX];     /* the first path that changed, for the log */
    wd_autoreload_t *next;
};

static void dir_event_cb(uv_fs_event_t *h, const char *name, int events, int status);
static void changed(wd_autoreload_t *a, const char *path);

static int join(char *out, size_t len, const char *dir, const char *name)
{
    int n = snprintf(out, len, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", name);

    return n > 0 && (size_t)n < len ? 0 : -1;
}

static int matches(const wd_autoreload_t *a, const char *path)
{
    for (size_t i = 0; i < a->n_patterns; i++)
        if (wd_pathglob_match(a->patterns[i], path))
            return 1;
    return 0;
}

/* Whether some pattern may match below dir: the walk goes in, and a watch is wanted there. */
static int wants(const wd_autoreload_t *a, const char *dir)
{
    for (size_t i = 0; i < a->n_patterns; i++)
        if (wd_pathglob_may_contain(a->patterns[i], dir))
            return 1;
    return 0;
}

/* The unix sockets wsgid removed lately, of listeners it let go (a reload that moved a group's
 * socket or removed the group): the current config no longer names them, and their removal
 * rolled the groups that watch their directory once more after the reload (helper-89). Kept
 * for WD_AUTORELOAD_GONE_MS, past a quiet period and the longest wait, however many: the last
 * 32 were kept, and a reload that removed a group of 40 sockets rolled the watching group for
 * the first 8 (helper-98). */
#define WD_AUTORELOAD_GONE_MS (2 * WD_AUTORELOAD_MAX_WAIT_MS)
struct gone_socket {
    char *path;
    uint64_t at_ns;
};
static struct gone_socket *gone;
static size_t n_gone;

static int gone_lately(const struct gone_socket *g, uint64_t now)
{
    return now - g->at_ns < WD_AUTORELOAD_GONE_MS * 1000000ull;
}

void wd__m_autoreload_socket_removed(const char *path)
{
    uint64_t now = wd__m_now_ns();
    size_t k = 0;

    for (size_t i = 0; i < n_gone; i++) { /* those past their time go */
        if (gone_lately(&gone[i], now))
            gone[k++] = gone[i];
        else
            free(gone[i].path);
    }
    gone = xrealloc(gone, (k + 1) * sizeof *gone);
    gone[k].path = xstrdup(path);
    gone[k].at_ns = now;
    n_gone = k + 1;
}

static int gone_socket(const char *path)
{
    uint64_t now = wd__m_now_ns();

    for (size_t i = 0; i < n_gone; i++)
        if (gone_lately(&gone[i], now) && strcmp(gone[i].path, path) == 0)
            return 1;
    return 0;
}

/* The files wsgid itself writes: a pattern that takes in the error log (`watch: [.]` with the
 * log next to the config) would otherwise roll the group for every line it logs, including the
 * lines of the roll. Its unix sockets too: a group's is bound anew at `wsgictl start`, and the
 * default one (GROUP.sock) is beside the config, so a group started again was rolled at once
 * (helper-81); and those it removed lately (gone_socket). */
static int own_file(const wd_master_t *m, const char *path)
{
    const wd_config_t *c = m->gen->conf;

    if (gone_socket(path))
        return 1;

    if (strcmp(path, c->log_file) == 0 || strcmp(path, c->access_log) == 0 ||
        (c->pidfile != NULL && strcmp(path, c->pidfile) == 0) ||
        (c->control != NULL && strcmp(path, c->control) == 0))
        return 1;
    for (size_t i = 0; i < c->n_groups; i++) {
        if (c->groups[i].access_log != NULL && strcmp(path, c->groups[i].access_log) == 0)
            return 1;
        for (size_t k = 0; k < c->groups[i].n_listen; k++)
            if (c->groups[i].listen[k].is_unix && c->groups[i].listen[k].path != NULL &&
                strcmp(path, c->groups[i].listen[k].path) == 0)
                return 1;
    }
    return 0;
}

static wd_autoreload_dir_t *find_in(wd_autoreload_dir_t *d, const char *path)
{
    for (; d != NULL; d = d->next)
        if (strcmp(d->path, path) == 0)
            return d;
    return NULL;
}

static wd_autoreload_dir_t *find_dir(const wd_autoreload_t *a, const char *path)
{
    return find_in(a->dirs, path);
}

static int is_base(const wd_autoreload_t *a, const char *path)
{
    for (size_t i = 0; i < a->n_bases; i++)
        if (strcmp(a->bases[i], path) == 0)
            return 1;
    return 0;
}

/* 0 with *id if path names a directory, else -1 (errno set). A base and the directories above
 * it are reached through symbolic links (follow), as the app's path is; below a base, a link is
 * not a directory, as for the walk. */
static int dir_id(const char *path, int follow, wd_autoreload_id_t *id)
{
    struct statx sx;

    if (statx(AT_FDCWD, path, follow ? 0 : AT_SYMLINK_NOFOLLOW,
              STATX_TYPE | STATX_INO | STATX_BTIME, &sx) < 0)
        return -1;
    if (!S_ISDIR(sx.stx_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    memset(id, 0, sizeof *id);
    id->dev_major = sx.stx_dev_major;
    id->dev_minor = sx.stx_dev_minor;
    id->ino = sx.stx_ino;
    if (sx.stx_mask & STATX_BTIME) {
        id->btime_s = sx.stx_btime.tv_sec;
        id->btime_ns = sx.stx_btime.tv_nsec;
    }
    return 0;
}

static int same_id(const wd_autoreload_id_t *x, const wd_autoreload_id_t *y)
{
    return x->dev_major == y->dev_major && x->dev_minor == y->dev_minor && x->ino == y->ino &&
           x->btime_s == y->btime_s && x->btime_ns == y->btime_ns;
}

/* ---- the watches ---------------------------------------------------------------------------- */

static void dir_close_cb(uv_handle_t *h)
{
    wd_autoreload_dir_t *d = h->data;

    free(d->path);
    free(d);
}

/* What cannot be watched goes unseen, so it is said; but a deploy that replaces a tree again
 * and again may meet the same failure each time: WD_LOG_BURST lines a second per group. */
static void warn_unwatched(wd_autoreload_t *a, const char *path, int guard, int err)
{
    const char *what =
        guard ? "; a replacement of what it holds is not seen" : "; changes there are not seen";

    if (err == UV_ENOSPC)
        what = " (raise the sysctl fs.inotify.max_user_watches, or narrow `watch:`)";
    else if (err == UV_EMFILE) /* inotify_init1: the user's instances (128 by default) taken */
        what = " (the open-file limit, or every inotify instance of the user taken by other "
               "programs: raise the sysctl fs.inotify.max_user_instances); changes there are "
               "not seen";
    wd_log_rated(&a->rate, WD_LOG_WARN, "group %s: reload-on-change: cannot watch %s: %s%s",
                 a->g->name, path, uv_strerror(err), what);
}

/* Starts watching one directory: below a base (guard 0) or above one (guard 1). A directory
 * that vanished before its watch is worth a warning only for a base at the start (warn);
 * later, its parent or its guard reports its return. */
static wd_autoreload_dir_t *dir_add(wd_autoreload_t *a, const char *path, int guard, int follow,
                                    int warn)
{
    wd_autoreload_dir_t *d;
    wd_autoreload_id_t id;
    int rc;

    if (a->n_dirs + a->n_guards >= WD_AUTORELOAD_MAX_DIRS) {
        if (!a->capped)
            wd_log_rated(&a->rate, WD_LOG_WARN,
                         "group %s: reload-on-change: more than %d directories to watch; %s "
                         "and others are not watched: narrow `watch:`",
                         a->g->name, WD_AUTORELOAD_MAX_DIRS, path);
        a->capped = 1;
        return NULL;
    }
    /* The identity is read before the watch begins: a path switched between the two is then
     * watched anew at its guard's next event, where the other order would keep a watch on the
     * old directory under the identity of the new one. */
    if (dir_id(path, follow, &id) < 0) {
        if (warn || (errno != ENOENT && errno != ENOTDIR))
            warn_unwatched(a, path, guard, -errno);
        return NULL;
    }
    d = xcalloc(1, sizeof *d);
    d->a = a;
    d->path = xstrdup(path);
    d->id = id;
    d->guard = guard;
    uv_fs_event_init(&a->m->loop, &d->ev);
    d->ev.data = d;
    rc = uv_fs_event_start(&d->ev, dir_event_cb, path, 0);
    if (rc < 0) {
        if (warn || (rc != UV_ENOENT && rc != UV_ENOTDIR))
            warn_unwatched(a, path, guard, rc);
        uv_close((uv_handle_t *)&d->ev, dir_close_cb);
        return NULL;
    }
    if (guard) {
        d->next = a->guards;
        a->guards = d;
        a->n_guards++;
    } else {
        d->next = a->dirs;
        a->dirs = d;
        a->n_dirs++;
    }
    return d;
}

/* Watches dir and, below it, every directory a pattern may reach. found (if not NULL) receives
 * the first file that matches a pattern: the walk of a directory created after the start may
 * find files written before its watch was in place. */
static void watch_tree(wd_autoreload_t *a, const char *dir, int depth, char *found)
{
    char path[PATH_MAX];
    struct dirent *de;
    struct stat st;
    DIR *dp;

    if (find_dir(a, dir) != NULL || dir_add(a, dir, 0, depth == 0, depth == 0 && !found) == NULL)
        return;
    if (depth >= WD_AUTORELOAD_MAX_DEPTH || (dp = opendir(dir)) == NULL)
        return;
    while ((de = readdir(dp)) != NULL) {
        int is_dir = de->d_type == DT_DIR;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            join(path, sizeof path, dir, de->d_name) < 0)
            continue;
        if (de->d_type == DT_UNKNOWN)
            is_dir = lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
        if (is_dir && wants(a, path))
            watch_tree(a, path, depth + 1, found);
        else if (!is_dir && found != NULL && found[0] == '\0' && matches(a, path) &&
                 !own_file(a->m, path))
            snprintf(found, PATH_MAX, "%s", path);
    }
    closedir(dp);
}

static void dir_close(wd_autoreload_t *a, wd_autoreload_dir_t *d)
{
    if (d->guard)
        a->n_guards--;
    else
        a->n_dirs--;
    if (a->n_dirs + a->n_guards < WD_AUTORELOAD_MAX_DIRS)
        a->capped = 0;
    uv_close((uv_handle_t *)&d->ev, dir_close_cb);
}

/* Stops watching path and everything below it. */
static void unwatch_tree(wd_autoreload_t *a, const char *path)
{
    wd_autoreload_dir_t **pp = &a->dirs, *d;
    size_t n = strlen(path);

    while ((d = *pp) != NULL) {
        if (strncmp(d->path, path, n) == 0 && (d->path[n] == '\0' || d->path[n] == '/')) {
            *pp = d->next;
            dir_close(a, d);
        } else {
            pp = &d->next;
        }
    }
}

static void guard_close(wd_autoreload_t *a, wd_autoreload_dir_t *g)
{
    wd_autoreload_dir_t **pp;

    for (pp = &a->guards; *pp != g; pp = &(*pp)->next)
        ;
    *pp = g->next;
    dir_close(a, g);
}

/* Guards every directory above base, from the root down: a guard whose path now names another
 * directory (a moved directory, a switched link above the base) is watched anew; one that is
 * missing is skipped, as the guard above it reports its return. */
static void guard_chain(wd_autoreload_t *a, const char *base)
{
    char path[PATH_MAX];
    wd_autoreload_dir_t *g;
    wd_autoreload_id_t id;

    for (size_t i = 0; base[i] != '\0' && i < sizeof path; i++) {
        size_t n = i == 0 ? 1 : i; /* "/" itself, then "/srv", "/srv/app"... */
        int have;

        if (base[i] != '/')
            continue;
        memcpy(path, base, n);
        path[n] = '\0';
        g = find_in(a->guards, path);
        have = dir_id(path, 1, &id) == 0;
        if (g != NULL && (!have || !same_id(&g->id, &id))) {
            guard_close(a, g);
            g = NULL;
        }
        if (g == NULL && have)
            dir_add(a, path, 1, 1, 0);
    }
}

/* A directory that is, or was, watched below a base (depth 0 for the base itself), after an
 * event that may have moved, removed or replaced it: if path no longer names the directory
 * watched, the old one's watches end and the new one's begin, and the group is rolled, for
 * the files that went with the old one or the first that matches in the new one. */
static void recheck(wd_autoreload_t *a, const char *dir, int depth)
{
    char path[PATH_MAX], found[PATH_MAX];
    wd_autoreload_dir_t *d;
    wd_autoreload_id_t id;
    int have, lost = 0;

    snprintf(path, sizeof path, "%s", dir); /* dir may be the path of a watch closed here */
    have = dir_id(path, depth == 0, &id) == 0;
    if ((d = find_dir(a, path)) != NULL) {
        if (have && same_id(&d->id, &id))
            return;
        unwatch_tree(a, path);
        lost = 1;
    }
    found[0] = '\0';
    if (have && (depth == 0 || wants(a, path)))
        watch_tree(a, path, depth, found);
    if (found[0] != '\0')
        changed(a, found);
    else if (lost)
        changed(a, path);
}

/* Whether path is base or a directory above it. */
static int leads_to(const char *path, const char *base)
{
    size_t n = strlen(path);

    return strncmp(base, path, n) == 0 && (base[n] == '\0' || base[n] == '/');
}

/* ---- changes, the quiet period, the roll ---------------------------------------------------- */

/* The path a dangling symbolic link leads to, the links after it followed (at most 40, as the
 * kernel's), as a new string; NULL if it ends anywhere else than at a missing file. */
static char *dangling_target(const char *path)
{
    char *cur = xstrdup(path), buf[PATH_MAX];
    struct stat st;

    for (int i = 0; i < 40; i++) {
        ssize_t n = readlink(cur, buf, sizeof buf - 1);
        char *next;

        if (n <= 0)
            break;
        buf[n] = '\0';
        if (buf[0] == '/') {
            next = xstrdup(buf);
        } else {
            char *slash = strrchr(cur, '/');
            int dir_len = slash != NULL ? (int)(slash - cur) : 1;

            if (asprintf(&next, "%.*s/%s", dir_len, slash != NULL ? cur : ".", buf) < 0)
                abort();
        }
        free(cur);
        cur = next;
        if (lstat(cur, &st) < 0)
            return errno == ENOENT ? cur : (free(cur), NULL);
        if (!S_ISLNK(st.st_mode))
            break;
    }
    free(cur);
    return NULL;
}

/* What a symbolic link names now (a new string), or NULL when it names no file (a directory, no
 * longer a link: a plain file is watched through its own pattern). A dangling link names the
 * missing file it leads to, so that its creation is seen (an app whose file a deploy removed
 * and writes again; a watch: entry made before what it names, helper-89). */
static char *link_target(const char *path)
{
    struct stat st;
    char *rp;

    if (lstat(path, &st) < 0 || !S_ISLNK(st.st_mode))
        return NULL;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? dangling_target(path) : NULL;
    if (S_ISDIR(st.st_mode))
        return NULL;
    rp = realpath(path, NULL);
    if (rp != NULL && strcmp(rp, path) == 0) {
        free(rp);
        return NULL;
    }
    return rp;
}

/* Whether a link among the patterns names another file than when the watches were built. */
static int links_moved(const wd_autoreload_t *a)
{
    for (size_t i = 0; i < a->n_links; i++) {
        char *t = link_target(a->links[i]);
        int same = t != NULL && a->targets[i] != NULL && strcmp(t, a->targets[i]) == 0;

        free(t);
        if (!same)
            return 1;
    }
    return 0;
}

static void roll(wd_autoreload_t *a)
{
    wd_group_t *g = a->g;
    wd_master_t *m = a->m;
    char what[128];
    wd_batch_t *b;

    wd_log_info("group %s: %s%s changed: restarting the workers", g->name, a->changed,
                a->others ? " (and other files)" : "");
    a->dirty = 0;
    a->waiting = 0;
    snprintf(what, sizeof what, "reload on change of group %s", g->name);
    b = wd__m_batch_new(m, NULL, what);
    wd__m_op_step(wd__m_op_new(g, b, WD_OP_RESTART, g->gen, g->conf, g->ls, g->n_ls));
    wd__m_batch_done_one(m, b);
    if (links_moved(a))
        wd__m_autoreload_update(m); /* closes a: not used after this */
}

static void quiet_cb(uv_timer_t *t)
{
    wd_autoreload_t *a = t->data;
    wd_group_t *g = a->g;
    wd_master_t *m = a->m;

    if (!a->dirty || m->stopping) {
        a->dirty = 0;
        return;
    }
    if (g->removed || g->stopped) {
        /* A stopped group loads the files as they are when it is started again. */
        wd_log_info("group %s: %s changed; the group is stopped: nothing to restart", g->name,
                    a->changed);
        a->dirty = 0;
        return;
    }
    if (m->starting) {
        uv_timer_start(&a->timer, quiet_cb, WD_AUTORELOAD_START_RETRY_MS, 0);
        return;
    }
    if (g->op != NULL) {
        if (!a->waiting)
            wd_log_info("group %s: %s changed: the workers restart once the restart in progress "
                        "is done",
                        g->name, a->changed);
        a->waiting = 1;
        return;
    }
    roll(a);
}

/* Milliseconds left of the quiet period after the last change, within the longest wait. */
static uint64_t quiet_left(const wd_autoreload_t *a, uint64_t now)
{
    uint64_t due = a->last_at + WD_AUTORELOAD_DEBOUNCE_MS;

    if (due > a->first_at + WD_AUTORELOAD_MAX_WAIT_MS)
        due = a->first_at + WD_AUTORELOAD_MAX_WAIT_MS;
    return due > now ? due - now : 0;
}

static void changed(wd_autoreload_t *a, const char *path)
{
    uint64_t now = uv_now(&a->m->loop);

    if (!a->dirty) {
        wd_log_debug("group %s: reload-on-change: %s changed", a->g->name, path);
        a->dirty = 1;
        a->others = 0;
        a->first_at = now;
        snprintf(a->changed, sizeof a->changed, "%s", path);
    } else if (strcmp(a->changed, path) != 0) {
        a->others = 1;
    }
    a->last_at = now;
    if (!a->waiting) /* else the roll starts when the operation in progress ends */
        uv_timer_start(&a->timer, quiet_cb, quiet_left(a, now), 0);
}

/* libuv names the directory itself (its last segment) for the events of the watched directory:
 * removed, moved away, its attributes changed. */
static int about_itself(const wd_autoreload_dir_t *d, const char *name)
{
    const char *slash = strrchr(d->path, '/');

    return slash != NULL && strcmp(slash + 1, name) == 0;
}

/* A guard's event: only a name created, removed or renamed (UV_RENAME) that leads to a base
 * can change what the base's path names; the guards from there down and the base are checked
 * again. */
static void guard_event_cb(wd_autoreload_dir_t *g, const char *name, int events)
{
    wd_autoreload_t *a = g->a;
    char path[PATH_MAX];

    if (!(events & UV_RENAME) || join(path, sizeof path, g->path, name) < 0)
        return;
    for (size_t i = 0; i < a->n_bases; i++) {
        if (leads_to(path, a->bases[i])) {
            guard_chain(a, a->bases[i]); /* may close g: path is a copy */
            recheck(a, a->bases[i], 0);
        }
    }
}

/* Plain changes of a file's content (UV_CHANGE: a log file below a `**` is written on every
 * request) cost no system call here: only creations, removals and renames (UV_RENAME) can add
 * or take away a directory. */
static void dir_event_cb(uv_fs_event_t *h, const char *name, int events, int status)
{
    wd_autoreload_dir_t *d = h->data;
    wd_autoreload_t *a = d->a;
    char path[PATH_MAX];
    wd_autoreload_id_t id;
    struct stat st;

    if (status < 0) {
        wd_log_rated(&a->rate, WD_LOG_WARN, "group %s: reload-on-change: watching %s: %s",
                     a->g->name, d->path, uv_strerror(status));
        return;
    }
    if (name == NULL)
        return;
    if (d->guard) {
        guard_event_cb(d, name, events);
        return;
    }
    if (about_itself(d, name)) {
        int base = is_base(a, d->path);

        if (dir_id(d->path, base, &id) < 0 || !same_id(&d->id, &id)) {
            /* Removed, moved away or replaced: what it held is gone too. */
            recheck(a, d->path, base ? 0 : 1); /* closes d */
            return;
        }
    }
    if (join(path, sizeof path, d->path, name) < 0)
        return;
    /* A directory created, moved in, moved away, or replaced by another (`mv lib lib.old; mkdir
     * lib` may be over before the first of its events is read). */
    if ((events & UV_RENAME) && (find_dir(a, path) != NULL ||
                                 (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && wants(a, path))))
        recheck(a, path, is_base(a, path) ? 0 : 1);
    if (matches(a, path) && !own_file(a->m, path))
        changed(a, path);
}

/* ---- building and tearing down ------------------------------------------------------------ */

static void add_pattern(wd_autoreload_t *a, const char *p)
{
    a->patterns = xrealloc(a->patterns, (a->n_patterns + 1) * sizeof *a->patterns);
    a->patterns[a->n_patterns++] = xstrdup(p);
}

static wd_autoreload_t *group_watch(wd_master_t *m, wd_group_t *g, const wd_group_conf_t *gc)
{
    wd_autoreload_t *a = xcalloc(1, sizeof *a);
    char base[PATH_MAX];
    size_t i, n;

    a->m = m;
    a->g = wd__m_group_ref(g);
    uv_timer_init(&m->loop, &a->timer);
    a->timer.data = a;
    if (gc->app_is_script)
        add_pattern(a, gc->app);
    for (i = 0; i < gc->n_mounts; i++)
        if (gc->mounts[i].app_is_script)
            add_pattern(a, gc->mounts[i].app);
    for (i = 0; i < gc->n_watch; i++)
        add_pattern(a, gc->watch[i]);
    /* An app script that is a symbolic link: an edit of the file it names is not seen through
     * the link's directory (mod_wsgi and uWSGI stat the script, which follows the link). */
    for (i = 0, n = a->n_patterns; i < n; i++) {
        char *t;

        if (!wd_pathglob_is_literal(a->patterns[i]) || (t = link_target(a->patterns[i])) == NULL)
            continue;
        a->links = xrealloc(a->links, (a->n_links + 1) * sizeof *a->links);
        a->targets = xrealloc(a->targets, (a->n_links + 1) * sizeof *a->targets);
        a->links[a->n_links] = xstrdup(a->patterns[i]);
        a->targets[a->n_links++] = t;
        add_pattern(a, t);
    }
    for (i = 0; i < a->n_patterns; i++) {
        n = wd_pathglob_base(a->patterns[i]);
        if (n == 0 || n >= sizeof base)
            continue;
        memcpy(base, a->patterns[i], n);
        base[n] = '\0';
        if (is_base(a, base))
            continue;
        a->bases = xrealloc(a->bases, (a->n_bases + 1) * sizeof *a->bases);
        a->bases[a->n_bases++] = xstrdup(base);
        guard_chain(a, base); /* first: a switch from here on is seen */
        watch_tree(a, base, 0, NULL);
    }
    wd_log_info("group %s: reload-on-change: watching %zu director%s for %zu path%s", g->name,
                a->n_dirs, a->n_dirs == 1 ? "y" : "ies", a->n_patterns,
                a->n_patterns == 1 ? "" : "s and patterns");
    return a;
}

static void group_close_cb(uv_handle_t *h)
{
    wd_autoreload_t *a = h->data;

    for (size_t i = 0; i < a->n_patterns; i++)
        free(a->patterns[i]);
    free(a->patterns);
    for (size_t i = 0; i < a->n_bases; i++)
        free(a->bases[i]);
    free(a->bases);
    for (size_t i = 0; i < a->n_links; i++) {
        free(a->links[i]);
        free(a->targets[i]);
    }
    free(a->links);
    free(a->targets);
    wd__m_group_unref(a->g);
    free(a);
}

static void group_unwatch(wd_autoreload_t *a)
{
    wd_autoreload_dir_t *d, *next;

    for (d = a->dirs; d != NULL; d = next) {
        next = d->next;
        uv_close((uv_handle_t *)&d->ev, dir_close_cb);
    }
    for (d = a->guards; d != NULL; d = next) {
        next = d->next;
        uv_close((uv_handle_t *)&d->ev, dir_close_cb);
    }
    a->dirs = NULL;
    a->guards = NULL;
    uv_close((uv_handle_t *)&a->timer, group_close_cb);
}

/* At the start and after a reload (SIGHUP, `wsgictl reload`): the watches are built again from
 * the config now in force (m->gen), for the groups that have reload-on-change. A change seen
 * but not rolled yet is kept for a group that is still there. */
void wd__m_autoreload_update(wd_master_t *m)
{
    const wd_config_t *conf = m->gen->conf;
    wd_autoreload_t *old = m->autoreload, *a, *o, **tail = &m->autoreload;

    m->autoreload = NULL;
    for (size_t i = 0; i < conf->n_groups; i++) {
        const wd_group_conf_t *gc = &conf->groups[i];
        wd_group_t *g = wd__m_find_group(m, gc->name);

        if (!gc->reload_on_change || g == NULL)
            continue;
        a = group_watch(m, g, gc);
        for (o = old; o != NULL; o = o->next) {
            if (o->g == g && o->dirty) {
                a->dirty = 1;
                a->others = o->others;
                a->first_at = o->first_at;
                a->last_at = o->last_at;
                memcpy(a->changed, o->changed, sizeof a->changed);
                uv_timer_start(&a->timer, quiet_cb, quiet_left(a, uv_now(&m->loop)), 0);
            }
        }
        *tail = a;
        tail = &a->next;
    }
    for (o = old; o != NULL; o = a) {
        a = o->next;
        group_unwatch(o);
    }
}

/* At the end: every handle closed, so that the loop can end. */
void wd__m_autoreload_stop(wd_master_t *m)
{
    wd_autoreload_t *a, *next;

    for (a = m->autoreload; a != NULL; a = next) {
        next = a->next;
        group_unwatch(a);
    }
    m->autoreload = NULL;
}

/* A rolling operation of g ended: a change that waited for it rolls the group now (or when the
 * quiet period after its last change is over). */
void wd__m_autoreload_op_done(wd_group_t *g)
{
    wd_autoreload_t *a;

    for (a = g->m->autoreload; a != NULL && a->g != g; a = a->next)
        ;
    if (a == NULL || !a->waiting)
        return;
    a->waiting = 0;
    uv_timer_start(&a->timer, quiet_cb, quiet_left(a, uv_now(&g->m->loop)), 0);
}
