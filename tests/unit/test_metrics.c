/* The metrics listener's request side (daemon/master/metrics.c): where a head ends, whole and
 * byte by byte, and what each request line asks for. */
#include "metrics.h"
#include "testutil.h"

#include <string.h>

#define S(lit) lit, sizeof(lit) - 1

typedef struct mcase {
    const char *name;
    const char *in;
    size_t len;
    size_t head_end; /* bytes up to the end of the head; 0: never complete */
    wd_metrics_route_t route;
    int head_only;
    const char *group; /* /readyz/GROUP */
} mcase_t;

static const mcase_t cases[] = {
    {"GET /metrics", S("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), 34, WD_METRICS_PROMETHEUS, 0,
     NULL},
    {"GET /metrics with a query", S("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), 29, WD_METRICS_PROMETHEUS,
     0, NULL},
    {"HEAD /status", S("HEAD /status HTTP/1.1\r\n\r\n"), 25, WD_METRICS_STATUS, 1, NULL},
    {"bare LF head", S("GET /status HTTP/1.1\nHost: x\n\n"), 30, WD_METRICS_STATUS, 0, NULL},
    {"unknown path", S("GET /nope HTTP/1.1\r\n\r\n"), 22, WD_METRICS_NOT_FOUND, 0, NULL},
    {"path that starts like /metrics", S("GET /metricsx HTTP/1.1\r\n\r\n"), 26,
     WD_METRICS_NOT_FOUND, 0, NULL},
    {"POST", S("POST /metrics HTTP/1.1\r\n\r\n"), 26, WD_METRICS_METHOD, 0, NULL},
    {"lower-case method", S("get /metrics HTTP/1.1\r\n\r\n"), 25, WD_METRICS_BAD, 0, NULL},
    {"no version", S("GET /metrics\r\n\r\n"), 16, WD_METRICS_BAD, 0, NULL},
    {"HTTP/2.0", S("GET /metrics HTTP/2.0\r\n\r\n"), 25, WD_METRICS_BAD, 0, NULL},
    {"version with more", S("GET /metrics HTTP/1.10\r\n\r\n"), 26, WD_METRICS_BAD, 0, NULL},
    {"target without a slash", S("GET metrics HTTP/1.1\r\n\r\n"), 24, WD_METRICS_BAD, 0, NULL},
    {"two spaces", S("GET  /metrics HTTP/1.1\r\n\r\n"), 26, WD_METRICS_BAD, 0, NULL},
    {"incomplete head", S("GET /metrics HTTP/1.1\r\nHost: x\r\n"), 0, WD_METRICS_PROMETHEUS, 0,
     NULL},
    {"empty", S(""), 0, WD_METRICS_BAD, 0, NULL},
    {"GET /livez", S("GET /livez HTTP/1.1\r\n\r\n"), 23, WD_METRICS_LIVEZ, 0, NULL},
    {"HEAD /readyz", S("HEAD /readyz HTTP/1.1\r\n\r\n"), 25, WD_METRICS_READYZ, 1, NULL},
    {"GET /readyz/site1", S("GET /readyz/site1 HTTP/1.1\r\n\r\n"), 30, WD_METRICS_READYZ, 0,
     "site1"},
    {"/readyz/GROUP with a query", S("GET /readyz/a.b-c?x HTTP/1.1\r\n\r\n"), 32, WD_METRICS_READYZ,
     0, "a.b-c"},
    {"/readyz/ with no group", S("GET /readyz/ HTTP/1.1\r\n\r\n"), 25, WD_METRICS_NOT_FOUND, 0,
     NULL},
    {"/readyz/a/b", S("GET /readyz/a/b HTTP/1.1\r\n\r\n"), 28, WD_METRICS_NOT_FOUND, 0, NULL},
    {"/livezz", S("GET /livezz HTTP/1.1\r\n\r\n"), 24, WD_METRICS_NOT_FOUND, 0, NULL},
    {"POST /readyz", S("POST /readyz HTTP/1.1\r\n\r\n"), 25, WD_METRICS_METHOD, 0, NULL},
    {NULL, NULL, 0, 0, 0, 0, NULL},
};

static void run_case(const mcase_t *tc)
{
    int head_only = -1;
    size_t first = 0, glen = 0;
    const char *group = NULL;

    /* Byte by byte: the head is complete exactly at its blank line. */
    for (size_t i = 1; i <= tc->len && first == 0; i++)
        if (wd_metrics_head_complete(tc->in, i))
            first = i;
    T_CHECK(first == tc->head_end, "%s: head complete at %zu, want %zu", tc->name, first,
            tc->head_end);
    T_CHECK(wd_metrics_head_complete(tc->in, tc->len) == (tc->head_end != 0), "%s: whole",
            tc->name);
    if (tc->len == 0)
        return;
    T_CHECK(wd_metrics_route(tc->in, tc->len, &head_only, &group, &glen) == tc->route, "%s: route",
            tc->name);
    if (tc->route != WD_METRICS_BAD)
        T_CHECK(head_only == tc->head_only, "%s: head_only %d", tc->name, head_only);
    if (tc->group != NULL)
        T_CHECK(group != NULL && glen == strlen(tc->group) && memcmp(group, tc->group, glen) == 0,
                "%s: group %.*s", tc->name, (int)glen, group ? group : "");
    else
        T_CHECK(group == NULL && glen == 0, "%s: no group", tc->name);
}

int main(void)
{
    for (const mcase_t *tc = cases; tc->name != NULL; tc++)
        run_case(tc);
    return t_summary("metrics");
}
