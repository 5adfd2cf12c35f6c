/* What an application may put in a response head, reason phrases, and the canned responses the
 * worker loop sends on its own. */
#include "response.h"

#include <stdio.h>
#include <string.h>

typedef struct reason {
    int code;
    const char *text;
} reason_t;

/* RFC 9110 and the registered extensions in common use, sorted by code. */
static const reason_t reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {102, "Processing"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {207, "Multi-Status"},
    {208, "Already Reported"},
    {226, "IM Used"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {418, "I'm a teapot"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Entity"},
    {423, "Locked"},
    {424, "Failed Dependency"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {506, "Variant Also Negotiates"},
    {507, "Insufficient Storage"},
    {508, "Loop Detected"},
    {510, "Not Extended"},
    {511, "Network Authentication Required"},
};

const char *wd_response_reason(int code)
{
    size_t lo = 0, hi = sizeof(reasons) / sizeof(reasons[0]);

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (reasons[mid].code == code)
            return reasons[mid].text;
        if (reasons[mid].code < code)
            lo = mid + 1;
        else
            hi = mid;
    }
    return "Unknown";
}

/* HTAB, SP, VCHAR and obs-text (RFC 9110 5.5): everything but the other controls and DEL. */
static int is_text(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

int wd_response_parse_status(const char *s, size_t n)
{
    size_t i;

    if (n < 4 || s[3] != ' ')
        return -1;
    if (s[0] < '1' || s[0] > '9' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
        return -1;
    for (i = 4; i < n; i++)
        if (!is_text((unsigned char)s[i]))
            return -1;
    return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/* tchar (RFC 9110 5.6.2). */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int wd_response_header_name_valid(const char *s, size_t n)
{
    size_t i;

    if (n == 0)
        return 0;
    for (i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

int wd_response_header_value_valid(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!is_text((unsigned char)s[i]))
            return 0;
    return 1;
}

int wd_response_header_is_hop_by_hop(const char *s, size_t n)
{
    static const char *const hop[] = {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "te",         "trailer",    "trailers",           "transfer-encoding",
        "upgrade",
    };
    size_t i;

    for (i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (wd_slice_ieq(s, n, hop[i]))
            return 1;
    return 0;
}

int wd_slice_ieq(const char *s, size_t n, const char *lower)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (lower[i] == '\0' || c != (unsigned char)lower[i])
            return 0;
    }
    return lower[i] == '\0';
}

size_t wd_response_date_line(char *out, long long t)
{
    static const char days[] = "ThuFriSatSunMonTueWed"; /* 1970-01-01 was a Thursday */
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    long long d = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    long long s = t - d * 86400;
    int wday = (int)(((d % 7) + 7) % 7);
    /* The civil date of day d (days since 1970-01-01), in the proleptic Gregorian calendar. */
    long long z = d + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    int mday = (int)(doy - (153 * mp + 2) / 5 + 1);
    int mon = (int)(mp < 10 ? mp + 3 : mp - 9);
    long long year = yoe + era * 400 + (mon <= 2);
    int n = snprintf(out, WD_DATE_LINE_MAX, "Date: %.3s, %02d %.3s %04lld %02d:%02d:%02d GMT\r\n",
                     days + 3 * wday, mday, months + 3 * (mon - 1), year, (int)(s / 3600),
                     (int)(s / 60 % 60), (int)(s % 60));

    return n > 0 && n < WD_DATE_LINE_MAX ? (size_t)n : 0;
}

size_t wd_response_canned(char *out, size_t cap, int code, int http_minor, int keep_alive)
{
    return wd_response_canned_dated(out, cap, code, http_minor, keep_alive, NULL);
}

size_t wd_response_canned_dated(char *out, size_t cap, int code, int http_minor, int keep_alive,
                                const char *date_line)
{
    const char *reason = wd_response_reason(code);
    const char *conn;
    int body_len, r;

    if (!keep_alive)
        conn = "Connection: close\r\n";
    else if (http_minor == 0)
        conn = "Connection: keep-alive\r\n";
    else
        conn = "";

    body_len = snprintf(NULL, 0, "%d %s\n", code, reason);
    r = snprintf(out, cap,
                 "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
                 "%d %s\n",
                 code, reason, date_line ? date_line : "", body_len, conn, code, reason);

    /* Half a response is worse than none: the caller sends nothing and closes. */
    if (r < 0 || (size_t)r >= cap)
        return 0;
    return (size_t)r;
}

void wd_response_framing(const wd_framing_in_t *in, wd_framing_t *out)
{
    /* 205 Reset Content has no content either, but says so: Content-Length: 0 (RFC 9110
     * 15.3.6), whose value the caller writes (wd_framing_t.add_cl). */
    int bodiless_code =
        in->status < 200 || in->status == 204 || in->status == 205 || in->status == 304;
    int has_cl = in->has_cl;
    int delimited;

    out->no_body = bodiless_code || in->head_request;
    out->add_cl = (!has_cl && in->known >= 0 && !bodiless_code) || in->status == 205;
    has_cl = has_cl || out->add_cl;
    out->chunked = 0;
    out->keep_alive = 0;
    out->connection = NULL;
    if (!in->http)
        return;
    delimited = has_cl || out->no_body;
    if (!delimited && in->http_minor >= 1) {
        out->chunked = 1;
        delimited = 1;
    }
    out->keep_alive = in->keep_alive && delimited && !in->failed;
    if (in->http_minor >= 1 && !out->keep_alive)
        out->connection = "Connection: close\r\n";
    else if (in->http_minor == 0 && out->keep_alive)
        out->connection = "Connection: keep-alive\r\n";
}
