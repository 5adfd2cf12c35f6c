/* Path patterns for `watch:` (reload-on-change): absolute paths whose segments may hold `*`, `?`
 * and `[...]` (fnmatch(3) within one segment, never across a '/'), and `**`, a whole segment
 * that stands for any number of directories (zero included).
 *
 * Noise: names that change on their own while an app runs or is edited (byte code, editors'
 * swap, backup and lock files, hidden files and directories, see wd_pathglob_noise) are matched
 * only by a pattern segment that names them itself: "*.pyc" matches "x.pyc", ".env" matches
 * ".env", but "*" and "**" never match "x.pyc", "__pycache__" or ".git". Without this, the byte
 * code a new worker writes at its start would restart it again, for ever.
 *
 * Pure functions over strings: no allocation, no file system. */
#ifndef WD_COMMON_PATHGLOB_H
#define WD_COMMON_PATHGLOB_H

#include <stddef.h>

/* 1 if the absolute path matches the absolute pattern, else 0. */
int wd_pathglob_match(const char *pattern, const char *path);

/* 1 if a path below the directory dir (at any depth) could match the pattern: whether a
 * directory tree walk must go into dir. */
int wd_pathglob_may_contain(const char *pattern, const char *dir);

/* The length of the pattern's directory part that has no wildcard, where watching starts: 8
 * ("/srv/app") for "/srv/app/app.py" and for "/srv/app" followed by the segments `**` and
 * `*.py`; 1 ("/") for "/app.py". */
size_t wd_pathglob_base(const char *pattern);

/* 1 if no segment of the pattern holds a wildcard (or a '\\' escape): a plain path. */
int wd_pathglob_is_literal(const char *pattern);

/* 1 for a file or directory name that is noise (see above): hidden (".git", ".app.py.swp",
 * ".#app.py"), "__pycache__", "*.pyc", "*.pyo", backups ("app.py~"), Emacs' "#app.py#", Vim's
 * "4913" and "*.swp", "*.swo", "*.swx", JetBrains' "*___jb_tmp___" and "*___jb_old___". */
int wd_pathglob_noise(const char *name);

#endif
