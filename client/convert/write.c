/* The writers of wsgid.yaml and nginx.conf (see write.h). Every string goes out double-quoted
 * with YAML's escapes, so that no path or name can change the meaning of the file. */
#include "write.h"
#include "alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void yq(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void yvalue(FILE *f, const wd_cv_kv_t *kv)
{
    if (kv->quote)
        yq(f, kv->value);
    else
        fputs(kv->value, f);
}

static void write_mount(FILE *f, const wd_cv_mount_t *m)
{
    fputs("      ", f);
    yq(f, m->prefix);
    fputs(": {app: ", f);
    yq(f, m->app);
    if (m->app_group != NULL) {
        fputs(", application-group: ", f);
        yq(f, m->app_group);
    }
    if (m->callable != NULL) {
        fputs(", callable: ", f);
        yq(f, m->callable);
    }
    fputs("}\n", f);
}

static void write_lists(FILE *f, const wd_cv_group_t *g)
{
    if (g->npython_path > 0) {
        fputs("    python-path: [", f);
        for (int i = 0; i < g->npython_path; i++) {
            fputs(i ? ", " : "", f);
            yq(f, g->python_path[i]);
        }
        fputs("]\n", f);
    }
    if (g->env.n > 0) {
        fputs("    env:\n", f);
        for (int i = 0; i < g->env.n; i++) {
            fputs("      ", f);
            yq(f, g->env.v[i].key);
            fputs(": ", f);
            yq(f, g->env.v[i].value);
            fputc('\n', f);
        }
    }
}

static void write_group(FILE *f, const wd_cv_t *cv, const wd_cv_group_t *g)
{
    const wd_cv_mount_t *app = NULL;
    int nmounts = 0;

    fputs("  ", f);
    yq(f, g->name);
    fputs(":\n", f);
    for (int i = 0; i < g->nmounts; i++) {
        if (g->mounts[i].prefix[0] == '\0')
            app = &g->mounts[i];
        else
            nmounts++;
    }
    if (app != NULL) {
        fputs("    app: ", f);
        yq(f, app->app);
        fputc('\n', f);
        if (app->callable != NULL) {
            fputs("    callable: ", f);
            yq(f, app->callable);
            fputc('\n', f);
        }
        if (app->app_group != NULL) {
            fputs("    application-group: ", f);
            yq(f, app->app_group);
            fputc('\n', f);
        }
    }
    for (int i = 0; i < g->keys.n; i++) {
        fprintf(f, "    %s: ", g->keys.v[i].key);
        yvalue(f, &g->keys.v[i]);
        fputc('\n', f);
    }
    fputs("    listen: [", f);
    if (g->listen != NULL) {
        char *l = wd_cv_listen(cv, g->listen);

        yq(f, l);
        free(l);
    } else {
        char *sock = wd_cv_socket(cv, g), *l = xmalloc(strlen(sock) + 6);

        sprintf(l, "unix:%s", sock);
        yq(f, l);
        free(l);
        free(sock);
    }
    for (int i = 0; i < g->nmore_listen; i++) {
        char *l = wd_cv_listen(cv, g->more_listen[i]);

        fputs(", ", f);
        yq(f, l);
        free(l);
    }
    fputs("]\n", f);
    write_lists(f, g);
    if (nmounts > 0) {
        fputs("    mounts:\n", f);
        for (int i = 0; i < g->nmounts; i++) {
            if (g->mounts[i].prefix[0] != '\0')
                write_mount(f, &g->mounts[i]);
        }
    }
}

/* The control socket for wsgictl, beside the groups' sockets. */
static void write_control(FILE *f, const wd_cv_t *cv)
{
    char *ctl = xmalloc(strlen(cv->run_dir) + 11);

    sprintf(ctl, "%s/wsgid.ctl", cv->run_dir);
    fputs("control: ", f);
    yq(f, ctl);
    fputc('\n', f);
    free(ctl);
}

void wd_cv_write_yaml(FILE *f, const wd_cv_t *cv, const char *source, const char *from)
{
    fprintf(f, "# Converted by `wsgid convert --from %s` from %s.\n", from, source);
    fputs("# Check it with `wsgid --check -c wsgid.yaml`; nginx.conf beside it routes to the\n"
          "# groups' sockets.\n",
          f);
    if (cv->nnotes > 0) {
        fputs("#\n# Not converted:\n", f);
        for (int i = 0; i < cv->nnotes; i++)
            fprintf(f, "#   %s\n", cv->notes[i]);
    }
    write_control(f, cv);
    fputs("groups:\n", f);
    for (int i = 0; i < cv->ngroups; i++)
        write_group(f, cv, &cv->groups[i]);
}

/* nginx: a double-quoted string ('$' would start a variable: the converter notes such values and
 * leaves them out, from_apache.c). */
static void nq(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void loc_body(FILE *f, const wd_cv_t *cv, const wd_cv_loc_t *l)
{
    const wd_cv_group_t *g = NULL;

    if (l->alias != NULL) {
        fputs("        alias ", f);
        nq(f, l->alias);
        fputs(";\n", f);
        return;
    }
    for (int i = 0; i < cv->ngroups; i++) {
        if (strcmp(cv->groups[i].name, l->group) == 0)
            g = &cv->groups[i];
    }
    if (g != NULL) {
        char *sock = wd_cv_socket(cv, g);

        fprintf(f, "        uwsgi_pass %s%s;\n", sock[0] == '/' ? "unix:" : "", sock);
        free(sock);
    }
    fputs("        include /etc/nginx/uwsgi_params;\n", f);
    for (int i = 0; i < l->params.n; i++) {
        fprintf(f, "        uwsgi_param %s ", l->params.v[i].key);
        nq(f, l->params.v[i].value);
        fputs(l->params.v[i].value[0] == '\0' && !l->params.v[i].quote ? " if_not_empty;\n" : ";\n",
              f);
    }
    if (g != NULL && g->nginx_timeout != NULL)
        fprintf(f, "        uwsgi_read_timeout %s;\n        uwsgi_send_timeout %s;\n",
                g->nginx_timeout, g->nginx_timeout);
}

/* A location's URL path, quoted when nginx would split or misread it ("/my app"). */
static void loc_path(FILE *f, const char *prefix, const char *more)
{
    char *p = xmalloc(strlen(prefix) + strlen(more) + 1);

    sprintf(p, "%s%s", prefix, more);
    if (strpbrk(p, " \t\"'{};#\\$") != NULL)
        nq(f, p);
    else
        fputs(p, f);
    free(p);
}

static void write_loc(FILE *f, const wd_cv_t *cv, const wd_cv_loc_t *l)
{
    size_t n = strlen(l->prefix);
    int seg = l->match == WD_CV_SEGMENT && n > 0 && l->prefix[n - 1] != '/';

    if (l->group != NULL)
        fprintf(f, "\n    # group %s\n", l->group);
    else
        fputs("\n    # static files\n", f);
    fprintf(f, "    location %s", l->match == WD_CV_EXACT || seg ? "= " : "");
    loc_path(f, l->prefix, "");
    fputs(" {\n", f);
    loc_body(f, cv, l);
    fputs("    }\n", f);
    if (seg) {
        fputs("    location ", f);
        loc_path(f, l->prefix, "/");
        fputs(" {\n", f);
        loc_body(f, cv, l);
        fputs("    }\n", f);
    }
}

/* Whether location l goes into server block k (1-based) of n: its own, or every block's unless
 * the block has its own location of that path (a <VirtualHost>'s alias of the server's URL). */
static int in_block(const wd_cv_t *cv, const wd_cv_loc_t *l, int k, int n)
{
    if (n <= 1 || l->vhost == k)
        return 1;
    if (l->vhost != 0)
        return 0;
    for (int i = 0; i < cv->nlocs; i++) {
        const wd_cv_loc_t *o = &cv->locs[i];

        if (o->vhost == k && o->match == l->match && strcmp(o->prefix, l->prefix) == 0)
            return 0;
    }
    return 1;
}

void wd_cv_write_nginx(FILE *f, const wd_cv_t *cv, const char *source, const char *from)
{
    int n = cv->nservers > 0 ? cv->nservers : 1;

    fprintf(f, "# Converted by `wsgid convert --from %s` from %s.\n", from, source);
    fprintf(f, "# %s: include it in the http {} block of nginx.conf.\n",
            n > 1 ? "nginx server blocks, one per virtual host" : "An nginx server block");
    for (int k = 1; k <= n; k++) {
        const wd_cv_server_t *s = cv->nservers > 0 ? &cv->servers[k - 1] : NULL;

        fputs(k > 1 ? "\nserver {\n" : "server {\n", f);
        fprintf(f, "    listen %s;\n", s != NULL && s->listen != NULL ? s->listen : "80");
        if (s != NULL && s->names != NULL)
            fprintf(f, "    server_name %s;\n", s->names);
        fprintf(f, "    client_max_body_size %s;\n", cv->max_body != NULL ? cv->max_body : "1g");
        for (int i = 0; i < cv->nlocs; i++) {
            if (in_block(cv, &cv->locs[i], k, n))
                write_loc(f, cv, &cv->locs[i]);
        }
        fputs("}\n", f);
    }
}

static int write_one(const char *dir, const char *name, const wd_cv_t *cv, const char *source,
                     const char *from, char *err, size_t errlen)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (name[0] == 'w')
        wd_cv_write_yaml(f, cv, source, from);
    else
        wd_cv_write_nginx(f, cv, source, from);
    if (ferror(f) | fclose(f)) {
        snprintf(err, errlen, "%s: write error: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int wd_cv_write(const wd_cv_t *cv, const char *dir, const char *source, const char *from, char *err,
                size_t errlen)
{
    if (write_one(dir, "wsgid.yaml", cv, source, from, err, errlen) < 0)
        return -1;
    return write_one(dir, "nginx.conf", cv, source, from, err, errlen);
}
