/* UTF-8 for the strings that go into JSON replies (jansson takes UTF-8 only: a string that is not
 * becomes NULL, and an error appended as NULL was lost) and into wsgid.yaml. */
#ifndef WD_COMMON_UTF8_H
#define WD_COMMON_UTF8_H

#include <stddef.h>

/* The length of the UTF-8 sequence at s (1..4), or 0 where s does not start a valid one. */
size_t wd_utf8_len(const char *s);

/* Copies src into dst (cap bytes, at least 1) as valid UTF-8: a byte that is not replaced with
 * '?', and the copy cut where a character starts, never inside one (snprintf into a fixed
 * buffer cut a worker's error inside a character: the failed restart was then replied as done). */
void wd_utf8_copy(char *dst, size_t cap, const char *src);

#endif
