/* An Apache httpd configuration read into a tree, for `wsgid convert`: directives with their
 * arguments (quotes and backslash escapes undone, lines joined at a trailing backslash),
 * `<Section args>` ... `</Section>` nesting, and `Include` / `IncludeOptional` expanded in place
 * (globs, relative to ServerRoot once one is given, else to the including file's directory).
 * Each node keeps the file and line it came from, for the converter's messages. */
#ifndef WD_CONVERT_ACONF_H
#define WD_CONVERT_ACONF_H

#include <stddef.h>

typedef struct wd_aconf_node wd_aconf_node_t;

struct wd_aconf_node {
    char *name; /* as written: "WSGIDaemonProcess", "VirtualHost" */
    char **args;
    int nargs;
    const char *file; /* owned by the wd_aconf_t */
    int line;
    int section; /* 1 for <Name ...>: its directives are kids */
    wd_aconf_node_t **kids;
    int nkids;
    wd_aconf_node_t *parent;
};

typedef struct wd_aconf {
    wd_aconf_node_t root;
    char **files;
    int nfiles;
    char *server_root; /* the last ServerRoot read, for Include */
    int depth;         /* of Include, bounded against loops */
} wd_aconf_t;

/* 0, or -1 with err set to "FILE:LINE: what". */
int wd_aconf_parse_file(wd_aconf_t *c, const char *path, char *err, size_t errlen);
int wd_aconf_parse_string(wd_aconf_t *c, const char *name, const char *text, char *err,
                          size_t errlen);
void wd_aconf_free(wd_aconf_t *c);

/* Splits one directive's arguments: whitespace-separated, "double" or 'single' quoted with
 * backslash escapes. Returns the count (args allocated, free each and the array), or -1 for an
 * unterminated quote. */
int wd_aconf_split(const char *s, char ***args);

/* The node's argument i, or NULL. */
const char *wd_aconf_arg(const wd_aconf_node_t *n, int i);

#endif
