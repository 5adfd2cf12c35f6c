/* trusted-proxies ranges: what wd_cidr_parse takes and refuses, and which peers each range
 * matches (IPv4, IPv6, IPv4-mapped IPv6, UNIX sockets). */
#include "cidr.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/un.h>

typedef struct parse_case {
    const char *in;
    int family; /* 0: refused */
    unsigned prefix;
    const char *network; /* the address after masking, as inet_ntop writes it */
} parse_case_t;

static const parse_case_t parse_cases[] = {
    {"10.0.0.0/8", AF_INET, 8, "10.0.0.0"},
    {"10.1.2.3/8", AF_INET, 8, "10.0.0.0"},
    {"172.16.0.0/12", AF_INET, 12, "172.16.0.0"},
    {"172.31.255.255/12", AF_INET, 12, "172.16.0.0"},
    {"192.168.1.5", AF_INET, 32, "192.168.1.5"},
    {"192.168.1.5/32", AF_INET, 32, "192.168.1.5"},
    {"127.0.0.1/31", AF_INET, 31, "127.0.0.0"},
    {"0.0.0.0/0", AF_INET, 0, "0.0.0.0"},
    {"255.255.255.255/0", AF_INET, 0, "0.0.0.0"},
    {"::1", AF_INET6, 128, "::1"},
    {"::1/128", AF_INET6, 128, "::1"},
    {"fd00::/8", AF_INET6, 8, "fd00::"},
    {"fd12:3456::1/8", AF_INET6, 8, "fd00::"},
    {"2001:db8::/33", AF_INET6, 33, "2001:db8::"},
    {"2001:db8:ffff::/33", AF_INET6, 33, "2001:db8:8000::"},
    {"::/0", AF_INET6, 0, "::"},
    {"FE80::1/10", AF_INET6, 10, "fe80::"},
    {"unix", AF_UNIX, 0, NULL},
    /* IPv4-mapped ranges are the IPv4 ranges they map. */
    {"::ffff:10.0.0.0/104", AF_INET, 8, "10.0.0.0"},
    {"::ffff:192.0.2.1", AF_INET, 32, "192.0.2.1"},
    {"::ffff:0:0/96", AF_INET, 0, "0.0.0.0"},
    {"::ffff:0:0/95", AF_INET6, 95, "::fffe:0:0"},

    {"10.0.0.0/33", 0, 0, NULL},
    {"1.2.3", 0, 0, NULL},
    {"1.2.3.4.5", 0, 0, NULL},
    {"256.0.0.0", 0, 0, NULL},
    {"01.2.3.4", 0, 0, NULL},
    {"::1/129", 0, 0, NULL},
    {"::1/1000", 0, 0, NULL},
    {"", 0, 0, NULL},
    {"/8", 0, 0, NULL},
    {"10.0.0.0/", 0, 0, NULL},
    {"10.0.0.0/-1", 0, 0, NULL},
    {"10.0.0.0/+8", 0, 0, NULL},
    {"10.0.0.0/ 8", 0, 0, NULL},
    {"10.0.0.0/8 ", 0, 0, NULL},
    {" 10.0.0.0/8", 0, 0, NULL},
    {"10.0.0.0/8/8", 0, 0, NULL},
    {"10.0.0.0/0x8", 0, 0, NULL},
    {"1.2.3.4:80", 0, 0, NULL},
    {"[::1]", 0, 0, NULL},
    {"fe80::1%lo", 0, 0, NULL},
    {"1::2::3", 0, 0, NULL},
    {"unix/0", 0, 0, NULL},
    {"UNIX", 0, 0, NULL},
    {"localhost", 0, 0, NULL},
    {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128", AF_INET6, 128,
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255x", 0, 0, NULL},
};

static void test_parse(void)
{
    char text[INET6_ADDRSTRLEN];
    wd_cidr_t c;
    size_t i;
    int r;

    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const parse_case_t *pc = &parse_cases[i];
        r = wd_cidr_parse(pc->in, &c);
        if (pc->family == 0) {
            T_CHECK(r == -EINVAL, "parse '%s': %d, want -EINVAL", pc->in, r);
            continue;
        }
        T_CHECK(r == 0, "parse '%s': %d", pc->in, r);
        if (r != 0)
            continue;
        T_CHECK(c.family == pc->family && c.prefix == pc->prefix,
                "parse '%s': family %d prefix %u, want %d %u", pc->in, c.family, c.prefix,
                pc->family, pc->prefix);
        if (pc->network) {
            inet_ntop(c.family, c.addr, text, sizeof(text));
            T_CHECK(strcmp(text, pc->network) == 0, "parse '%s': network %s, want %s", pc->in, text,
                    pc->network);
        }
    }
}

/* A peer: dotted or IPv6 text, or "unix". */
static const struct sockaddr *peer(const char *s, struct sockaddr_storage *ss)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    struct sockaddr_un *sun = (struct sockaddr_un *)ss;

    memset(ss, 0, sizeof(*ss));
    if (strcmp(s, "unix") == 0) {
        sun->sun_family = AF_UNIX;
        strcpy(sun->sun_path, "/run/nginx.sock");
    } else if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(40000);
    } else if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(40000);
    } else {
        printf("bad test peer %s\n", s);
        exit(2);
    }
    return (const struct sockaddr *)ss;
}

typedef struct match_case {
    const char *cidr;
    const char *peer;
    int want;
} match_case_t;

static const match_case_t match_cases[] = {
    {"10.0.0.0/8", "10.1.2.3", 1},
    {"10.0.0.0/8", "10.255.255.255", 1},
    {"10.0.0.0/8", "11.0.0.0", 0},
    {"10.0.0.0/8", "9.255.255.255", 0},
    {"10.0.0.0/8", "::ffff:10.9.9.9", 1},
    {"10.0.0.0/8", "::ffff:11.0.0.1", 0},
    {"10.0.0.0/8", "::a09:909", 0}, /* IPv4-compatible (deprecated), not mapped */
    {"10.0.0.0/8", "::1", 0},
    {"10.0.0.0/8", "unix", 0},
    {"172.16.0.0/12", "172.31.255.255", 1},
    {"172.16.0.0/12", "172.32.0.0", 0},
    {"172.16.0.0/12", "172.15.255.255", 0},
    {"192.168.1.5", "192.168.1.5", 1},
    {"192.168.1.5", "192.168.1.4", 0},
    {"192.168.1.5", "192.168.1.6", 0},
    {"192.168.1.5", "::ffff:192.168.1.5", 1},
    {"192.168.1.5/32", "::ffff:192.168.1.4", 0},
    {"127.0.0.0/31", "127.0.0.1", 1},
    {"127.0.0.0/31", "127.0.0.2", 0},
    {"0.0.0.0/0", "1.2.3.4", 1},
    {"0.0.0.0/0", "255.255.255.255", 1},
    {"0.0.0.0/0", "::ffff:1.2.3.4", 1},
    {"0.0.0.0/0", "::1", 0},
    {"0.0.0.0/0", "2001:db8::1", 0},
    {"0.0.0.0/0", "unix", 0},
    {"::1", "::1", 1},
    {"::1", "::2", 0},
    {"::1", "::", 0},
    {"::1", "127.0.0.1", 0},
    {"::1", "::ffff:127.0.0.1", 0},
    {"::1/128", "unix", 0},
    {"2001:db8::1/128", "2001:db8::1", 1},
    {"2001:db8::1/128", "2001:db8::1:0", 0},
    {"fd00::/8", "fd12::1", 1},
    {"fd00::/8", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1},
    {"fd00::/8", "fc00::1", 0},
    {"fd00::/8", "fe00::", 0},
    {"2001:db8::/33", "2001:db8:7fff:ffff::1", 1},
    {"2001:db8::/33", "2001:db8:8000::", 0},
    {"::/0", "2001:db8::1", 1},
    {"::/0", "::ffff:1.2.3.4", 1},
    {"::/0", "1.2.3.4", 0},
    {"::/0", "unix", 0},
    {"::ffff:10.0.0.0/104", "10.1.1.1", 1},
    {"::ffff:10.0.0.0/104", "::ffff:10.1.1.1", 1},
    {"::ffff:10.0.0.0/104", "11.1.1.1", 0},
    {"::ffff:0:0/96", "8.8.8.8", 1},
    {"unix", "unix", 1},
    {"unix", "127.0.0.1", 0},
    {"unix", "::1", 0},
};

static void test_match(void)
{
    struct sockaddr_storage ss;
    struct sockaddr sa_unspec;
    wd_cidr_t c, list[3];
    size_t i;
    int r;

    for (i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const match_case_t *mc = &match_cases[i];
        r = wd_cidr_parse(mc->cidr, &c);
        T_CHECK(r == 0, "match: parse '%s': %d", mc->cidr, r);
        r = wd_cidr_match(&c, peer(mc->peer, &ss));
        T_CHECK(r == mc->want, "match '%s' against %s: %d, want %d", mc->cidr, mc->peer, r,
                mc->want);
    }

    /* No peer, or a family no range holds. */
    wd_cidr_parse("0.0.0.0/0", &c);
    T_CHECK(wd_cidr_match(&c, NULL) == 0, "match NULL");
    memset(&sa_unspec, 0, sizeof(sa_unspec));
    T_CHECK(wd_cidr_match(&c, &sa_unspec) == 0, "match AF_UNSPEC");

    /* A list, as trusted-proxies: [127.0.0.1/32, unix] and a private range. */
    wd_cidr_parse("127.0.0.1/32", &list[0]);
    wd_cidr_parse("unix", &list[1]);
    wd_cidr_parse("fd00::/8", &list[2]);
    T_CHECK(wd_cidr_match_any(list, 3, peer("127.0.0.1", &ss)) == 1, "any: loopback");
    T_CHECK(wd_cidr_match_any(list, 3, peer("::ffff:127.0.0.1", &ss)) == 1, "any: mapped");
    T_CHECK(wd_cidr_match_any(list, 3, peer("unix", &ss)) == 1, "any: unix");
    T_CHECK(wd_cidr_match_any(list, 3, peer("fd01::5", &ss)) == 1, "any: fd01::5");
    T_CHECK(wd_cidr_match_any(list, 3, peer("127.0.0.2", &ss)) == 0, "any: 127.0.0.2");
    T_CHECK(wd_cidr_match_any(list, 3, peer("::1", &ss)) == 0, "any: ::1");
    T_CHECK(wd_cidr_match_any(list, 0, peer("127.0.0.1", &ss)) == 0, "any: empty list");
}

int main(void)
{
    test_parse();
    test_match();
    return t_summary("cidr");
}
