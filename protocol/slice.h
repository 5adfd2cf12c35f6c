/* Shared result codes and slice types of the protocol parsers.
 *
 * Parsers in protocol/ depend on libc only: they never allocate, take the caller's buffer and
 * give back slices into it, in the manner of picohttpparser. */
#ifndef WD_PROTOCOL_SLICE_H
#define WD_PROTOCOL_SLICE_H

#include <stddef.h>
#include <stdint.h>

/* A parser returns the number of bytes consumed (> 0), or one of these. */
#define WD_PARSE_AGAIN (-1) /* the input is a valid prefix: call again with more bytes */
#define WD_PARSE_ERROR (-2) /* the input can never become valid; see the parser's error code */

typedef struct wd_slice {
    const char *p;
    size_t n;
} wd_slice_t;

/* An offset + length into a buffer that may move (grow) between parser calls. */
typedef struct wd_span {
    uint32_t off;
    uint32_t len;
} wd_span_t;

/* A CONTENT_LENGTH-style decimal: digits only, below 2^63 (empty is 0). 0, or -1 when p[0, n)
 * is anything else. */
static inline int wd_slice_u63(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v > (UINT64_C(0x7fffffffffffffff) - (uint64_t)(p[i] - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return 0;
}

/* Writes v in decimal (at most 20 digits, no NUL) and returns how many: what snprintf("%llu")
 * writes, without its cost on every request (request ids, ports, Content-Length). */
static inline size_t wd_fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* The same in lowercase hexadecimal (chunk sizes), at most 16 digits. */
static inline size_t wd_fmt_x64(char *out, uint64_t v)
{
    char tmp[16];
    size_t n = 0;

    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

#endif
