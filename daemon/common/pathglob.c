/* Path patterns: see pathglob.h.
 *
 * A pattern and a path are walked segment by segment. A segment is matched with fnmatch(3)
 * (flags 0: a segment holds no '/', and noise, hidden names included, is decided here rather
 * than by FNM_PERIOD). `**` tries to match nothing first, then takes one more segment; runs of
 * `**` count as one, so the work stays proportional to the path's depth times the number of
 * separate `**` in the pattern. */
#include "pathglob.h"

#include <fnmatch.h>
#include <string.h>

/* Longer segments than this match nothing (a file name is at most 255 bytes on Linux). */
#define SEG_MAX 1024

static size_t seg_len(const char *s)
{
    return strcspn(s, "/");
}

/* The segment after s's, or the end of the string. */
static const char *seg_next(const char *s)
{
    size_t n = seg_len(s);

    return s[n] == '/' ? s + n + 1 : s + n;
}

static int is_dstar(const char *s)
{
    return s[0] == '*' && s[1] == '*' && (s[2] == '/' || s[2] == '\0');
}

static int has_magic(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '*' || s[i] == '?' || s[i] == '[' || s[i] == '\\')
            return 1;
    return 0;
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);

    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static int noise_n(const char *s, size_t n)
{
    static const char *const suffixes[] = {".pyc", ".pyo",         "~",           ".swp", ".swo",
                                           ".swx", "___jb_tmp___", "___jb_old___"};

    if (n == 0)
        return 0;
    if (s[0] == '.')
        return 1;
    if ((n == 11 && memcmp(s, "__pycache__", 11) == 0) || (n == 4 && memcmp(s, "4913", 4) == 0))
        return 1;
    if (n > 1 && s[0] == '#' && s[n - 1] == '#')
        return 1;
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++)
        if (ends_with(s, n, suffixes[i]))
            return 1;
    return 0;
}

int wd_pathglob_noise(const char *name)
{
    return noise_n(name, strlen(name));
}

/* One pattern segment against one name. Noise is matched only by a segment that looks like
 * noise itself ("*.pyc", ".env", "*~"). */
static int seg_ok(const char *p, const char *s)
{
    char pat[SEG_MAX], name[SEG_MAX];
    size_t pn = seg_len(p), sn = seg_len(s);

    if (pn >= SEG_MAX || sn >= SEG_MAX)
        return 0;
    if (noise_n(s, sn) && !noise_n(p, pn))
        return 0;
    memcpy(pat, p, pn);
    pat[pn] = '\0';
    memcpy(name, s, sn);
    name[sn] = '\0';
    return fnmatch(pat, name, 0) == 0;
}

/* prefix = 0: does the whole path match? prefix = 1: could a path below s (a directory) match,
 * that is, is the pattern left with at least one segment once s's segments are used up?
 *
 * As the classic wildcard match with '*': on a mismatch only the last `**` takes one segment
 * more (whatever an earlier `**` would take, the last one can take as well), so the cost is
 * linear in segments times the pattern's. Trying every `**` over every split, as a recursion
 * did, was exponential in their number: 10 s for 8 of them against a path 41 deep. No `**`
 * takes a noise segment. */
static int match_from(const char *p, const char *s, int prefix)
{
    const char *star_p = NULL, *star_s = NULL; /* after the last `**`; where it stopped */

    for (;;) {
        if (is_dstar(p)) {
            while (is_dstar(p))
                p = seg_next(p);
            if (*s == '\0')
                return prefix || *p == '\0';
            star_p = p;
            star_s = s;
            continue; /* the `**` takes nothing, for a start */
        }
        if (*p == '\0' && *s == '\0' && !prefix)
            return 1;
        if (*s == '\0' && *p != '\0' && prefix)
            return 1;
        if (*p != '\0' && *s != '\0' && seg_ok(p, s)) {
            p = seg_next(p);
            s = seg_next(s);
            continue;
        }
        /* a mismatch: the last `**` takes one segment more, unless it is noise */
        if (star_p == NULL || *star_s == '\0' || noise_n(star_s, seg_len(star_s)))
            return 0;
        star_s = seg_next(star_s);
        p = star_p;
        s = star_s;
        if (*s == '\0')
            return prefix || *p == '\0';
    }
}

static const char *skip_root(const char *s)
{
    while (*s == '/')
        s++;
    return s;
}

int wd_pathglob_match(const char *pattern, const char *path)
{
    return match_from(skip_root(pattern), skip_root(path), 0);
}

int wd_pathglob_may_contain(const char *pattern, const char *dir)
{
    return match_from(skip_root(pattern), skip_root(dir), 1);
}

size_t wd_pathglob_base(const char *pattern)
{
    const char *s = skip_root(pattern), *end = pattern;

    while (*s != '\0') {
        size_t n = seg_len(s);

        if (s[n] == '\0' || has_magic(s, n))
            break; /* the last segment names files, never the base */
        end = s + n;
        s += n + 1;
    }
    if (end > pattern)
        return (size_t)(end - pattern);
    return pattern[0] == '/' ? 1 : 0;
}

int wd_pathglob_is_literal(const char *pattern)
{
    return !has_magic(pattern, strlen(pattern));
}
