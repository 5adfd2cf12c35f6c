/* wsgictl's connection to the master: see ctl.h. */
#include "ctl.h"
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- talking to the master ---------------------------------------------------------------- */

static int connect_to(const char *path)
{
    struct sockaddr_un sun;
    int fd;

    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Sends the request, waits for the one-line reply (a rolling restart may take a while).
 * Returns the reply, or NULL with a message printed. */
json_t *wd_ctl_call(const char *path, json_t *request)
{
    char *text = json_dumps(request, JSON_COMPACT), *buf = NULL;
    size_t len = 0, cap = 0, off = 0, tlen;
    json_error_t jerr;
    json_t *reply = NULL;
    ssize_t n;
    int fd;

    fd = connect_to(path);
    if (fd < 0) {
        fprintf(stderr, "wsgictl: cannot reach wsgid (is wsgid running?) control socket %s: %s\n",
                path, strerror(errno));
        free(text);
        return NULL;
    }
    tlen = strlen(text);
    text[tlen++] = '\n'; /* json_dumps leaves room: we overwrite its NUL and send tlen bytes */
    while (off < tlen) {
        n = write(fd, text + off, tlen - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
            break; /* wsgid answered and closed before reading us (a refusal): read it */
        if (n < 0)
            goto lost;
        off += (size_t)n;
    }
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            if (buf == NULL)
                abort();
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && len == 0)
            goto lost;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (memchr(buf + len - (size_t)n, '\n', (size_t)n) != NULL)
            break;
    }
    if (len == 0)
        goto lost;
    buf[len] = '\0';
    reply = json_loads(buf, JSON_DISABLE_EOF_CHECK, &jerr);
    if (reply == NULL || !json_is_object(reply)) {
        fprintf(stderr, "wsgictl: cannot understand the reply of wsgid: %s\n", jerr.text);
        json_decref(reply);
        reply = NULL;
    }
    close(fd);
    free(text);
    free(buf);
    return reply;

lost:
    fprintf(stderr, "wsgictl: the connection to wsgid (%s) was lost: %s\n", path,
            errno ? strerror(errno) : "no reply");
    close(fd);
    free(text);
    free(buf);
    return NULL;
}

/* The control socket: -s, $WSGID_CONTROL, or `control:` of -c FILE (default ./wsgid.yaml). */
char *wd_ctl_find_socket(const char *sock, const char *config)
{
    wd_config_t conf;
    char err[1024], *path;

    if (sock != NULL)
        return strdup(sock);
    if (config == NULL && getenv("WSGID_CONTROL") != NULL)
        return strdup(getenv("WSGID_CONTROL"));
    if (config == NULL) {
        if (access("wsgid.yaml", R_OK) != 0) {
            fprintf(stderr, "wsgictl: where is wsgid? use -s SOCKET, -c CONFIG or set "
                            "$WSGID_CONTROL (no ./wsgid.yaml)\n");
            return NULL;
        }
        config = "wsgid.yaml";
    }
    memset(&conf, 0, sizeof conf);
    if (wd_config_load_file_flags(&conf, config, WD_CONFIG_NO_FILE_CHECKS, NULL, NULL, err,
                                  sizeof err) < 0) {
        fprintf(stderr, "wsgictl: %s\n", err);
        return NULL;
    }
    if (conf.control == NULL) {
        fprintf(stderr, "wsgictl: %s has no `control:` socket\n", config);
        wd_config_free(&conf);
        return NULL;
    }
    path = strdup(conf.control);
    wd_config_free(&conf);
    return path;
}
