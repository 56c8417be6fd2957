/* utf8.c - see utf8.h. */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

long utf8_invalid_at(const void *s, size_t len) {
    const unsigned char *p = s;
    size_t i = 0;
    while (i < len) {
        /* ASCII fast path: eight bytes at a time. */
        if (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;                          /* continuation bytes */
        unsigned lo = 0x80, hi = 0xBF;     /* range of the first continuation byte */
        if (c >= 0xC2 && c <= 0xDF) n = 1;
        else if (c == 0xE0) n = 2, lo = 0xA0;            /* no overlongs */
        else if (c >= 0xE1 && c <= 0xEC) n = 2;
        else if (c == 0xED) n = 2, hi = 0x9F;            /* no surrogates */
        else if (c >= 0xEE && c <= 0xEF) n = 2;
        else if (c == 0xF0) n = 3, lo = 0x90;            /* no overlongs */
        else if (c >= 0xF1 && c <= 0xF3) n = 3;
        else if (c == 0xF4) n = 3, hi = 0x8F;            /* <= U+10FFFF */
        else return (long)i;                             /* 80..C1, F5..FF */
        if (len - i - 1 < n) return (long)i;             /* truncated */
        if (p[i + 1] < lo || p[i + 1] > hi) return (long)i;
        for (size_t k = 2; k <= n; k++)
            if ((p[i + k] & 0xC0) != 0x80) return (long)i;
        i += n + 1;
    }
    return -1;
}
