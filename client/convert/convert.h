/* `wsgid convert [--from apache|uwsgi] FILE [-o DIR]`: an Apache httpd + mod_wsgi configuration
 * (a file and what it includes) or a uWSGI .ini, written as DIR/wsgid.yaml and DIR/nginx.conf,
 * with what could not be converted printed as FILE:LINE: ... lines. Exit status 0 when written
 * (with or without such lines), 1 when a file could not be read or written, 2 on a usage error. */
#ifndef WD_CONVERT_CONVERT_H
#define WD_CONVERT_CONVERT_H

int wd_convert_main(int argc, char **argv);

#endif
