/* wsgid: the command line. The same binary is the master (run by the operator) and the workers
 * (run by the master with WSGID_WORKER set, see common/spawn.h). This is the one file that joins
 * the master (master/), the worker (worker/) and the Python runtime (python_glue/, handed to the
 * worker as a table of functions: worker/app.h). */
#include "common/config.h"
#include "master/master.h"
#include "worker/worker.h"
#include "../python_glue/glue.h"
#include "../client/convert/convert.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "Usage: wsgid -c FILE [--check]\n"
               "       wsgid convert [--from apache|uwsgi] FILE [-o DIR] [--run-dir DIR]\n"
               "       wsgid --version | --help\n"
               "\n"
               "Runs Python WSGI applications in named process groups behind a proxy.\n"
               "\n"
               "Options:\n"
               "  -c, --config FILE  the YAML configuration; wsgid runs in the foreground\n"
               "      --check        load and validate the configuration, then exit (0 = valid)\n"
               "  -v, --version      print the version and exit\n"
               "  -h, --help         print this help and exit\n"
               "\n"
               "wsgid convert writes DIR/wsgid.yaml and DIR/nginx.conf from an Apache mod_wsgi\n"
               "or uWSGI configuration (wsgid convert --help).\n"
               "\n"
               "Signals to the master: TERM/INT graceful stop, HUP reload, USR1 reopen the logs.\n"
               "The configuration keys are described in wsgid.yaml(5) and README.md; see also "
               "wsgictl(8).\n");
}

static int check(const char *path)
{
    wd_config_t conf;
    char err[1024];
    int processes = 0;
    size_t i;

    memset(&conf, 0, sizeof conf);
    if (wd_config_load_file(&conf, path, NULL, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (i = 0; i < conf.n_groups; i++)
        processes += conf.groups[i].processes;
    /* The wording is fixed (no plural forms) so that scripts can match it. */
    printf("%s: OK (%zu groups, %d worker processes)\n", path, conf.n_groups, processes);
    wd_config_free(&conf);
    return 0;
}

static int run(const char *path)
{
    wd_config_t conf;
    char err[1024];
    char *text = NULL;
    size_t len = 0;
    int rc;

    memset(&conf, 0, sizeof conf);
    if (wd_config_load_file(&conf, path, &text, &len, err, sizeof err) < 0) {
        fprintf(stderr, "wsgid: %s\n", err);
        return 1;
    }
    rc = wd_master_run(&conf, text, len);
    wd_config_free(&conf);
    free(text);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'C'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    int do_check = 0, c;

    /* A worker's argv is only its display name: nothing to parse. */
    if (getenv("WSGID_WORKER") != NULL)
        return wd_worker_main(argc, argv, &wd_py_app);
    /* A text tool: it never starts the master nor loads Python. */
    if (argc > 1 && strcmp(argv[1], "convert") == 0)
        return wd_convert_main(argc - 1, argv + 1);

    while ((c = getopt_long(argc, argv, "c:vh", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (config != NULL) {
                /* One file holds every group; a second -c was taken over the first unsaid. */
                fprintf(stderr,
                        "wsgid: -c given twice (\"%s\", then \"%s\"): one file holds every "
                        "group; put the groups of both in one file, or run one wsgid a file\n",
                        config, optarg);
                return 2;
            }
            config = optarg;
            break;
        case 'C':
            do_check = 1;
            break;
        case 'v':
            printf("wsgid %s\n", WD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wsgid: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (config == NULL) {
        fprintf(stderr, "wsgid: no configuration file: use -c FILE (see wsgid --help)\n");
        return 2;
    }
    return do_check ? check(config) : run(config);
}
