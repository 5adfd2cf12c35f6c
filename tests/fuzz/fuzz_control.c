/* libFuzzer target: the control socket's wire format, through the very functions the master uses
 * (daemon/master/control_proto.c): the input is a client's byte stream, cut into lines with
 * wd_control_line as control.c does (only complete lines; a stream over WD_CONTROL_LINE_MAX is
 * refused there before any line is read), each line read with wd_control_parse and named with
 * wd_control_decode. Checked: a line never runs past the bytes or holds its '\n'; a refused line
 * gets an error reply (unless jansson cannot make one, which control.c answers with a fixed
 * text); every reply and every request goes out as one line of JSON that reads back to itself;
 * a named command's strings are the request's. The whole input also goes through json_loadb, as
 * one document. */
#include "control_proto.h"
#include "fuzz.h"

#include <jansson.h>
#include <string.h>

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

static void take_request(const char *line)
{
    json_t *error = NULL, *obj = wd_control_parse(line, &error), *reply;
    wd_control_command_t c;
    static int warned;

    if (obj == NULL) {
        if (error == NULL && !warned) {
            /* control.c then sends "cannot encode the reply" instead. */
            fprintf(stderr, "note: no error reply for a refused line\n");
            warned = 1;
        }
        WD_FUZZ_CHECK(error == NULL || json_is_false(json_object_get(error, "ok")));
        check_one_line(error);
        json_decref(error);
        return;
    }
    WD_FUZZ_CHECK(json_is_object(obj) && error == NULL);
    check_one_line(obj);
    wd_control_decode(obj, &c);
    WD_FUZZ_CHECK((c.cmd == WD_CONTROL_NONE) == (c.name == NULL));
    WD_FUZZ_CHECK(c.name == NULL || c.name == json_string_value(json_object_get(obj, "cmd")));
    WD_FUZZ_CHECK(c.group == NULL || c.group == json_string_value(json_object_get(obj, "group")));
    WD_FUZZ_CHECK(c.all == json_is_true(json_object_get(obj, "all")));
    reply =
        json_pack("{s:b,s:s?,s:s?,s:b}", "ok", 1, "cmd", c.name, "group", c.group, "all", c.all);
    WD_FUZZ_CHECK(reply != NULL); /* strings from jansson are valid UTF-8 */
    check_one_line(reply);
    json_decref(reply);
    json_decref(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = wd_fuzz_dup(data, size), *line;
    size_t len = size, used;
    json_error_t jerr;
    json_t *doc;

    /* One document, with json_loadb (no NUL terminator needed). */
    doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
    check_one_line(doc);
    json_decref(doc);

    if (size <= WD_CONTROL_LINE_MAX) {
        while ((line = wd_control_line(buf, len, &used)) != NULL) {
            WD_FUZZ_CHECK(used >= 1 && used <= len && line == buf);
            WD_FUZZ_CHECK(strlen(line) <= used - 1); /* a NUL in a line ends it early */
            WD_FUZZ_CHECK(memchr(line, '\n', used - 1) == NULL);
            if (line[0] != '\0')
                take_request(line);
            memmove(buf, buf + used, len - used);
            len -= used;
        }
        WD_FUZZ_CHECK(memchr(buf, '\n', len) == NULL);
    }
    free(buf);
    return 0;
}
