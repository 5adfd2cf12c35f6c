/* UTF-8 helpers: see utf8.h. */
#include "utf8.h"

#include <string.h>

size_t wd_utf8_len(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = u[0] < 0x80                  ? 1
               : u[0] >= 0xc2 && u[0] <= 0xdf ? 2
               : (u[0] & 0xf0) == 0xe0        ? 3
               : u[0] >= 0xf0 && u[0] <= 0xf4 ? 4
                                              : 0;

    for (size_t i = 1; i < n; i++) {
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
