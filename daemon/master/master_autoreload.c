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

typedef struct wd_autoreload_dir wd_autoreload_dir_t;

/* One watched directory; freed in its handle's close callback. */
struct wd_autoreload_dir {
    uv_fs_event_t ev;
    wd_autoreload_t *a;
    char *path;
    wd_autoreload_dir_t *next;
};

/* One group's watches and its pending roll; freed in its timer's close callback. */
struct wd_autoreload {
    uv_timer_t timer; /* the debounce */
    wd_master_t *m;
    wd_group_t *g; /* a reference */
    char **patterns;
    size_t n_patterns;
    wd_autoreload_dir_t *dirs;
    size_t n_dirs;
    int capped;  /* WD_AUTORELOAD_MAX_DIRS was reached (and logged) */
    int dirty;   /* a change was seen that no roll has started for yet */
    int waiting; /* the quiet period ended while the group was busy: roll when its op ends */
    int others;  /* other paths than `changed` changed too */
    uint64_t first_at, last_at; /* uv_now() of the first and the last change of the burst */
    char changed[PATH_MAX];     /* the first path that changed, for the log */
    wd_autoreload_t *next;
};

static void dir_event_cb(uv_fs_event_t *h, const char *name, int events, int status);

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

/* The files wsgid itself writes: a pattern that takes in the error log (`watch: [.]` with the
 * log next to the config) would otherwise roll the group for every line it logs, including the
 * lines of the roll. */
static int own_file(const wd_master_t *m, const char *path)
{
    const wd_config_t *c = m->gen->conf;

    if (strcmp(path, c->log_file) == 0 || strcmp(path, c->access_log) == 0 ||
        (c->pidfile != NULL && strcmp(path, c->pidfile) == 0))
        return 1;
    for (size_t i = 0; i < c->n_groups; i++)
        if (c->groups[i].access_log != NULL && strcmp(path, c->groups[i].access_log) == 0)
            return 1;
    return 0;
}

static wd_autoreload_dir_t *find_dir(const wd_autoreload_t *a, const char *path)
{
    wd_autoreload_dir_t *d;

    for (d = a->dirs; d != NULL; d = d->next)
        if (strcmp(d->path, path) == 0)
            return d;
    return NULL;
}

/* ---- the watches ---------------------------------------------------------------------------- */

static void dir_close_cb(uv_handle_t *h)
{
    wd_autoreload_dir_t *d = h->data;

    free(d->path);
    free(d);
}

/* Starts watching one directory. A base directory that cannot be watched is worth a warning;
 * a subdirectory that vanished between the listing and the watch is not. */
static int dir_add(wd_autoreload_t *a, const char *path, int base)
{
    wd_autoreload_dir_t *d;
    int rc;

    if (a->n_dirs >= WD_AUTORELOAD_MAX_DIRS) {
        if (!a->capped)
            wd_log_warn("group %s: reload-on-change: more than %d directories to watch; %s and "
                        "others are not watched: narrow `watch:`",
                        a->g->name, WD_AUTORELOAD_MAX_DIRS, path);
        a->capped = 1;
        return -1;
    }
    d = xcalloc(1, sizeof *d);
    d->a = a;
    d->path = xstrdup(path);
    uv_fs_event_init(&a->m->loop, &d->ev);
    d->ev.data = d;
    rc = uv_fs_event_start(&d->ev, dir_event_cb, path, 0);
    if (rc < 0) {
        if (base || (rc != UV_ENOENT && rc != UV_ENOTDIR))
            wd_log_warn("group %s: reload-on-change: cannot watch %s: %s%s", a->g->name, path,
                        uv_strerror(rc),
                        rc == UV_ENOSPC ? " (raise the sysctl fs.inotify.max_user_watches, or "
                                          "narrow `watch:`)"
                                        : "; changes there are not seen");
        uv_close((uv_handle_t *)&d->ev, dir_close_cb);
        return -1;
    }
    d->next = a->dirs;
    a->dirs = d;
    a->n_dirs++;
    return 0;
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

    if (find_dir(a, dir) != NULL || dir_add(a, dir, depth == 0) < 0)
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

/* Stops watching path and everything below it. */
static void unwatch_tree(wd_autoreload_t *a, const char *path)
{
    wd_autoreload_dir_t **pp = &a->dirs, *d;
    size_t n = strlen(path);

    while ((d = *pp) != NULL) {
        if (strncmp(d->path, path, n) == 0 && (d->path[n] == '\0' || d->path[n] == '/')) {
            *pp = d->next;
            a->n_dirs--;
            uv_close((uv_handle_t *)&d->ev, dir_close_cb);
        } else {
            pp = &d->next;
        }
    }
}

/* ---- changes, the quiet period, the roll ---------------------------------------------------- */

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

/* Plain changes of a file's content (UV_CHANGE: a log file below a `**` is written on every
 * request) cost no system call here: only creations, removals and renames (UV_RENAME) can add
 * or take away a directory. */
static void dir_event_cb(uv_fs_event_t *h, const char *name, int events, int status)
{
    wd_autoreload_dir_t *d = h->data;
    wd_autoreload_t *a = d->a;
    char path[PATH_MAX], found[PATH_MAX];
    struct stat st;

    if (status < 0) {
        wd_log_warn("group %s: reload-on-change: watching %s: %s", a->g->name, d->path,
                    uv_strerror(status));
        return;
    }
    if (name == NULL)
        return;
    if (about_itself(d, name) && (stat(d->path, &st) < 0 || !S_ISDIR(st.st_mode))) {
        /* The directory was removed or moved away: what it held is gone too. */
        snprintf(path, sizeof path, "%s", d->path);
        unwatch_tree(a, path); /* closes d */
        changed(a, path);
        return;
    }
    if (join(path, sizeof path, d->path, name) < 0)
        return;
    if ((events & UV_RENAME) && lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (find_dir(a, path) == NULL && wants(a, path)) {
            found[0] = '\0';
            watch_tree(a, path, 1, found);
            if (found[0] != '\0')
                changed(a, found);
        }
    } else if ((events & UV_RENAME) && find_dir(a, path) != NULL) {
        unwatch_tree(a, path); /* a watched directory removed, or replaced by a file */
        changed(a, path);
        return;
    }
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
    for (i = 0; i < a->n_patterns; i++) {
        n = wd_pathglob_base(a->patterns[i]);
        if (n == 0 || n >= sizeof base)
            continue;
        memcpy(base, a->patterns[i], n);
        base[n] = '\0';
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
    a->dirs = NULL;
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
