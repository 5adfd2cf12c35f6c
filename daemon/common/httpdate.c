/* The Date line of an HTTP answer, formatted once a second by each thread that asks. */
#include "httpdate.h"

#include <string.h>
#include <time.h>

size_t wd_http_date_now(char *out)
{
    static _Thread_local time_t sec = (time_t)-1;
    static _Thread_local char line[WD_DATE_LINE_MAX];
    static _Thread_local size_t len;
    time_t now = time(NULL);

    if (now != sec) {
        len = wd_response_date_line(line, (long long)now);
        sec = now;
    }
    memcpy(out, line, len + 1);
    return len;
}
