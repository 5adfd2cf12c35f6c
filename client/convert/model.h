/* What `wsgid convert` builds from an Apache or uWSGI configuration before writing it out: the
 * wsgid groups (their keys, python-path, env, mounts), the nginx locations that route URLs to
 * them or serve static files, and the notes on what was not converted. from_apache.c and
 * from_uwsgi.c fill it, write.c writes it. */
#ifndef WD_CONVERT_MODEL_H
#define WD_CONVERT_MODEL_H

#include <stddef.h>

typedef struct wd_cv_kv {
    char *key;
    char *value;
    int quote; /* write the value as a YAML string (else as a number or a word) */
} wd_cv_kv_t;

typedef struct wd_cv_list {
    wd_cv_kv_t *v;
    int n;
} wd_cv_list_t;

typedef struct wd_cv_mount {
    char *prefix; /* "" for the group's own app */
    char *app;
    char *app_group; /* NULL: the group's */
    char *callable;  /* NULL: application */
} wd_cv_mount_t;

typedef struct wd_cv_group {
    char *name;
    char *src_name;    /* the source's name when it is not a valid wsgid group name, else NULL */
    wd_cv_list_t keys; /* in the order written */
    char **python_path;
    int npython_path;
    wd_cv_list_t env;
    wd_cv_mount_t *mounts;
    int nmounts;
    char *listen;       /* "unix:PATH" or "HOST:PORT"; NULL: unix:NAME.sock beside the config */
    char **more_listen; /* the group's other sockets (nginx uses listen) */
    int nmore_listen;
    char *nginx_timeout; /* uwsgi_read_timeout / uwsgi_send_timeout, or NULL */
    const char *file;    /* where it was declared */
    int line;
} wd_cv_group_t;

enum { WD_CV_PREFIX, WD_CV_SEGMENT, WD_CV_EXACT };

typedef struct wd_cv_loc {
    char *prefix;
    int match;           /* WD_CV_PREFIX: nginx `location P`; SEGMENT: P and P/...; EXACT: `= P` */
    char *group;         /* the group whose socket serves it, or NULL */
    char *alias;         /* a static file or directory nginx serves, or NULL */
    wd_cv_list_t params; /* uwsgi_param NAME VALUE; an empty value with quote 0 hides NAME from
                            the app (if_not_empty), with quote 1 is NAME='' (SetEnv NAME) */
    int vhost; /* 0: in every server block; k: in the k-th only (Apache's k-th <VirtualHost>) */
} wd_cv_loc_t;

/* An nginx server block: an Apache <VirtualHost> (or the main server when there is none). */
typedef struct wd_cv_server {
    char *names;  /* server_name's names, space-separated, or NULL */
    char *listen; /* nginx listen, or NULL (80) */
} wd_cv_server_t;

typedef struct wd_cv {
    wd_cv_group_t *groups;
    int ngroups;
    wd_cv_loc_t *locs;
    int nlocs;
    char **notes; /* "FILE:LINE: DIRECTIVE option: not converted: REASON" */
    int nnotes;
    wd_cv_server_t *servers; /* none: one server block on port 80 */
    int nservers;
    char *max_body; /* nginx client_max_body_size, or NULL */
    char *run_dir;  /* absolute: where the groups' sockets and the control socket go */
} wd_cv_t;

/* A group; a name wsgid would refuse (mod_wsgi-express's "localhost:8000") becomes a valid one,
 * with a note, and the group is still found by the source's name. */
wd_cv_group_t *wd_cv_group_add(wd_cv_t *cv, const char *name, const char *file, int line);
wd_cv_group_t *wd_cv_group_find(wd_cv_t *cv, const char *name);
void wd_cv_group_remove(wd_cv_t *cv, int i);
/* Sets (or replaces) a key of the group. */
void wd_cv_key_set(wd_cv_list_t *l, const char *key, const char *value, int quote);
const char *wd_cv_key_get(const wd_cv_list_t *l, const char *key);
void wd_cv_mount_add(wd_cv_group_t *g, const char *prefix, const char *app, const char *app_group,
                     const char *callable);
/* A location of server block vhost (0: of every block), as wd_cv_loc_t's vhost. */
wd_cv_loc_t *wd_cv_loc_add(wd_cv_t *cv, const char *prefix, int match, int vhost);
wd_cv_loc_t *wd_cv_loc_find(wd_cv_t *cv, const char *prefix, int match, int vhost);
__attribute__((format(printf, 4, 5))) void wd_cv_note(wd_cv_t *cv, const char *file, int line,
                                                      const char *fmt, ...);
void wd_cv_free(wd_cv_t *cv);

/* Whether s is valid UTF-8 (wsgid.yaml is UTF-8, and a YAML escape gives a character, not a
 * byte: a path in another encoding cannot be written). */
int wd_cv_utf8(const char *s);

/* The socket path nginx connects to for g (absolute). Caller frees. */
char *wd_cv_socket(const wd_cv_t *cv, const wd_cv_group_t *g);

/* A listen address as wsgid.yaml gives it: "unix:" and an absolute path (a relative one is in
 * the run directory), or HOST:PORT as it is. Caller frees. */
char *wd_cv_listen(const wd_cv_t *cv, const char *listen);

/* Seconds ("30") as a wsgid duration ("30s"); NULL if s is not a whole number >= 0. Caller
 * frees. */
char *wd_cv_seconds(const char *s);

#endif
