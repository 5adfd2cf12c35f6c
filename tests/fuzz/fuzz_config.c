/* libFuzzer target: the YAML configuration loader (daemon/common/config.c, through libyaml).
 *
 * The input is the text of a config file. A load either fails with a message or gives a config
 * that keeps the promises of daemon/common/config.h; either way wd_config_free releases everything
 * (LeakSanitizer reports what it does not). */
#include "config.h"
#include "fuzz.h"

#include <string.h>

static void check_abs(const char *p)
{
    if (p != NULL)
        WD_FUZZ_CHECK(p[0] == '/');
}

static void check_group(const wd_config_t *conf, const wd_group_conf_t *g)
{
    size_t i;

    WD_FUZZ_CHECK(g->name != NULL && g->name[0] != '\0');
    WD_FUZZ_CHECK(wd_config_group(conf, g->name) == g); /* names are unique */
    /* A group has an app of its own, or mounts only (requests no mount matches get a 404). */
    WD_FUZZ_CHECK(g->app != NULL || g->n_mounts >= 1);
    WD_FUZZ_CHECK(g->app == NULL || g->callable != NULL);
    if (g->app_is_script)
        check_abs(g->app);
    WD_FUZZ_CHECK(g->processes >= 1 && g->threads >= 1);
    WD_FUZZ_CHECK(g->n_listen >= 1 && g->listen != NULL);
    for (i = 0; i < g->n_listen; i++) {
        const wd_listen_conf_t *l = &g->listen[i];

        WD_FUZZ_CHECK(l->spec != NULL);
        if (l->is_unix) {
            WD_FUZZ_CHECK(l->path != NULL);
            check_abs(l->path);
        } else {
            WD_FUZZ_CHECK(l->host != NULL);
            WD_FUZZ_CHECK(l->port >= 1 && l->port <= 65535);
        }
    }
    for (i = 0; i < g->n_python_path; i++)
        check_abs(g->python_path[i]);
    check_abs(g->python_home);
    check_abs(g->chdir);
    for (i = 0; i < g->n_env; i++)
        WD_FUZZ_CHECK(g->env[i].name != NULL && g->env[i].value != NULL);
    for (i = 0; i < g->n_mounts; i++) {
        const wd_mount_conf_t *m = &g->mounts[i];

        WD_FUZZ_CHECK(m->prefix != NULL && m->prefix[0] == '/');
        WD_FUZZ_CHECK(m->app != NULL && m->callable != NULL);
    }
    WD_FUZZ_CHECK(g->header_buffer_size >= 1024 && g->header_buffer_size <= 1024 * 1024);
    WD_FUZZ_CHECK(g->response_spill_limit >= g->response_buffer_size);
    WD_FUZZ_CHECK(g->request_timeout >= 0 && g->queue_timeout >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wd_config_t conf;
    char err[512];
    char *text = wd_fuzz_dup(data, size);
    size_t i;
    int r;

    memset(err, 'x', sizeof err);
    r = wd_config_load_string(&conf, text, size, "/nonexistent/wsgid-fuzz/wsgid.yaml", err,
                              sizeof err);
    WD_FUZZ_CHECK(r == 0 || r == -1);
    WD_FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
    if (r == 0) {
        WD_FUZZ_CHECK(conf.path != NULL &&
                      strcmp(conf.path, "/nonexistent/wsgid-fuzz/wsgid.yaml") == 0);
        WD_FUZZ_CHECK(conf.dir != NULL && strcmp(conf.dir, "/nonexistent/wsgid-fuzz") == 0);
        WD_FUZZ_CHECK(conf.n_groups >= 1 && conf.groups != NULL);
        WD_FUZZ_CHECK(conf.log_file != NULL && conf.access_log != NULL);
        check_abs(conf.control);
        check_abs(conf.pidfile);
        if (conf.metrics != NULL)
            WD_FUZZ_CHECK(conf.metrics_port >= 1 && conf.metrics_port <= 65535 &&
                          conf.metrics_host != NULL);
        for (i = 0; i < conf.n_groups; i++)
            check_group(&conf, &conf.groups[i]);
    } else {
        WD_FUZZ_CHECK(err[0] != '\0');                           /* every failure says why */
        WD_FUZZ_CHECK(conf.groups == NULL && conf.path == NULL); /* and frees what it had */
    }
    wd_config_free(&conf);
    wd_config_free(&conf); /* freeing twice is harmless: the struct is zeroed */
    free(text);
    return 0;
}
