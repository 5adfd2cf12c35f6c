/* uWSGI's common options (an emperor vassal or a plain .ini) -> the converter's model: one wsgid
 * group named after the file, its socket, and an nginx location passing "/" to it. */
#ifndef WD_CONVERT_FROM_UWSGI_H
#define WD_CONVERT_FROM_UWSGI_H

#include "model.h"
#include "uwsgi_ini.h"

void wd_cv_from_uwsgi(wd_cv_t *cv, const wd_ini_t *ini, const char *name);

#endif
