/* A uWSGI .ini file read for `wsgid convert --from uwsgi`: the `key = value` lines of one
 * section (`[uwsgi]`), in order, repeated keys kept, with uWSGI's magic variables expanded (%d the
 * file's directory with a trailing '/', %n its name without the extension, %s with it, %e the
 * extension, %p its absolute path, %c the directory's name, %x the section, %% a '%') and
 * %(key) replaced by the first value given to key in the file (as uWSGI, once the file is read),
 * a bare KEY read as KEY = true, and $(NAME) by the environment variable
 * NAME, as uWSGI reads it when it starts: here, from wsgid convert's environment, each with a note
 * to check it (nothing, noted, for a variable not set). */
#ifndef WD_CONVERT_UWSGI_INI_H
#define WD_CONVERT_UWSGI_INI_H

#include <stddef.h>

typedef struct wd_ini_entry {
    char *key;
    char *value;
    int line;
} wd_ini_entry_t;

typedef struct wd_ini {
    char *file;
    wd_ini_entry_t *e;
    int n;
    wd_ini_entry_t *notes; /* key: the variable; value: its value here, or NULL */
    int nnotes;
} wd_ini_t;

/* 0, or -1 with err set to "FILE:LINE: what". */
int wd_ini_parse_file(wd_ini_t *ini, const char *path, const char *section, char *err,
                      size_t errlen);
int wd_ini_parse_string(wd_ini_t *ini, const char *path, const char *text, const char *section,
                        char *err, size_t errlen);
void wd_ini_free(wd_ini_t *ini);

#endif
