/* The Date line of an HTTP answer (RFC 9110 6.6.1: an origin server sends one), for now. */
#ifndef WD_COMMON_HTTPDATE_H
#define WD_COMMON_HTTPDATE_H

#include <stddef.h>

#include "../../protocol/response.h"

/* "Date: ...\r\n" for the current second into out (WD_DATE_LINE_MAX bytes), NUL-terminated;
 * returns its length. Each thread keeps the line of the last second it asked for: a time() call
 * and a copy, formatted once a second. */
size_t wd_http_date_now(char *out);

#endif
