/* Writes a converted deployment (model.h): DIR/wsgid.yaml, with the notes as comments at its
 * top, and DIR/nginx.conf, one nginx `server` block to include in an `http {}` block. */
#ifndef WD_CONVERT_WRITE_H
#define WD_CONVERT_WRITE_H

#include "model.h"

#include <stdio.h>

/* 0, or -1 with err set to "PATH: what". `source` and `from` go into the header comments. */
int wd_cv_write(const wd_cv_t *cv, const char *dir, const char *source, const char *from, char *err,
                size_t errlen);

/* The YAML and the nginx server block to a stream (used by wd_cv_write and the tests). */
void wd_cv_write_yaml(FILE *f, const wd_cv_t *cv, const char *source, const char *from);
void wd_cv_write_nginx(FILE *f, const wd_cv_t *cv, const char *source, const char *from);

#endif
