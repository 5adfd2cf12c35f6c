/* The control socket's wire format: see control_proto.h. */
#include "control_proto.h"

#include <string.h>

char *wd_control_line(char *buf, size_t len, size_t *used)
{
    char *nl = memchr(buf, '\n', len);

    if (nl == NULL)
        return NULL;
    *nl = '\0';
    *used = (size_t)(nl - buf) + 1;
    return buf;
}

json_t *wd_control_parse(const char *line, json_t **error)
{
    json_error_t jerr;
    json_t *obj = json_loads(line, 0, &jerr);

    *error = NULL;
    if (obj != NULL && json_is_object(obj))
        return obj;
    if (obj == NULL) {
        /* jansson may cut its message inside a UTF-8 sequence it quotes, which json_pack then
         * refuses: keep it ASCII. */
        for (char *p = jerr.text; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
    }
    *error = json_pack("{s:b,s:s}", "ok", 0, "error",
                       obj == NULL ? jerr.text : "a request is a JSON object");
    json_decref(obj);
    return NULL;
}

void wd_control_decode(json_t *request, wd_control_command_t *c)
{
    static const struct {
        const char *name;
        wd_control_cmd_t cmd;
    } names[] = {
        {"status", WD_CONTROL_STATUS}, {"restart", WD_CONTROL_RESTART},
        {"reload", WD_CONTROL_RELOAD}, {"stop", WD_CONTROL_STOP},
        {"start", WD_CONTROL_START},   {"reopen-logs", WD_CONTROL_REOPEN_LOGS},
        {"drain", WD_CONTROL_DRAIN},   {"undrain", WD_CONTROL_UNDRAIN},
        {"stacks", WD_CONTROL_STACKS},
    };

    c->name = json_string_value(json_object_get(request, "cmd"));
    c->group = json_string_value(json_object_get(request, "group"));
    c->all = json_is_true(json_object_get(request, "all"));
    c->cmd = c->name == NULL ? WD_CONTROL_NONE : WD_CONTROL_UNKNOWN;
    for (size_t i = 0; c->name != NULL && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(c->name, names[i].name) == 0)
            c->cmd = names[i].cmd;
}
