/* UTF-8 helpers: see utf8.h. */
#include "utf8.h"

#include <string.h>

/* Strict, as jansson is: no overlong form, no surrogate, nothing past U+10FFFF (each was
 * taken, and the string was still refused). */
size_t wd_utf8_len(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range */
    size_t n;

    if (u[0] < 0x80)
        return 1;
    if (u[0] >= 0xc2 && u[0] <= 0xdf)
        n = 2;
    else if (u[0] >= 0xe0 && u[0] <= 0xef)
        n = 3, lo = u[0] == 0xe0 ? 0xa0 : 0x80, hi = u[0] == 0xed ? 0x9f : 0xbf;
    else if (u[0] >= 0xf0 && u[0] <= 0xf4)
        n = 4, lo = u[0] == 0xf0 ? 0x90 : 0x80, hi = u[0] == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (u[1] < lo || u[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if ((u[i] & 0xc0) != 0x80)
            return 0;
    }
    return n;
}

void wd_utf8_copy(char *dst, size_t cap, const char *src)
{
    size_t o = 0;

    while (*src != '\0') {
        size_t k = wd_utf8_len(src);

        if (k == 0) {
            if (o + 1 >= cap)
                break;
            dst[o++] = '?';
            src++;
            continue;
        }
        if (o + k >= cap)
            break;
        memcpy(dst + o, src, k);
        o += k;
        src += k;
    }
    dst[o] = '\0';
}
