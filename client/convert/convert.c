/* The `wsgid convert` command (see convert.h): options, reading, converting, writing. */
#include "convert.h"
#include "aconf.h"
#include "from_apache.h"
#include "from_uwsgi.h"
#include "model.h"
#include "uwsgi_ini.h"
#include "write.h"
#include "alloc.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: wsgid convert [--from apache|uwsgi] FILE [-o DIR] [--run-dir DIR]\n"
            "\n"
            "Writes DIR/wsgid.yaml and DIR/nginx.conf (an nginx server block) that do what\n"
            "the Apache httpd + mod_wsgi configuration FILE (with what it Includes), or the\n"
            "uWSGI .ini FILE, did. What cannot be converted is printed, one line each, as\n"
            "FILE:LINE: DIRECTIVE: not converted: REASON, and listed at the top of wsgid.yaml.\n"
            "\n"
            "Options:\n"
            "      --from apache|uwsgi  the kind of FILE (default: uwsgi for *.ini, else apache)\n"
            "  -o, --output DIR         where to write, made if missing (default: the current\n"
            "                           directory)\n"
            "      --run-dir DIR        where the groups' sockets and the control socket go\n"
            "                           (default: /run/wsgid)\n"
            "  -h, --help               print this help and exit\n"
            "\n"
            "Exit status: 0 written (with or without notes), 1 a file error, 2 a usage error.\n");
}

/* The group name of a uWSGI vassal: its file name without the extension (made a valid wsgid
 * group name, with a note, by wd_cv_group_add). */
static char *vassal_name(const char *path)
{
    const char *base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
    const char *dot = strrchr(base, '.');

    return xstrndup(base, dot != NULL && dot != base ? (size_t)(dot - base) : strlen(base));
}

static int read_input(wd_cv_t *cv, const char *from, const char *file, char *err, size_t errlen)
{
    int rc;

    if (strcmp(from, "apache") == 0) {
        wd_aconf_t conf;

        memset(&conf, 0, sizeof conf);
        rc = wd_aconf_parse_file(&conf, file, err, errlen);
        if (rc == 0)
            wd_cv_from_apache(cv, &conf);
        wd_aconf_free(&conf);
    } else {
        wd_ini_t ini;
        char *name = vassal_name(file);

        memset(&ini, 0, sizeof ini);
        rc = wd_ini_parse_file(&ini, file, "uwsgi", err, errlen);
        if (rc == 0)
            wd_cv_from_uwsgi(cv, &ini, name);
        wd_ini_free(&ini);
        free(name);
    }
    return rc;
}

/* Notes in file and line order ("x.conf:9" before "x.conf:10"). */
static int by_place(const void *a, const void *b)
{
    return strverscmp(*(char *const *)a, *(char *const *)b);
}

/* The run directory as an absolute path (it need not exist yet: systemd makes /run/wsgid). */
static char *absolute(const char *dir)
{
    char cwd[PATH_MAX], *out;

    if (dir[0] == '/' || getcwd(cwd, sizeof cwd) == NULL)
        return xstrdup(dir);
    out = xmalloc(strlen(cwd) + strlen(dir) + 2);
    sprintf(out, "%s/%s", cwd, dir);
    return out;
}

static int convert(const char *from, const char *file, const char *dir, const char *run)
{
    char err[1024], abs[PATH_MAX];
    struct stat st;
    wd_cv_t cv;
    int rc;

    /* A new directory for the output is made, as mkdir would (its parent must exist): the
     * command said only "No such file or directory" (helper-72). */
    errno = 0;
    if (stat(dir, &st) < 0 && errno == ENOENT) {
        if (mkdir(dir, 0755) < 0) {
            fprintf(stderr,
                    "wsgid convert: cannot create the output directory %s: %s (create it, or give "
                    "-o a directory that exists)\n",
                    dir, strerror(errno));
            return 1;
        }
        errno = 0;
    }
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || realpath(dir, abs) == NULL) {
        fprintf(stderr, "wsgid convert: %s: %s\n", dir,
                errno != 0 ? strerror(errno) : "not a directory");
        return 1;
    }
    memset(&cv, 0, sizeof cv);
    cv.run_dir = absolute(run != NULL ? run : abs);
    rc = read_input(&cv, from, file, err, sizeof err);
    if (cv.nnotes > 1)
        qsort(cv.notes, (size_t)cv.nnotes, sizeof *cv.notes, by_place);
    if (rc == 0)
        rc = wd_cv_write(&cv, abs, file, from, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "wsgid convert: %s\n", err);
        wd_cv_free(&cv);
        return 1;
    }
    for (int i = 0; i < cv.nnotes; i++)
        fprintf(stderr, "%s\n", cv.notes[i]);
    printf("wrote %s/wsgid.yaml and %s/nginx.conf (%d groups, %d not converted)\n", abs, abs,
           cv.ngroups, cv.nnotes);
    wd_cv_free(&cv);
    return 0;
}

int wd_convert_main(int argc, char **argv)
{
    static const struct option options[] = {
        {"from", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"run-dir", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *from = NULL, *dir = ".", *run = "/run/wsgid", *file;
    size_t n;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", options, NULL)) != -1) {
        switch (c) {
        case 'f':
            from = optarg;
            break;
        case 'o':
            dir = optarg;
            break;
        case 'r':
            run = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (from != NULL && strcmp(from, "apache") != 0 && strcmp(from, "uwsgi") != 0) {
        fprintf(stderr, "wsgid convert: --from %s: expected apache or uwsgi\n", from);
        return 2;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "wsgid convert: %s\n", optind < argc ? "one FILE only" : "no FILE");
        usage(stderr);
        return 2;
    }
    file = argv[optind];
    n = strlen(file);
    if (from == NULL)
        from = n > 4 && strcmp(file + n - 4, ".ini") == 0 ? "uwsgi" : "apache";
    return convert(from, file, dir, run);
}
