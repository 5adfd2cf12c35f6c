/* Apache httpd + mod_wsgi configuration -> the converter's model (model.h): WSGIDaemonProcess
 * groups, WSGIScriptAlias mounts placed by WSGIProcessGroup / WSGIApplicationGroup (on the alias,
 * in <Location>, <Directory> or the server), Alias + <Directory> static files, SetEnv,
 * WSGIPassAuthorization and LimitRequestBody as nginx settings. What it cannot map becomes a
 * note. */
#ifndef WD_CONVERT_FROM_APACHE_H
#define WD_CONVERT_FROM_APACHE_H

#include "aconf.h"
#include "model.h"

void wd_cv_from_apache(wd_cv_t *cv, const wd_aconf_t *conf);

/* One WSGIDaemonProcess option ("threads=15") applied to g; 0, or -1 with a note made. */
int wd_cv_apache_daemon_option(wd_cv_t *cv, wd_cv_group_t *g, const char *opt, const char *file,
                               int line);

/* A user (or group) as Apache and mod_wsgi write it, a name or "#UID", as a name (caller frees);
 * NULL for an id this machine does not know. */
char *wd_cv_apache_id(const char *v, int is_group);

/* The i-th WSGIDaemonProcess option that maps onto a wsgid key with a range (NULL past the
 * last): that key, and the range the converter holds it to (*secs: a time). tests/unit/
 * test_convert.c loads both ends, and one past each, with wsgid's own config loader, so that
 * the two cannot drift apart. */
const char *wd_cv_apache_daemon_range(size_t i, double *min, double *max, int *secs);

#endif
