/* libFuzzer target: the control-socket request decoder.
 *
 * daemon/master/control.c has no decoding function of its own to call (it splits lines in take_lines
 * and decodes each with json_loads in take_request, inside its libuv callbacks; what a command
 * means is decided by the master). So this target does the same steps on the input as a
 * client's byte stream: split at '\n', skip empty lines, json_loads each line (a NUL in a line
 * ends it, as in control.c), refuse what is not an object with the same json_pack reply, then
 * decodes the command the way control.h documents it ({"cmd", "group", "all"}), and checks
 * that every reply and every re-encoded request is one line that decodes back to itself. The
 * whole input also goes through json_loadb, as one document. */
#include "fuzz.h"

#include <jansson.h>
#include <string.h>

#define LINE_MAX_BYTES 65536 /* WD_CONTROL_LINE_MAX in control.c */

typedef struct command {
    const char *cmd;
    const char *group; /* NULL: none / all */
    int all;
} command_t;

/* Returns 0 and fills c, or -1 with a message (what the master would answer). */
static int decode(json_t *req, command_t *c, const char **why)
{
    static const char *const known[] = {"status", "restart", "reload",
                                        "stop",   "start",   "reopen-logs"};
    json_t *cmd = json_object_get(req, "cmd");
    json_t *group = json_object_get(req, "group");
    json_t *all = json_object_get(req, "all");
    size_t i;

    memset(c, 0, sizeof *c);
    if (!json_is_string(cmd)) {
        *why = "cmd must be a string";
        return -1;
    }
    c->cmd = json_string_value(cmd);
    for (i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(c->cmd, known[i]) == 0)
            break;
    if (i == sizeof known / sizeof known[0]) {
        *why = "unknown command";
        return -1;
    }
    if (group != NULL && !json_is_null(group) && !json_is_string(group)) {
        *why = "group must be a string or null";
        return -1;
    }
    c->group = json_is_string(group) ? json_string_value(group) : NULL;
    if (all != NULL && !json_is_boolean(all)) {
        *why = "all must be a boolean";
        return -1;
    }
    c->all = json_is_true(all);
    if (strcmp(c->cmd, "start") == 0 && c->group == NULL) {
        *why = "start needs a group";
        return -1;
    }
    if (strcmp(c->cmd, "restart") == 0 && c->group == NULL && !c->all) {
        *why = "restart needs a group or all";
        return -1;
    }
    return 0;
}

/* A reply goes out as one line: compact JSON that decodes back to the same value. */
static void check_one_line(json_t *obj)
{
    char *text;
    json_t *back;
    json_error_t jerr;

    if (obj == NULL)
        return;
    text = json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        return;
    WD_FUZZ_CHECK(strchr(text, '\n') == NULL);
    back = json_loads(text, JSON_DECODE_ANY, &jerr);
    WD_FUZZ_CHECK(back != NULL && json_equal(back, obj));
    json_decref(back);
    free(text);
}

static void take_request(char *line)
{
    json_error_t jerr;
    json_t *obj = json_loads(line, 0, &jerr), *reply;
    command_t c;
    const char *why = NULL;
    static int warned;

    if (obj == NULL || !json_is_object(obj)) {
        WD_FUZZ_CHECK(obj != NULL || memchr(jerr.text, '\0', sizeof jerr.text) != NULL);
        reply = json_pack("{s:b,s:s}", "ok", 0, "error",
                          obj == NULL ? jerr.text : "a request is a JSON object");
        if (reply == NULL && !warned) {
            /* control.c then sends "cannot encode the reply" instead of the parse error. */
            fprintf(stderr, "note: json_pack refused the parse error text \"%s\"\n", jerr.text);
            warned = 1;
        }
        check_one_line(reply);
        json_decref(reply);
        json_decref(obj);
        return;
    }
    check_one_line(obj);
    if (decode(obj, &c, &why) < 0) {
        WD_FUZZ_CHECK(why != NULL);
        reply = json_pack("{s:b,s:s}", "ok", 0, "error", why);
    } else {
        WD_FUZZ_CHECK(c.cmd != NULL);
        reply =
            json_pack("{s:b,s:s,s:s?,s:b}", "ok", 1, "cmd", c.cmd, "group", c.group, "all", c.all);
        WD_FUZZ_CHECK(reply != NULL); /* strings from jansson are valid UTF-8 */
    }
    check_one_line(reply);
    json_decref(reply);
    json_decref(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = wd_fuzz_dup(data, size);
    size_t len = size, n;
    char *nl;
    json_error_t jerr;
    json_t *doc;

    /* One document, with json_loadb (no NUL terminator needed). */
    doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
    check_one_line(doc);
    json_decref(doc);

    /* As control.c's take_lines: only complete lines; a line over the buffer is refused. */
    if (size <= LINE_MAX_BYTES) {
        while ((nl = memchr(buf, '\n', len)) != NULL) {
            n = (size_t)(nl - buf);
            *nl = '\0';
            if (n > 0)
                take_request(buf);
            memmove(buf, nl + 1, len - n - 1);
            len -= n + 1;
        }
    }
    free(buf);
    return 0;
}
