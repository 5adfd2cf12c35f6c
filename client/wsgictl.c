/* wsgictl: talks to a running wsgid master over its control socket (design §5).
 *
 * A skeleton for now: it parses the command line and knows the verbs, but the control socket
 * is not implemented yet, so every command exits with status 2. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char *const verbs[] = {"status", "restart", "reload", "stop", "start", "reopen-logs"};

static void usage(FILE *f)
{
    fprintf(f, "Usage: wsgictl [-c FILE | -s SOCKET] COMMAND [ARGS]\n"
               "       wsgictl --version | --help\n"
               "\n"
               "Options:\n"
               "  -c, --config FILE    find the control socket from wsgid's configuration file\n"
               "  -s, --socket SOCKET  the master's control socket\n"
               "  -v, --version        print the version and exit\n"
               "  -h, --help           print this help and exit\n"
               "\n"
               "Commands:\n"
               "  status [GROUP] [--json]  the groups, their workers, restarts and last errors\n"
               "  restart GROUP|--all      rolling restart; waits, fails if the app cannot load\n"
               "  reload                   re-read the configuration: add, remove, restart groups\n"
               "  stop [GROUP]             stop a group (or wsgid itself)\n"
               "  start GROUP              start a stopped group\n"
               "  reopen-logs              reopen the log files (after logrotate)\n");
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"socket", required_argument, NULL, 's'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *sock = NULL;
    size_t i;
    int c;

    /* '+': stop at the verb, so that its own options (--json, --all) are left to it. */
    while ((c = getopt_long(argc, argv, "+c:s:vh", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 's':
            sock = optarg;
            break;
        case 'v':
            printf("wsgictl %s\n", WD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (config != NULL && sock != NULL) {
        fprintf(stderr, "wsgictl: -c and -s are exclusive\n");
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "wsgictl: no command given\n");
        usage(stderr);
        return 2;
    }
    for (i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(argv[optind], verbs[i]) == 0)
            break;
    if (i == sizeof verbs / sizeof verbs[0]) {
        fprintf(stderr, "wsgictl: unknown command \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    fprintf(stderr, "wsgictl: the control socket is not implemented yet\n");
    return 2;
}
