/*
 * fake-mattermost: a small stand-in for a Mattermost server, for the
 * end-to-end tests and the demo of mmsyncd.
 *
 * It answers the three endpoints mmsyncd uses the way a real server does
 * (see shared/reference/mattermost-api.md): POST /api/v4/posts,
 * POST /hooks/<id> and GET /api/v4/channels/<id>/posts, with the same status
 * codes and AppError ids, the 30 s pending_post_id dedupe and an optional
 * GCRA rate limiter.  On top of that it can misbehave on purpose: scripted
 * faults by request number (--fault, and --fault-get among GETs), added
 * latency, a connection reset (also mid-body), a request that is never
 * answered, headers and bodies of absurd size, absurd Retry-After values.
 * What it received (with the fault that hit it) and what it created are
 * appended as JSON lines to --requests and --posts for the tests to read.
 *
 * Single-threaded, libevent evhttp; every answer that is not sent at once
 * (latency, slow, hang, reset, halfbody) is kept in a "pending" list with
 * its timer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#define PROG "fake-mattermost"

#define DEFAULT_TOKEN "test-token"
#define DEFAULT_CHANNEL "4xp9fdt77pncbef59f4k1qe83o"
#define DEFAULT_HOOK "hook1234567890abcdefghijkl"
/* The user every post is attributed to (the token's or the hook's owner). */
#define FAKE_USER_ID "fakemattermostuser00000001"

#define ID_LEN 26
/* Mattermost's MaximumPayloadSizeBytes default: larger bodies get a 413. */
#define MM_MAX_PAYLOAD 300000
/* libevent's own limits, set above the payload limit so that evhttp lets the
 * request through and we can answer with Mattermost's AppError ourselves. */
#define HTTP_MAX_BODY (4 * 1024 * 1024)
#define HTTP_MAX_HEADERS (64 * 1024)
/* Deeper JSON is refused as invalid: it keeps our recursive JSON writer (and
 * yajl's recursive tree free) far from the stack limit. */
#define JSON_MAX_DEPTH 64
/* Like the real server: the dedupe cache holds at most 25000 ids. */
#define DEDUPE_MAX_ENTRIES 25000
#define DEDUPE_BUCKETS 4096
/* How often a hung request checks whether its client has given up. */
#define HANG_POLL_MS 200
/* X-RateLimit-Limit sent by scripted 429/remaining0 faults when --rate-limit
 * is off: the real server's default burst (100) + 1. */
#define FAULT_RATE_LIMIT 101

static const char usage_text[] =
    "Usage: " PROG " [OPTION]...\n"
    "A stand-in Mattermost server for tests: POST /api/v4/posts,\n"
    "POST /hooks/<id>, GET /api/v4/channels/<id>/posts.\n"
    "\n"
    "  --listen ADDR:PORT     address to listen on (default 127.0.0.1:0;\n"
    "                         port 0 picks a free port; [::1]:PORT for IPv6)\n"
    "  --port-file FILE       once listening, write the port + newline to FILE\n"
    "                         (atomically: FILE.tmp then rename)\n"
    "  --tls-cert FILE        serve HTTPS (TLS 1.2+) with this PEM certificate\n"
    "  --tls-key FILE         ... and this PEM private key\n"
    "  --token T              accepted personal access token (repeatable;\n"
    "                         default: " DEFAULT_TOKEN ")\n"
    "  --channel ID           existing channel id (repeatable; default:\n"
    "                         " DEFAULT_CHANNEL "); webhook posts\n"
    "                         without a channel override go to the first one\n"
    "  --hook ID              existing incoming webhook id (repeatable;\n"
    "                         default: " DEFAULT_HOOK ")\n"
    "  --hook-channel NAME    channel name a webhook may post to (repeatable;\n"
    "                         default: town-square, off-topic)\n"
    "  --hook-user NAME       user a webhook may send a direct message to with\n"
    "                         \"channel\": \"@NAME\" (repeatable; default: none)\n"
    "  --max-runes N          longest message in code points (default 16383)\n"
    "  --dedupe-window SECS   pending_post_id memory (default 30; 0 = off)\n"
    "  --rate-limit PER_SEC   enable a global GCRA rate limiter (shared by\n"
    "                         /api/v4 and /hooks)\n"
    "  --burst N              its burst (default 100, as the real server)\n"
    "  --latency MS           delay every answer by MS milliseconds\n"
    "  --fault N[-M]:KIND     misbehave on requests N..M (1-based count of all\n"
    "                         requests received); repeatable, first match wins.\n"
    "                         KIND: 500 502 503 504 400 401 403 404 413 501\n"
    "                         429 429:S 429:date:S 429:bare 429:reset:S\n"
    "                         remaining0:S reset hang slow:MS notjson\n"
    "                         garbage2xx halfbody halfbody500\n"
    "                         bigheader:KB manyheaders:N bigbody500:MB\n"
    "                         bigbody2xx:MB 429:raw:V 429:rawreset:V\n"
    "                         503:raw:V remaining0:raw:V\n"
    "  --fault-get N[-M]:KIND the same for GET requests N..M, counted among\n"
    "                         GETs only (the lookups after a restart);\n"
    "                         tried before --fault\n"
    "  --posts FILE           append one JSON line per created post\n"
    "  --requests FILE        append one JSON line per received request\n"
    "  --verbose              log every request on stderr\n"
    "  --help                 show this text\n"
    "\n"
    "Faults: 500 and 4xx answer with the AppError the real server sends on\n"
    "that path; 502-504 answer plain text, as a proxy would; 429 and 429:S\n"
    "send Retry-After S (default 1) and X-RateLimit-*; 429:date:S sends\n"
    "Retry-After as an HTTP date S s ahead; 429:bare sends no hint at all;\n"
    "429:reset:S only X-RateLimit-Reset: S; notjson is a 500 with an HTML\n"
    "body; reset aborts the connection (RST); hang never answers.  Requests\n"
    "hit by remaining0:S (a success with X-RateLimit-Remaining: 0 and\n"
    "X-RateLimit-Reset: S), slow:MS (answered MS ms late) and garbage2xx\n"
    "(a 2xx whose body is not JSON) are otherwise handled normally and do\n"
    "create their post; other faulted requests create nothing and bypass\n"
    "the rate limiter.  Requests that libevent itself refuses (a broken\n"
    "request line, headers over 64 KiB, a body over 4 MiB) are not counted.\n"
    "\n"
    "Absurd answers: halfbody sends the normal answer's status line, headers\n"
    "and half of its body, then resets the connection (the post is created);\n"
    "halfbody500 does the same with a 500 AppError (nothing created).\n"
    "bigheader:KB adds one header of KB KiB, manyheaders:N adds N small\n"
    "headers, bigbody2xx:MB pads a success's JSON body to MB MiB (these three\n"
    "create the post); bigbody500:MB is a 500 whose body is MB MiB of\n"
    "unterminated JSON.  429:raw:V sends Retry-After: V verbatim (any text:\n"
    "-1, 999999999, soon, a date) and nothing else; 429:rawreset:V only\n"
    "X-RateLimit-Reset: V; 503:raw:V a proxy's 503 with Retry-After: V;\n"
    "remaining0:raw:V a success with X-RateLimit-Remaining: 0 and\n"
    "X-RateLimit-Reset: V.\n"
    "\n"
    "Each line of --requests holds n, t (ms), method, path, auth,\n"
    "body_bytes, and when they apply: fault (the KIND that hit it), message\n"
    "(a post's message or a webhook's text, cut at 200 bytes) and\n"
    "pending_post_id.\n"
    "\n"
    "SIGTERM or SIGINT stops the server with exit status 0: it stops\n"
    "listening at once, resets connections that send a new request, and\n"
    "gives answers already made 100 ms to go out.\n";

/* ------------------------------------------------------------------------ */
/* Small utilities                                                          */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fputs(PROG ": out of memory\n", stderr);
        abort();
    }
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        fputs(PROG ": out of memory\n", stderr);
        abort();
    }
    return p;
}

static void *xrealloc(void *old, size_t n)
{
    void *p = realloc(old, n ? n : 1);
    if (p == NULL) {
        fputs(PROG ": out of memory\n", stderr);
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

static void __attribute__((format(printf, 1, 2)))
warnx(const char *fmt, ...)
{
    va_list ap;
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Wall clock in milliseconds (with fraction): what Mattermost stores. */
static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Monotonic seconds: for the rate limiter and the dedupe window. */
static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whole seconds, rounded up, of a non-negative duration (no libm needed). */
static long ceil_seconds(double s)
{
    if (s <= 0)
        return 0;
    long whole = (long)s;
    return (double)whole < s ? whole + 1 : whole;
}

static void fill_random(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t got = getrandom(p, len, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            perror(PROG ": getrandom");
            abort();
        }
        p += got;
        len -= (size_t)got;
    }
}

/* A new id as Mattermost makes them: 16 random bytes in its base32
 * alphabet, 26 lowercase letters and digits. */
static void new_id(char out[ID_LEN + 1])
{
    static const char alphabet[] = "ybndrfg8ejkmcpqxot1uwisza345h769";
    unsigned char bytes[16];
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;

    fill_random(bytes, sizeof bytes);
    for (size_t i = 0; i < sizeof bytes; i++) {
        acc = ((acc << 8) | bytes[i]) & 0xfffu;
        bits += 8;
        while (bits >= 5) {
            out[o++] = alphabet[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[o++] = alphabet[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}

static bool is_alnum_str(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

/* Code points of a UTF-8 string (already validated by the JSON parser):
 * every byte that is not a continuation byte starts one. */
static size_t count_runes(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

/* Strict decimal parsing for options and query parameters. */
static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    if (s == NULL || *s == '\0')
        return false;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_long_long(const char *s, long long *out)
{
    char *end;
    if (s == NULL || *s == '\0')
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* A list of strings borrowed from argv (or literals): never freed one by one. */
struct strlist {
    const char **v;
    size_t n;
};

static void strlist_add(struct strlist *l, const char *s)
{
    l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
    l->v[l->n++] = s;
}

static bool strlist_has_n(const struct strlist *l, const char *s, size_t len)
{
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->v[i]) == len && memcmp(l->v[i], s, len) == 0)
            return true;
    return false;
}

static bool strlist_has(const struct strlist *l, const char *s)
{
    return strlist_has_n(l, s, strlen(s));
}

/* ------------------------------------------------------------------------ */
/* JSON helpers                                                             */

static yajl_gen gen_new(void)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        fputs(PROG ": out of memory\n", stderr);
        abort();
    }
    return g;
}

static void gen_str(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void gen_key_str(yajl_gen g, const char *key, const char *value)
{
    gen_str(g, key);
    if (value != NULL)
        gen_str(g, value);
    else
        yajl_gen_null(g);
}

static void gen_key_int(yajl_gen g, const char *key, long long value)
{
    gen_str(g, key);
    yajl_gen_integer(g, value);
}

/* Milliseconds with 3 decimals (yajl_gen_double would print 17 digits). */
static void gen_key_ms(yajl_gen g, const char *key, double ms)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.3f", ms);
    gen_str(g, key);
    yajl_gen_number(g, buf, (size_t)n);
}

/* Writes a parsed value back out; depth is bounded by JSON_MAX_DEPTH. */
static void gen_value(yajl_gen g, yajl_val v)
{
    if (v == NULL) {
        yajl_gen_null(g);
        return;
    }
    switch (v->type) {
    case yajl_t_string:
        gen_str(g, v->u.string);
        break;
    case yajl_t_number:
        /* the number exactly as the client wrote it */
        yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
        break;
    case yajl_t_object:
        yajl_gen_map_open(g);
        for (size_t i = 0; i < v->u.object.len; i++) {
            gen_str(g, v->u.object.keys[i]);
            gen_value(g, v->u.object.values[i]);
        }
        yajl_gen_map_close(g);
        break;
    case yajl_t_array:
        yajl_gen_array_open(g);
        for (size_t i = 0; i < v->u.array.len; i++)
            gen_value(g, v->u.array.values[i]);
        yajl_gen_array_close(g);
        break;
    case yajl_t_true:
        yajl_gen_bool(g, 1);
        break;
    case yajl_t_false:
        yajl_gen_bool(g, 0);
        break;
    default:
        yajl_gen_null(g);
        break;
    }
}

static char *gen_to_string(yajl_gen g)
{
    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(g, &buf, &len);
    char *s = xmalloc(len + 1);
    memcpy(s, buf, len);
    s[len] = '\0';
    return s;
}

/* Appends the generated JSON as one line and flushes, so that a test reading
 * the file right after our answer sees it. */
static void gen_write_line(yajl_gen g, FILE *f)
{
    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(g, &buf, &len);
    fwrite(buf, 1, len, f);
    fputc('\n', f);
    fflush(f);
}

/* Brackets nested deeper than JSON_MAX_DEPTH (outside strings)? */
static bool json_nesting_ok(const char *s, size_t len)
{
    int depth = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > JSON_MAX_DEPTH)
                return false;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return true;
}

/* Parses a request body; NULL when it is not valid JSON (or not safe to
 * handle).  The caller frees the tree with yajl_tree_free. */
static yajl_val parse_json(const char *s, size_t len)
{
    char err[128];
    if (len == 0 || memchr(s, '\0', len) != NULL || !json_nesting_ok(s, len))
        return NULL;
    return yajl_tree_parse(s, err, sizeof err);
}

static yajl_val obj_get(yajl_val obj, const char *key)
{
    if (!YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

/* An optional string field: *out is the string, or NULL when the field is
 * missing or null.  False when it has another type (the real server's JSON
 * decoder refuses the whole body then). */
static bool obj_string(yajl_val obj, const char *key, const char **out)
{
    yajl_val v = obj_get(obj, key);
    *out = NULL;
    if (v == NULL || YAJL_IS_NULL(v))
        return true;
    if (!YAJL_IS_STRING(v))
        return false;
    *out = v->u.string;
    return true;
}

/* An optional field of one container type; NULL when missing or null. */
static bool obj_typed(yajl_val obj, const char *key, yajl_type type,
                      yajl_val *out)
{
    yajl_val v = obj_get(obj, key);
    *out = NULL;
    if (v == NULL || YAJL_IS_NULL(v))
        return true;
    if (v->type != type)
        return false;
    *out = v;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */

enum fault_kind {
    FAULT_STATUS,     /* an error answer; status in .status */
    FAULT_429,        /* Retry-After: .arg and X-RateLimit-* */
    FAULT_429_DATE,   /* Retry-After as an HTTP date .arg seconds ahead */
    FAULT_429_BARE,   /* no hint at all */
    FAULT_429_RESET,  /* X-RateLimit-Reset: .arg only */
    FAULT_REMAINING0, /* success with X-RateLimit-Remaining: 0 */
    FAULT_RESET,      /* abort the connection */
    FAULT_HANG,       /* never answer */
    FAULT_SLOW,       /* answer .arg ms late */
    FAULT_NOTJSON,    /* 500 with an HTML body */
    FAULT_GARBAGE2XX, /* success with a body that is not JSON */
    FAULT_HALFBODY,   /* the normal answer cut mid-body, then a RST */
    FAULT_HALFBODY500, /* a 500 cut mid-body, then a RST */
    FAULT_BIGHEADER,  /* one header of .arg KiB */
    FAULT_MANYHEADERS, /* .arg small headers */
    FAULT_BIGBODY500, /* a 500 with .arg MiB of body */
    FAULT_BIGBODY2XX, /* a success padded to .arg MiB */
    FAULT_429_RAW,    /* 429, Retry-After: .raw verbatim */
    FAULT_429_RAWRESET, /* 429, X-RateLimit-Reset: .raw only */
    FAULT_503_RAW,    /* 503 text, Retry-After: .raw verbatim */
    FAULT_REMAINING0_RAW, /* success, Remaining 0, Reset: .raw */
};

struct fault {
    unsigned long first, last;
    enum fault_kind kind;
    int status;
    long arg;
    const char *raw;  /* the verbatim header value of the *:raw* kinds */
    const char *spec; /* the KIND as written, for the request log */
};

struct options {
    char listen_host[256];
    int listen_port;
    const char *port_file;
    const char *tls_cert, *tls_key;
    struct strlist tokens, channels, hooks, hook_channels, hook_users;
    long max_runes;
    long dedupe_window;
    double rate_per_sec; /* 0: no rate limiting */
    long burst;
    long latency_ms;
    struct fault *faults;
    size_t nfaults;
    struct fault *get_faults; /* --fault-get: numbered among GETs only */
    size_t nget_faults;
    const char *posts_path, *requests_path;
    bool verbose;
};

static bool parse_listen(const char *arg, struct options *o)
{
    const char *colon = strrchr(arg, ':');
    const char *host = arg;
    size_t host_len;
    long port;

    if (colon == NULL)
        return false;
    host_len = (size_t)(colon - arg);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    if (host_len == 0 || host_len >= sizeof o->listen_host ||
        !parse_long(colon + 1, 0, 65535, &port))
        return false;
    memcpy(o->listen_host, host, host_len);
    o->listen_host[host_len] = '\0';
    o->listen_port = (int)port;
    return true;
}

static bool parse_fault(const char *spec, struct fault *f)
{
    static const int plain_statuses[] = {400, 401, 403, 404, 413,
                                         500, 501, 502, 503, 504};
    char *end;
    const char *kind;

    memset(f, 0, sizeof *f);
    if (*spec < '0' || *spec > '9')
        return false;
    f->spec = strchr(spec, ':') ? strchr(spec, ':') + 1 : spec;
    errno = 0;
    f->first = strtoul(spec, &end, 10);
    f->last = f->first;
    if (*end == '-') {
        const char *m = end + 1;
        if (*m < '0' || *m > '9')
            return false;
        f->last = strtoul(m, &end, 10);
    }
    if (errno != 0 || *end != ':' || f->first == 0 || f->last < f->first)
        return false;
    kind = end + 1;

    for (size_t i = 0; i < sizeof plain_statuses / sizeof *plain_statuses;
         i++) {
        char buf[8];
        snprintf(buf, sizeof buf, "%d", plain_statuses[i]);
        if (strcmp(kind, buf) == 0) {
            f->kind = FAULT_STATUS;
            f->status = plain_statuses[i];
            return true;
        }
    }
    {
        static const struct {
            const char *prefix;
            enum fault_kind kind;
        } raws[] = {
            {"429:raw:", FAULT_429_RAW},
            {"429:rawreset:", FAULT_429_RAWRESET},
            {"503:raw:", FAULT_503_RAW},
            {"remaining0:raw:", FAULT_REMAINING0_RAW},
        };
        for (size_t i = 0; i < sizeof raws / sizeof *raws; i++) {
            size_t n = strlen(raws[i].prefix);
            if (strncmp(kind, raws[i].prefix, n) == 0) {
                f->kind = raws[i].kind;
                f->raw = kind + n;
                /* a header value cannot hold a line end */
                return strpbrk(f->raw, "\r\n") == NULL;
            }
        }
    }
    if (strncmp(kind, "bigheader:", 10) == 0) {
        f->kind = FAULT_BIGHEADER;
        return parse_long(kind + 10, 1, 1024L * 1024, &f->arg);
    }
    if (strncmp(kind, "manyheaders:", 12) == 0) {
        f->kind = FAULT_MANYHEADERS;
        return parse_long(kind + 12, 1, 1000000, &f->arg);
    }
    if (strncmp(kind, "bigbody500:", 11) == 0) {
        f->kind = FAULT_BIGBODY500;
        return parse_long(kind + 11, 1, 4096, &f->arg);
    }
    if (strncmp(kind, "bigbody2xx:", 11) == 0) {
        f->kind = FAULT_BIGBODY2XX;
        return parse_long(kind + 11, 1, 4096, &f->arg);
    }
    if (strcmp(kind, "429") == 0) {
        f->kind = FAULT_429;
        f->arg = 1;
        return true;
    }
    if (strcmp(kind, "429:bare") == 0) {
        f->kind = FAULT_429_BARE;
        return true;
    }
    if (strncmp(kind, "429:date:", 9) == 0) {
        f->kind = FAULT_429_DATE;
        return parse_long(kind + 9, 0, 86400 * 365, &f->arg);
    }
    if (strncmp(kind, "429:reset:", 10) == 0) {
        f->kind = FAULT_429_RESET;
        return parse_long(kind + 10, 0, 86400 * 365, &f->arg);
    }
    if (strncmp(kind, "429:", 4) == 0) {
        f->kind = FAULT_429;
        return parse_long(kind + 4, 0, 86400 * 365, &f->arg);
    }
    if (strncmp(kind, "remaining0:", 11) == 0) {
        f->kind = FAULT_REMAINING0;
        return parse_long(kind + 11, 0, 86400 * 365, &f->arg);
    }
    if (strncmp(kind, "slow:", 5) == 0) {
        f->kind = FAULT_SLOW;
        return parse_long(kind + 5, 0, 3600L * 1000, &f->arg);
    }
    if (strcmp(kind, "reset") == 0)
        f->kind = FAULT_RESET;
    else if (strcmp(kind, "hang") == 0)
        f->kind = FAULT_HANG;
    else if (strcmp(kind, "notjson") == 0)
        f->kind = FAULT_NOTJSON;
    else if (strcmp(kind, "garbage2xx") == 0)
        f->kind = FAULT_GARBAGE2XX;
    else if (strcmp(kind, "halfbody") == 0)
        f->kind = FAULT_HALFBODY;
    else if (strcmp(kind, "halfbody500") == 0)
        f->kind = FAULT_HALFBODY500;
    else
        return false;
    return true;
}

enum {
    OPT_LISTEN = 256,
    OPT_PORT_FILE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TOKEN,
    OPT_CHANNEL,
    OPT_HOOK,
    OPT_HOOK_CHANNEL,
    OPT_HOOK_USER,
    OPT_MAX_RUNES,
    OPT_DEDUPE_WINDOW,
    OPT_RATE_LIMIT,
    OPT_BURST,
    OPT_LATENCY,
    OPT_FAULT,
    OPT_FAULT_GET,
    OPT_POSTS,
    OPT_REQUESTS,
    OPT_VERBOSE,
    OPT_HELP,
};

static void __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry '" PROG " --help'.\n", stderr);
}

/* Returns 0 to go on, or the exit status (0 after --help, 2 on errors). */
static int parse_options(int argc, char **argv, struct options *o,
                         bool *done)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"channel", required_argument, NULL, OPT_CHANNEL},
        {"hook", required_argument, NULL, OPT_HOOK},
        {"hook-channel", required_argument, NULL, OPT_HOOK_CHANNEL},
        {"hook-user", required_argument, NULL, OPT_HOOK_USER},
        {"max-runes", required_argument, NULL, OPT_MAX_RUNES},
        {"dedupe-window", required_argument, NULL, OPT_DEDUPE_WINDOW},
        {"rate-limit", required_argument, NULL, OPT_RATE_LIMIT},
        {"burst", required_argument, NULL, OPT_BURST},
        {"latency", required_argument, NULL, OPT_LATENCY},
        {"fault", required_argument, NULL, OPT_FAULT},
        {"fault-get", required_argument, NULL, OPT_FAULT_GET},
        {"posts", required_argument, NULL, OPT_POSTS},
        {"requests", required_argument, NULL, OPT_REQUESTS},
        {"verbose", no_argument, NULL, OPT_VERBOSE},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;

    *done = false;
    strcpy(o->listen_host, "127.0.0.1");
    o->listen_port = 0;
    o->max_runes = 16383;
    o->dedupe_window = 30;
    o->burst = 100;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_LISTEN:
            if (!parse_listen(optarg, o)) {
                usage_error("bad --listen '%s' (want ADDR:PORT)", optarg);
                return 2;
            }
            break;
        case OPT_PORT_FILE:
            o->port_file = optarg;
            break;
        case OPT_TLS_CERT:
            o->tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            o->tls_key = optarg;
            break;
        case OPT_TOKEN:
            strlist_add(&o->tokens, optarg);
            break;
        case OPT_CHANNEL:
            strlist_add(&o->channels, optarg);
            break;
        case OPT_HOOK:
            strlist_add(&o->hooks, optarg);
            break;
        case OPT_HOOK_CHANNEL:
            strlist_add(&o->hook_channels, optarg);
            break;
        case OPT_HOOK_USER:
            strlist_add(&o->hook_users, optarg);
            break;
        case OPT_MAX_RUNES:
            if (!parse_long(optarg, 1, 100000000, &o->max_runes)) {
                usage_error("bad --max-runes '%s'", optarg);
                return 2;
            }
            break;
        case OPT_DEDUPE_WINDOW:
            if (!parse_long(optarg, 0, 86400, &o->dedupe_window)) {
                usage_error("bad --dedupe-window '%s'", optarg);
                return 2;
            }
            break;
        case OPT_RATE_LIMIT: {
            char *end;
            errno = 0;
            o->rate_per_sec = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' ||
                !(o->rate_per_sec > 0 && o->rate_per_sec <= 1e6)) {
                usage_error("bad --rate-limit '%s' (requests per second)",
                            optarg);
                return 2;
            }
            break;
        }
        case OPT_BURST:
            if (!parse_long(optarg, 0, 1000000, &o->burst)) {
                usage_error("bad --burst '%s'", optarg);
                return 2;
            }
            break;
        case OPT_LATENCY:
            if (!parse_long(optarg, 0, 3600L * 1000, &o->latency_ms)) {
                usage_error("bad --latency '%s' (milliseconds)", optarg);
                return 2;
            }
            break;
        case OPT_FAULT:
            o->faults = xrealloc(o->faults, (o->nfaults + 1) * sizeof *o->faults);
            if (!parse_fault(optarg, &o->faults[o->nfaults])) {
                usage_error("bad --fault '%s' (want N[-M]:KIND)", optarg);
                return 2;
            }
            o->nfaults++;
            break;
        case OPT_FAULT_GET:
            o->get_faults = xrealloc(o->get_faults, (o->nget_faults + 1) *
                                                        sizeof *o->get_faults);
            if (!parse_fault(optarg, &o->get_faults[o->nget_faults])) {
                usage_error("bad --fault-get '%s' (want N[-M]:KIND)", optarg);
                return 2;
            }
            o->nget_faults++;
            break;
        case OPT_POSTS:
            o->posts_path = optarg;
            break;
        case OPT_REQUESTS:
            o->requests_path = optarg;
            break;
        case OPT_VERBOSE:
            o->verbose = true;
            break;
        case 'h':
        case OPT_HELP:
            fputs(usage_text, stdout);
            *done = true;
            return 0;
        default:
            fputs("Try '" PROG " --help'.\n", stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage_error("unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        usage_error("--tls-cert and --tls-key go together");
        return 2;
    }
    if (o->tokens.n == 0)
        strlist_add(&o->tokens, DEFAULT_TOKEN);
    if (o->channels.n == 0)
        strlist_add(&o->channels, DEFAULT_CHANNEL);
    if (o->hooks.n == 0)
        strlist_add(&o->hooks, DEFAULT_HOOK);
    if (o->hook_channels.n == 0) {
        strlist_add(&o->hook_channels, "town-square");
        strlist_add(&o->hook_channels, "off-topic");
    }
    return 0;
}

static void options_free(struct options *o)
{
    free(o->tokens.v);
    free(o->channels.v);
    free(o->hooks.v);
    free(o->hook_channels.v);
    free(o->hook_users.v);
    free(o->faults);
    free(o->get_faults);
}

/* ------------------------------------------------------------------------ */
/* Rate limiter: GCRA as in throttled, the library Mattermost uses.         */

struct limiter {
    double interval;  /* seconds between requests at the sustained rate */
    double tolerance; /* interval * (burst + 1) */
    double tat;       /* theoretical arrival time */
    long limit;       /* burst + 1 */
};

struct limit_result {
    bool allowed;
    long remaining;
    double reset_after; /* seconds until the bucket is full again */
    double retry_after; /* seconds; only when not allowed */
};

static void limiter_take(struct limiter *l, double now, struct limit_result *r)
{
    double tat = l->tat > now ? l->tat : now;
    double new_tat = tat + l->interval;
    double allow_at = new_tat - l->tolerance;
    double ttl;

    if (now < allow_at) {
        r->allowed = false;
        r->retry_after = allow_at - now;
        ttl = tat - now;
    } else {
        r->allowed = true;
        r->retry_after = 0;
        ttl = new_tat - now;
        l->tat = new_tat;
    }
    double next = l->tolerance - ttl;
    r->remaining = next > 0 ? (long)(next / l->interval) : 0;
    r->reset_after = ttl;
}

/* ------------------------------------------------------------------------ */
/* Dedupe cache: pending_post_id -> the post created for it.                */

struct dedupe_entry {
    char *key;
    char *post_json;
    double expires;
    struct dedupe_entry *chain; /* next in the hash bucket */
    struct dedupe_entry *later; /* next in insertion (= expiry) order */
};

struct dedupe {
    struct dedupe_entry *buckets[DEDUPE_BUCKETS];
    struct dedupe_entry *oldest, *newest;
    size_t count;
};

static size_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h % DEDUPE_BUCKETS;
}

static void dedupe_drop_oldest(struct dedupe *d)
{
    struct dedupe_entry *e = d->oldest;
    struct dedupe_entry **pp = &d->buckets[hash_str(e->key)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    d->oldest = e->later;
    if (d->oldest == NULL)
        d->newest = NULL;
    d->count--;
    free(e->key);
    free(e->post_json);
    free(e);
}

/* The window is the same for every entry, so insertion order is expiry
 * order and expired entries are always at the old end. */
static void dedupe_expire(struct dedupe *d, double now)
{
    while (d->oldest != NULL &&
           (d->oldest->expires <= now || d->count > DEDUPE_MAX_ENTRIES))
        dedupe_drop_oldest(d);
}

static const char *dedupe_find(struct dedupe *d, const char *key, double now)
{
    dedupe_expire(d, now);
    for (struct dedupe_entry *e = d->buckets[hash_str(key)]; e; e = e->chain)
        if (strcmp(e->key, key) == 0)
            return e->post_json;
    return NULL;
}

static void dedupe_add(struct dedupe *d, const char *key,
                       const char *post_json, double expires)
{
    struct dedupe_entry *e = xcalloc(1, sizeof *e);
    size_t b = hash_str(key);
    e->key = xstrdup(key);
    e->post_json = xstrdup(post_json);
    e->expires = expires;
    e->chain = d->buckets[b];
    d->buckets[b] = e;
    if (d->newest != NULL)
        d->newest->later = e;
    else
        d->oldest = e;
    d->newest = e;
    d->count++;
    while (d->count > DEDUPE_MAX_ENTRIES)
        dedupe_drop_oldest(d);
}

static void dedupe_clear(struct dedupe *d)
{
    while (d->oldest != NULL)
        dedupe_drop_oldest(d);
}

/* ------------------------------------------------------------------------ */
/* Server state                                                             */

/* A created post, kept for GET /api/v4/channels/<id>/posts. */
struct post {
    char id[ID_LEN + 1];
    char *channel_id; /* NULL: a webhook post to an overriding channel name */
    long long create_at;
    char *json;
};

enum pending_action { PENDING_REPLY, PENDING_RESET, PENDING_HANG };

/* A request whose answer (or fate) is due later. */
struct pending {
    struct server *srv;
    unsigned long n; /* the request number */
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *timer;
    enum pending_action action;
    int status;
    struct evbuffer *out;
    struct pending *prev, *next;
};

struct server {
    struct options opt;
    struct event_base *base;
    struct evhttp *http;
    SSL_CTX *tls;
    FILE *posts_file, *requests_file;
    unsigned long nrequests;
    unsigned long ngets; /* GET requests, for --fault-get */
    bool rate_limited;
    struct limiter limiter;
    struct dedupe dedupe;
    struct post *posts;
    size_t nposts, posts_cap;
    struct pending *pending;
    struct evhttp_bound_socket *listener;
    bool stopping;
};

enum auth { AUTH_NONE, AUTH_OK, AUTH_BAD };

enum route { ROUTE_UNKNOWN, ROUTE_CREATE_POST, ROUTE_HOOK, ROUTE_CHANNEL_POSTS };

/* One request while it is being handled. */
struct exchange {
    struct server *srv;
    struct evhttp_request *req;
    unsigned long n;
    double t_ms; /* arrival, wall clock */
    double mono; /* arrival, monotonic */
    char request_id[ID_LEN + 1];
    enum auth auth;
    enum route route;
    const char *route_id; /* hook id or channel id, inside the path */
    size_t route_id_len;
    char *body;
    size_t body_len;
    /* the answer being built; headers go straight to the request */
    int status;
    struct evbuffer *out;
};

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Request Entity Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "UNKNOWN";
    }
}

/* ------------------------------------------------------------------------ */
/* Building answers                                                         */

static void set_header(struct evhttp_request *req, const char *name,
                       const char *value)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    while (evhttp_remove_header(h, name) == 0)
        ;
    evhttp_add_header(h, name, value);
}

static void set_header_long(struct evhttp_request *req, const char *name,
                            long value)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", value);
    set_header(req, name, buf);
}

static void reply_raw(struct exchange *x, int status, const char *ctype,
                      const char *body, size_t len)
{
    x->status = status;
    evbuffer_drain(x->out, evbuffer_get_length(x->out));
    evbuffer_add(x->out, body, len);
    set_header(x->req, "Content-Type", ctype);
}

static void reply_text(struct exchange *x, int status, const char *ctype,
                       const char *text)
{
    reply_raw(x, status, ctype, text, strlen(text));
}

static void reply_json(struct exchange *x, int status, const char *json)
{
    reply_text(x, status, "application/json", json);
}

/* Mattermost's error answer. */
static void reply_app_error(struct exchange *x, int status, const char *id,
                            const char *message)
{
    yajl_gen g = gen_new();
    yajl_gen_map_open(g);
    gen_key_str(g, "id", id);
    gen_key_str(g, "message", message);
    gen_key_str(g, "detailed_error", "");
    gen_key_str(g, "request_id", x->request_id);
    gen_key_int(g, "status_code", status);
    yajl_gen_map_close(g);
    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(g, &buf, &len);
    reply_raw(x, status, "application/json", (const char *)buf, len);
    yajl_gen_free(g);
}

/* The real rate limiter's refusal: plain text, not an AppError. */
static void reply_limit_exceeded(struct exchange *x)
{
    set_header(x->req, "X-Content-Type-Options", "nosniff");
    reply_text(x, 429, "text/plain; charset=utf-8", "limit exceeded\n");
}

static void set_rate_headers(struct exchange *x, long limit, long remaining,
                             long reset)
{
    set_header_long(x->req, "X-RateLimit-Limit", limit);
    set_header_long(x->req, "X-RateLimit-Remaining", remaining);
    set_header_long(x->req, "X-RateLimit-Reset", reset);
}

/* ------------------------------------------------------------------------ */
/* Posts                                                                    */

struct new_post {
    const char *kind;         /* "rest" or "webhook" */
    const char *channel_id;   /* NULL for a webhook channel-name override */
    const char *channel_name; /* the webhook override, else NULL */
    const char *message;
    const char *root_id;
    const char *pending_post_id;
    const char *username; /* webhook overrides */
    const char *icon_url;
    yajl_val props;       /* object or NULL */
    yajl_val attachments; /* webhook attachments: array or NULL */
    bool from_webhook;
};

static void gen_props(yajl_gen g, const struct new_post *np)
{
    yajl_gen_map_open(g);
    if (np->props != NULL) {
        for (size_t i = 0; i < np->props->u.object.len; i++) {
            const char *k = np->props->u.object.keys[i];
            /* keys the webhook code sets itself win, as on the server */
            if (np->from_webhook &&
                (strcmp(k, "from_webhook") == 0 ||
                 strcmp(k, "attachments") == 0 ||
                 strcmp(k, "override_username") == 0 ||
                 strcmp(k, "override_icon_url") == 0))
                continue;
            gen_str(g, k);
            gen_value(g, np->props->u.object.values[i]);
        }
    }
    if (np->from_webhook) {
        if (np->attachments != NULL) {
            gen_str(g, "attachments");
            gen_value(g, np->attachments);
        }
        gen_key_str(g, "from_webhook", "true");
        if (np->username != NULL)
            gen_key_str(g, "override_username", np->username);
        if (np->icon_url != NULL)
            gen_key_str(g, "override_icon_url", np->icon_url);
    }
    yajl_gen_map_close(g);
}

/* The post as the REST API returns it (a subset of model.Post). */
static char *post_to_json(const char *id, long long create_at,
                          const struct new_post *np)
{
    yajl_gen g = gen_new();
    yajl_gen_map_open(g);
    gen_key_str(g, "id", id);
    gen_key_int(g, "create_at", create_at);
    gen_key_int(g, "update_at", create_at);
    gen_key_int(g, "edit_at", 0);
    gen_key_int(g, "delete_at", 0);
    gen_str(g, "is_pinned");
    yajl_gen_bool(g, 0);
    gen_key_str(g, "user_id", FAKE_USER_ID);
    gen_key_str(g, "channel_id", np->channel_id ? np->channel_id : "");
    gen_key_str(g, "root_id", np->root_id ? np->root_id : "");
    gen_key_str(g, "original_id", "");
    gen_key_str(g, "message", np->message);
    gen_key_str(g, "type", "");
    gen_str(g, "props");
    gen_props(g, np);
    gen_key_str(g, "hashtags", "");
    gen_key_str(g, "pending_post_id",
                np->pending_post_id ? np->pending_post_id : "");
    gen_key_int(g, "reply_count", 0);
    gen_key_int(g, "last_reply_at", 0);
    gen_str(g, "metadata");
    yajl_gen_map_open(g);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    char *s = gen_to_string(g);
    yajl_gen_free(g);
    return s;
}

static void record_post_line(struct exchange *x, const char *id,
                             const struct new_post *np)
{
    FILE *f = x->srv->posts_file;
    if (f == NULL)
        return;
    yajl_val attachments = np->attachments;
    if (attachments == NULL && !np->from_webhook)
        attachments = obj_get(np->props, "attachments");

    yajl_gen g = gen_new();
    yajl_gen_map_open(g);
    gen_key_int(g, "n", (long long)x->n);
    gen_key_ms(g, "t", x->t_ms);
    gen_key_str(g, "kind", np->kind);
    gen_key_str(g, "id", id);
    gen_key_str(g, "channel_id", np->channel_id);
    gen_key_str(g, "channel", np->channel_name);
    gen_key_str(g, "message", np->message);
    gen_key_str(g, "pending_post_id", np->pending_post_id);
    gen_key_str(g, "username", np->username);
    gen_key_str(g, "icon_url", np->icon_url);
    gen_str(g, "props");
    gen_value(g, np->props);
    gen_str(g, "attachments");
    gen_value(g, attachments);
    yajl_gen_map_close(g);
    gen_write_line(g, f);
    yajl_gen_free(g);
}

/* Creates the post: keeps it, records it; returns its JSON (owned by the
 * store, valid until the server is freed). */
static const char *create_post(struct exchange *x, const struct new_post *np)
{
    struct server *s = x->srv;
    struct post *p;

    if (s->nposts == s->posts_cap) {
        s->posts_cap = s->posts_cap ? 2 * s->posts_cap : 64;
        s->posts = xrealloc(s->posts, s->posts_cap * sizeof *s->posts);
    }
    p = &s->posts[s->nposts++];
    new_id(p->id);
    p->create_at = (long long)x->t_ms;
    p->channel_id = np->channel_id ? xstrdup(np->channel_id) : NULL;
    p->json = post_to_json(p->id, p->create_at, np);
    record_post_line(x, p->id, np);
    return p->json;
}

/* ------------------------------------------------------------------------ */
/* Endpoints                                                                */

#define ERR_SESSION_EXPIRED "api.context.session_expired.app_error"
#define MSG_SESSION_EXPIRED "Invalid or expired session, please login again."
#define ERR_PERMISSIONS "api.context.permissions.app_error"
#define MSG_PERMISSIONS "You do not have the appropriate permissions."
#define ERR_BAD_BODY "api.context.invalid_body_param.app_error"
#define MSG_BAD_BODY "Invalid or missing post in request body."
#define ERR_TOO_LARGE "api.context.request_body_too_large.app_error"
#define MSG_TOO_LARGE "The request body is too large."
#define ERR_BAD_URL "api.context.invalid_url_param.app_error"
#define ERR_NOT_FOUND "api.context.404.app_error"
#define MSG_NOT_FOUND "Sorry, we could not find the page."
#define ERR_HOOK_INVALID "web.incoming_webhook.invalid.app_error"
#define ERR_HOOK_PARSE "model.incoming_hook.parse_data.app_error"
#define ERR_HOOK_TEXT "web.incoming_webhook.text.app_error"
#define ERR_HOOK_CHANNEL "web.incoming_webhook.channel.app_error"
#define ERR_HOOK_USER "web.incoming_webhook.user.app_error"

static void handle_create_post(struct exchange *x)
{
    struct server *s = x->srv;
    const struct options *o = &s->opt;
    const char *channel_id, *message, *pending, *root_id;
    yajl_val doc, props;

    if (x->auth != AUTH_OK) {
        reply_app_error(x, 401, ERR_SESSION_EXPIRED, MSG_SESSION_EXPIRED);
        return;
    }
    if (x->body_len > MM_MAX_PAYLOAD) {
        reply_app_error(x, 413, ERR_TOO_LARGE, MSG_TOO_LARGE);
        return;
    }
    doc = parse_json(x->body, x->body_len);
    if (!YAJL_IS_OBJECT(doc) || !obj_string(doc, "channel_id", &channel_id) ||
        !obj_string(doc, "message", &message) ||
        !obj_string(doc, "pending_post_id", &pending) ||
        !obj_string(doc, "root_id", &root_id) ||
        !obj_typed(doc, "props", yajl_t_object, &props)) {
        reply_app_error(x, 400, ERR_BAD_BODY, MSG_BAD_BODY);
        goto out;
    }
    /* the server answers "no permission" for a channel it cannot find */
    if (channel_id == NULL || !strlist_has(&o->channels, channel_id)) {
        reply_app_error(x, 403, ERR_PERMISSIONS, MSG_PERMISSIONS);
        goto out;
    }
    bool dedupe = o->dedupe_window > 0 && pending != NULL && *pending != '\0';
    if (dedupe) {
        const char *original = dedupe_find(&s->dedupe, pending, x->mono);
        if (original != NULL) {
            reply_json(x, 201, original);
            goto out;
        }
    }
    if (message == NULL)
        message = "";
    if (count_runes(message) > (size_t)o->max_runes) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "Invalid Message property: longer than %ld characters.",
                 o->max_runes);
        reply_app_error(x, 400, "model.post.is_valid.message_length.app_error",
                        msg);
        goto out;
    }

    struct new_post np = {
        .kind = "rest",
        .channel_id = channel_id,
        .message = message,
        .root_id = root_id,
        .pending_post_id = pending,
        .props = props,
    };
    const char *json = create_post(x, &np);
    if (dedupe)
        dedupe_add(&s->dedupe, pending, json,
                   x->mono + (double)o->dedupe_window);
    reply_json(x, 201, json);
out:
    yajl_tree_free(doc);
}

/* Decodes one application/x-www-form-urlencoded value in place. */
static void form_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '+') {
            *o++ = ' ';
        } else if (*p == '%' && p[1] && p[2] &&
                   strchr("0123456789abcdefABCDEF", p[1]) &&
                   strchr("0123456789abcdefABCDEF", p[2])) {
            char hex[3] = {p[1], p[2], '\0'};
            *o++ = (char)strtol(hex, NULL, 16);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

/* The "payload" field of a form body, decoded, or NULL (caller frees). */
static char *form_payload(const char *body, size_t len)
{
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *field_end = amp ? amp : end;
        if ((size_t)(field_end - p) >= 8 && memcmp(p, "payload=", 8) == 0) {
            size_t n = (size_t)(field_end - p) - 8;
            char *v = xmalloc(n + 1);
            memcpy(v, p + 8, n);
            v[n] = '\0';
            form_decode(v);
            return v;
        }
        p = field_end + 1;
    }
    return NULL;
}

static bool content_type_is(const char *ctype, const char *want)
{
    size_t n = strlen(want);
    return ctype != NULL && strncasecmp(ctype, want, n) == 0 &&
           (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

/* POST /hooks/<id>, in the order the real handler checks things: payload,
 * hook, text, channel.  Long text is recorded as one post here, where the
 * real server would split it into several. */
static void handle_hook(struct exchange *x)
{
    struct server *s = x->srv;
    const struct options *o = &s->opt;
    const char *ctype = evhttp_find_header(
        evhttp_request_get_input_headers(x->req), "Content-Type");
    const char *text, *channel, *username, *icon_url, *icon_emoji;
    yajl_val doc = NULL, props, attachments;
    const char *channel_name = NULL;

    if (x->body_len > MM_MAX_PAYLOAD) {
        reply_app_error(x, 413, ERR_TOO_LARGE, MSG_TOO_LARGE);
        return;
    }
    if (content_type_is(ctype, "application/x-www-form-urlencoded")) {
        char *payload = form_payload(x->body, x->body_len);
        if (payload != NULL)
            doc = parse_json(payload, strlen(payload));
        free(payload);
    } else if (!content_type_is(ctype, "multipart/form-data")) {
        /* multipart forms are not supported: refused as unparseable */
        doc = parse_json(x->body, x->body_len);
    }
    if (!YAJL_IS_OBJECT(doc) || !obj_string(doc, "text", &text) ||
        !obj_string(doc, "channel", &channel) ||
        !obj_string(doc, "username", &username) ||
        !obj_string(doc, "icon_url", &icon_url) ||
        !obj_string(doc, "icon_emoji", &icon_emoji) ||
        !obj_typed(doc, "props", yajl_t_object, &props) ||
        !obj_typed(doc, "attachments", yajl_t_array, &attachments)) {
        reply_app_error(x, 400, ERR_HOOK_PARSE, "Unable to parse incoming data.");
        goto out;
    }
    if (!strlist_has_n(&o->hooks, x->route_id, x->route_id_len)) {
        reply_app_error(x, 400, ERR_HOOK_INVALID, "Invalid webhook.");
        goto out;
    }
    if ((text == NULL || *text == '\0') && attachments == NULL) {
        reply_app_error(x, 400, ERR_HOOK_TEXT, "Text not specified.");
        goto out;
    }
    if (channel != NULL && *channel != '\0') {
        if (channel[0] == '@') {
            if (!strlist_has(&o->hook_users, channel + 1)) {
                reply_app_error(x, 400, ERR_HOOK_USER,
                                "Couldn't find the user.");
                goto out;
            }
            channel_name = channel;
        } else {
            /* a name (slug), '#' optional; an id is not a name */
            channel_name = channel[0] == '#' ? channel + 1 : channel;
            if (!strlist_has(&o->hook_channels, channel_name)) {
                reply_app_error(x, 404, ERR_HOOK_CHANNEL,
                                "Couldn't find the channel.");
                goto out;
            }
        }
    }

    struct new_post np = {
        .kind = "webhook",
        .channel_id = channel_name ? NULL : o->channels.v[0],
        .channel_name = channel_name,
        .message = text ? text : "",
        .username = username,
        .icon_url = icon_url,
        .props = props,
        .attachments = attachments,
        .from_webhook = true,
    };
    create_post(x, &np);
    reply_text(x, 200, "text/plain", "ok");
out:
    yajl_tree_free(doc);
}

/* GET /api/v4/channels/<id>/posts: with since=MS, every post created after
 * MS; otherwise page/per_page (default 0/60) of the newest.  Newest first. */
static void handle_channel_posts(struct exchange *x)
{
    struct server *s = x->srv;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(x->req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq params;
    long long since = -1;
    long page = 0, per_page = 60;
    bool bad = false;
    char channel_id[ID_LEN + 1];

    if (x->auth != AUTH_OK) {
        reply_app_error(x, 401, ERR_SESSION_EXPIRED, MSG_SESSION_EXPIRED);
        return;
    }
    if (x->route_id_len != ID_LEN) {
        reply_app_error(x, 400, ERR_BAD_URL,
                        "Invalid or missing channel_id parameter in request URL.");
        return;
    }
    memcpy(channel_id, x->route_id, ID_LEN);
    channel_id[ID_LEN] = '\0';
    if (!strlist_has(&s->opt.channels, channel_id)) {
        reply_app_error(x, 403, ERR_PERMISSIONS, MSG_PERMISSIONS);
        return;
    }

    if (query != NULL) {
        /* evhttp_parse_query_str initialises the list, even on failure */
        if (evhttp_parse_query_str(query, &params) != 0) {
            bad = true;
        } else {
            const char *v;
            if ((v = evhttp_find_header(&params, "since")) != NULL)
                bad |= !parse_long_long(v, &since) || since < 0;
            if ((v = evhttp_find_header(&params, "page")) != NULL)
                bad |= !parse_long(v, 0, LONG_MAX / 1000, &page);
            if ((v = evhttp_find_header(&params, "per_page")) != NULL)
                bad |= !parse_long(v, 1, LONG_MAX, &per_page);
        }
        evhttp_clear_headers(&params);
    }
    if (bad) {
        reply_app_error(x, 400, ERR_BAD_URL,
                        "Invalid or missing parameter in request URL.");
        return;
    }
    if (per_page > 200)
        per_page = 200;

    /* posts are stored oldest first; walk backwards for newest first */
    size_t *picked = xmalloc(s->nposts * sizeof *picked);
    size_t npicked = 0;
    long skip = since >= 0 ? 0 : page * per_page;
    for (size_t i = s->nposts; i-- > 0;) {
        const struct post *p = &s->posts[i];
        if (p->channel_id == NULL || strcmp(p->channel_id, channel_id) != 0)
            continue;
        if (since >= 0) {
            if (p->create_at > since)
                picked[npicked++] = i;
            continue;
        }
        if (skip > 0) {
            skip--;
            continue;
        }
        if ((long)npicked < per_page)
            picked[npicked++] = i;
    }

    /* post JSON is kept ready-made, so the list is assembled by hand */
    evbuffer_drain(x->out, evbuffer_get_length(x->out));
    evbuffer_add_printf(x->out, "{\"order\":[");
    for (size_t k = 0; k < npicked; k++)
        evbuffer_add_printf(x->out, "%s\"%s\"", k ? "," : "",
                            s->posts[picked[k]].id);
    evbuffer_add_printf(x->out, "],\"posts\":{");
    for (size_t k = 0; k < npicked; k++)
        evbuffer_add_printf(x->out, "%s\"%s\":%s", k ? "," : "",
                            s->posts[picked[k]].id, s->posts[picked[k]].json);
    evbuffer_add_printf(x->out, "},\"next_post_id\":\"\","
                                "\"prev_post_id\":\"\",\"has_next\":false}");
    free(picked);
    x->status = 200;
    set_header(x->req, "Content-Type", "application/json");
}

static void route_request(struct exchange *x)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(x->req);
    enum evhttp_cmd_type want;

    switch (x->route) {
    case ROUTE_CREATE_POST:
    case ROUTE_HOOK:
        want = EVHTTP_REQ_POST;
        break;
    case ROUTE_CHANNEL_POSTS:
        want = EVHTTP_REQ_GET;
        break;
    default:
        reply_app_error(x, 404, ERR_NOT_FOUND, MSG_NOT_FOUND);
        return;
    }
    if (cmd != want) {
        set_header(x->req, "Allow", method_name(want));
        reply_app_error(x, 405, "api.context.405.app_error",
                        "Method not allowed.");
        return;
    }
    switch (x->route) {
    case ROUTE_CREATE_POST:
        handle_create_post(x);
        break;
    case ROUTE_HOOK:
        handle_hook(x);
        break;
    default:
        handle_channel_posts(x);
        break;
    }
}

static void classify_route(struct exchange *x)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(x->req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    static const char hooks[] = "/hooks/";
    static const char channels[] = "/api/v4/channels/";

    x->route = ROUTE_UNKNOWN;
    if (path == NULL)
        return;
    if (strcmp(path, "/api/v4/posts") == 0) {
        x->route = ROUTE_CREATE_POST;
    } else if (strncmp(path, hooks, sizeof hooks - 1) == 0) {
        const char *id = path + sizeof hooks - 1;
        if (is_alnum_str(id, strlen(id))) {
            x->route = ROUTE_HOOK;
            x->route_id = id;
            x->route_id_len = strlen(id);
        }
    } else if (strncmp(path, channels, sizeof channels - 1) == 0) {
        const char *id = path + sizeof channels - 1;
        const char *slash = strchr(id, '/');
        if (slash != NULL && strcmp(slash, "/posts") == 0 &&
            is_alnum_str(id, (size_t)(slash - id))) {
            x->route = ROUTE_CHANNEL_POSTS;
            x->route_id = id;
            x->route_id_len = (size_t)(slash - id);
        }
    }
}

/* As ParseAuthTokenFromRequest: "Bearer T" or "Token T", any case. */
static enum auth check_auth(const struct server *s, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req),
                                       "Authorization");
    const char *token = NULL;
    if (h == NULL)
        return AUTH_NONE;
    if (strncasecmp(h, "Bearer ", 7) == 0)
        token = h + 7;
    else if (strncasecmp(h, "Token ", 6) == 0)
        token = h + 6;
    return token != NULL && strlist_has(&s->opt.tokens, token) ? AUTH_OK
                                                                : AUTH_BAD;
}

/* ------------------------------------------------------------------------ */
/* Faults                                                                   */

static const struct fault *find_in(const struct fault *v, size_t nv,
                                   unsigned long n)
{
    for (size_t i = 0; i < nv; i++)
        if (n >= v[i].first && n <= v[i].last)
            return &v[i];
    return NULL;
}

/* The fault for request N (and, for a GET, the NGETth GET). */
static const struct fault *find_fault(const struct server *s, unsigned long n,
                                      unsigned long nget)
{
    const struct fault *f = NULL;
    if (nget > 0)
        f = find_in(s->opt.get_faults, s->opt.nget_faults, nget);
    return f != NULL ? f : find_in(s->opt.faults, s->opt.nfaults, n);
}

static long fault_rate_limit(const struct server *s)
{
    return s->rate_limited ? s->limiter.limit : FAULT_RATE_LIMIT;
}

/* The AppError the real server would send with this status on this path.
 * (There is no 501 on the REST post path; that id is made up.) */
static void reply_fault_app_error(struct exchange *x, int status)
{
    bool hook = x->route == ROUTE_HOOK;
    switch (status) {
    case 400:
        if (hook)
            reply_app_error(x, 400, ERR_HOOK_TEXT, "Text not specified.");
        else
            reply_app_error(x, 400, ERR_BAD_BODY, MSG_BAD_BODY);
        break;
    case 401:
        reply_app_error(x, 401, ERR_SESSION_EXPIRED, MSG_SESSION_EXPIRED);
        break;
    case 403:
        if (hook)
            reply_app_error(x, 403, "web.incoming_webhook.permissions.app_error",
                            "Inappropriate channel permissions.");
        else
            reply_app_error(x, 403, ERR_PERMISSIONS, MSG_PERMISSIONS);
        break;
    case 404:
        if (hook)
            reply_app_error(x, 404, ERR_HOOK_CHANNEL,
                            "Couldn't find the channel.");
        else
            reply_app_error(x, 404, ERR_NOT_FOUND, MSG_NOT_FOUND);
        break;
    case 413:
        reply_app_error(x, 413, ERR_TOO_LARGE, MSG_TOO_LARGE);
        break;
    case 501:
        if (hook)
            reply_app_error(x, 501, "web.incoming_webhook.disabled.app_error",
                            "Incoming webhooks have been disabled by the "
                            "system admin.");
        else
            reply_app_error(x, 501, "api.context.not_implemented.app_error",
                            "Not implemented.");
        break;
    default:
        reply_app_error(x, status, "app.post.save.app_error",
                        "Unable to save the post.");
        break;
    }
}

/* Faults that replace the answer entirely (nothing is created). */
static bool fault_replaces_answer(const struct fault *f)
{
    switch (f->kind) {
    case FAULT_STATUS:
    case FAULT_429:
    case FAULT_429_DATE:
    case FAULT_429_BARE:
    case FAULT_429_RESET:
    case FAULT_NOTJSON:
    case FAULT_HALFBODY500:
    case FAULT_BIGBODY500:
    case FAULT_429_RAW:
    case FAULT_429_RAWRESET:
    case FAULT_503_RAW:
        return true;
    default:
        return false;
    }
}

/* A 64 KiB block of filler, referenced (not copied) by the big bodies. */
static const char *filler_block(void)
{
    static char block[64 * 1024];
    if (block[0] == '\0')
        memset(block, 'x', sizeof block);
    return block;
}

static void add_filler(struct evbuffer *out, size_t bytes)
{
    const char *block = filler_block();
    while (bytes > 0) {
        size_t n = bytes < 64 * 1024 ? bytes : 64 * 1024;
        evbuffer_add_reference(out, block, n, NULL, NULL);
        bytes -= n;
    }
}

static void apply_fault_answer(struct exchange *x, const struct fault *f)
{
    switch (f->kind) {
    case FAULT_STATUS:
        if (f->status >= 502 && f->status <= 504) {
            char text[64];
            snprintf(text, sizeof text, "%d %s\n", f->status,
                     reason_phrase(f->status));
            reply_text(x, f->status, "text/plain", text);
        } else {
            reply_fault_app_error(x, f->status);
        }
        break;
    case FAULT_429:
        set_rate_headers(x, fault_rate_limit(x->srv), 0, f->arg);
        set_header_long(x->req, "Retry-After", f->arg);
        reply_limit_exceeded(x);
        break;
    case FAULT_429_DATE: {
        char date[64];
        time_t when = time(NULL) + f->arg;
        struct tm tm;
        gmtime_r(&when, &tm);
        /* IMF-fixdate; strftime in the C locale gives English names */
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        set_header(x->req, "Retry-After", date);
        reply_limit_exceeded(x);
        break;
    }
    case FAULT_429_BARE:
        reply_limit_exceeded(x);
        break;
    case FAULT_429_RESET:
        set_rate_headers(x, fault_rate_limit(x->srv), 0, f->arg);
        reply_limit_exceeded(x);
        break;
    case FAULT_HALFBODY500:
        reply_fault_app_error(x, 500);
        break;
    case FAULT_BIGBODY500: {
        static const char head[] =
            "{\"id\":\"app.post.save.app_error\",\"message\":\"";
        reply_raw(x, 500, "application/json", head, sizeof head - 1);
        /* never closed: a parser that reads it all finds no end */
        add_filler(x->out, (size_t)f->arg * 1024 * 1024);
        break;
    }
    case FAULT_429_RAW:
        set_header(x->req, "Retry-After", f->raw);
        reply_limit_exceeded(x);
        break;
    case FAULT_429_RAWRESET:
        set_header(x->req, "X-RateLimit-Reset", f->raw);
        reply_limit_exceeded(x);
        break;
    case FAULT_503_RAW:
        set_header(x->req, "Retry-After", f->raw);
        reply_text(x, 503, "text/plain", "503 Service Unavailable\n");
        break;
    case FAULT_NOTJSON:
        reply_text(x, 500, "text/html",
                   "<html><head><title>500 Internal Server Error</title></head>"
                   "<body><h1>Internal Server Error</h1></body></html>\n");
        break;
    default:
        break;
    }
}

/* Faults on a request that was otherwise handled normally. */
static void apply_fault_modifier(struct exchange *x, const struct fault *f,
                                 long *delay_ms)
{
    switch (f->kind) {
    case FAULT_REMAINING0:
        set_rate_headers(x, fault_rate_limit(x->srv), 0, f->arg);
        break;
    case FAULT_SLOW:
        *delay_ms += f->arg;
        break;
    case FAULT_REMAINING0_RAW:
        set_header_long(x->req, "X-RateLimit-Limit", fault_rate_limit(x->srv));
        set_header(x->req, "X-RateLimit-Remaining", "0");
        set_header(x->req, "X-RateLimit-Reset", f->raw);
        break;
    case FAULT_BIGHEADER: {
        size_t n = (size_t)f->arg * 1024;
        char *v = xmalloc(n + 1);
        memset(v, 'a', n);
        v[n] = '\0';
        evhttp_add_header(evhttp_request_get_output_headers(x->req),
                          "X-Filler", v);
        free(v);
        break;
    }
    case FAULT_MANYHEADERS: {
        struct evkeyvalq *h = evhttp_request_get_output_headers(x->req);
        char name[32];
        for (long i = 0; i < f->arg; i++) {
            snprintf(name, sizeof name, "X-Filler-%ld", i);
            evhttp_add_header(h, name, "filler");
        }
        break;
    }
    case FAULT_BIGBODY2XX:
        /* the real answer, still valid JSON, with a huge extra field */
        if (x->status >= 200 && x->status < 300 &&
            evbuffer_get_length(x->out) > 0) {
            size_t len = evbuffer_get_length(x->out);
            size_t target = (size_t)f->arg * 1024 * 1024;
            struct evbuffer *padded = evbuffer_new();
            char *copy = xmalloc(len);
            evbuffer_copyout(x->out, copy, len);
            if (copy[len - 1] == '}') {
                evbuffer_add(padded, copy, len - 1);
                evbuffer_add_printf(padded, ",\"padding\":\"");
                add_filler(padded, target > len ? target - len : 1);
                evbuffer_add(padded, "\"}", 2);
                evbuffer_free(x->out);
                x->out = padded;
            } else {
                evbuffer_free(padded);
            }
            free(copy);
        }
        break;
    case FAULT_GARBAGE2XX:
        /* the status and Content-Type stay: a body that lies about itself */
        if (x->status >= 200 && x->status < 300) {
            static const char garbage[] = "<html>ok</html>\x01{\"id\":";
            evbuffer_drain(x->out, evbuffer_get_length(x->out));
            evbuffer_add(x->out, garbage, sizeof garbage - 1);
        }
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* Deferred answers                                                         */

static void pending_unlink(struct pending *p)
{
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        p->srv->pending = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void pending_free(struct pending *p)
{
    if (p->timer != NULL)
        event_free(p->timer);
    if (p->out != NULL)
        evbuffer_free(p->out);
    free(p);
}

/* Ends the connection with a RST instead of a FIN. */
static void abort_connection(struct evhttp_connection *evcon)
{
    int fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    if (fd >= 0) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        struct sockaddr sa = {.sa_family = AF_UNSPEC};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        /* libevent shuts the socket down (a FIN) before it closes it;
         * disconnecting it first makes Linux send the RST right now */
        (void)connect(fd, &sa, sizeof sa);
    }
    evhttp_connection_free(evcon);
}

static void on_pending_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    struct evhttp_connection *evcon = p->evcon;
    (void)fd;
    (void)what;

    pending_unlink(p);
    if (p->action == PENDING_REPLY) {
        evhttp_send_reply(p->req, p->status, reason_phrase(p->status), p->out);
        pending_free(p);
    } else {
        pending_free(p);
        abort_connection(evcon);
    }
}

/* A hung request checks whether its client has hung up; libevent does not
 * watch a connection while its request waits for an answer. */
static void on_hang_poll(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    struct evhttp_connection *evcon = p->evcon;
    struct pollfd pfd = {.events = POLLRDHUP};
    (void)fd;
    (void)what;

    pfd.fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    if (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0 ||
        !(pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
        return;
    if (p->srv->opt.verbose)
        warnx("#%lu: the client gave up", p->n);
    pending_unlink(p);
    pending_free(p);
    evhttp_connection_free(evcon);
}

/* libevent is about to free a connection: forget its pending requests.  A
 * request libevent detached from it (client gone) is ours to free. */
static void on_connection_close(struct evhttp_connection *evcon, void *arg)
{
    struct server *s = arg;
    struct pending *p, *next;
    for (p = s->pending; p != NULL; p = next) {
        next = p->next;
        if (p->evcon != evcon)
            continue;
        if (s->opt.verbose)
            warnx("#%lu: connection closed before the answer", p->n);
        pending_unlink(p);
        if (evhttp_request_get_connection(p->req) == NULL)
            evhttp_request_free(p->req);
        pending_free(p);
    }
}

static void defer(struct exchange *x, enum pending_action action,
                  long delay_ms)
{
    struct server *s = x->srv;
    struct pending *p = xcalloc(1, sizeof *p);
    struct timeval tv;

    p->srv = s;
    p->n = x->n;
    p->req = x->req;
    p->evcon = evhttp_request_get_connection(x->req);
    p->action = action;
    p->status = x->status;
    p->out = x->out;
    x->out = NULL;
    p->next = s->pending;
    if (s->pending != NULL)
        s->pending->prev = p;
    s->pending = p;

    if (action == PENDING_HANG) {
        p->timer = event_new(s->base, -1, EV_PERSIST, on_hang_poll, p);
        delay_ms = HANG_POLL_MS;
    } else {
        p->timer = evtimer_new(s->base, on_pending_timer, p);
    }
    tv.tv_sec = delay_ms / 1000;
    tv.tv_usec = (delay_ms % 1000) * 1000;
    event_add(p->timer, &tv);
}

/* Sends the status line, the headers and half of the body of the answer in
 * X by hand, as if the connection broke in the middle of the body; the RST
 * follows from a timer (so the client reads what came first). */
static void send_half(struct exchange *x)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(x->req);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    struct evkeyvalq *h = evhttp_request_get_output_headers(x->req);
    struct evkeyval *kv;
    struct evbuffer *raw = evbuffer_new();
    size_t len = evbuffer_get_length(x->out);

    evbuffer_add_printf(raw, "HTTP/1.1 %d %s\r\n", x->status,
                        reason_phrase(x->status));
    TAILQ_FOREACH(kv, h, next)
        evbuffer_add_printf(raw, "%s: %s\r\n", kv->key, kv->value);
    evbuffer_add_printf(raw, "Content-Length: %zu\r\n\r\n", len);
    evbuffer_remove_buffer(x->out, raw, len / 2);
    if (x->srv->tls != NULL) {
        bufferevent_write_buffer(bev, raw);
    } else {
        /* straight to the socket: evhttp must not add anything */
        int fd = bufferevent_getfd(bev);
        while (evbuffer_get_length(raw) > 0) {
            int n = evbuffer_write(raw, fd);
            if (n < 0 && errno != EINTR && errno != EAGAIN)
                break;
            if (n < 0 && errno == EAGAIN) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                poll(&pfd, 1, 1000);
            }
        }
    }
    evbuffer_free(raw);
}

/* ------------------------------------------------------------------------ */
/* The request handler                                                      */

/* A cut copy of a string for the request log: at most MAX bytes, never
 * ending inside a UTF-8 sequence. */
static void gen_key_cut(yajl_gen g, const char *key, const char *v,
                        size_t max)
{
    size_t n = strlen(v);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)v[n] & 0xc0) == 0x80)
            n--;
    }
    gen_str(g, key);
    yajl_gen_string(g, (const unsigned char *)v, n);
}

static void log_request(const struct exchange *x, const struct fault *flt)
{
    FILE *f = x->srv->requests_file;
    const char *uri = evhttp_request_get_uri(x->req);
    static const char *const auth_names[] = {"none", "bearer-ok", "bearer-bad"};

    if (f == NULL)
        return;
    yajl_gen g = gen_new();
    yajl_gen_map_open(g);
    gen_key_int(g, "n", (long long)x->n);
    gen_key_ms(g, "t", x->t_ms);
    gen_key_str(g, "method",
                method_name(evhttp_request_get_command(x->req)));
    gen_key_str(g, "path", uri ? uri : "");
    gen_key_str(g, "auth", auth_names[x->auth]);
    gen_key_int(g, "body_bytes", (long long)x->body_len);
    if (flt != NULL)
        gen_key_str(g, "fault", flt->spec);
    if ((x->route == ROUTE_CREATE_POST || x->route == ROUTE_HOOK) &&
        x->body_len > 0 && x->body[0] == '{') {
        yajl_val doc = parse_json(x->body, x->body_len);
        const char *m = NULL, *ppid = NULL;
        if (doc != NULL) {
            if (!obj_string(doc, x->route == ROUTE_HOOK ? "text" : "message",
                            &m))
                m = NULL;
            if (!obj_string(doc, "pending_post_id", &ppid))
                ppid = NULL;
            if (m != NULL)
                gen_key_cut(g, "message", m, 200);
            if (ppid != NULL)
                gen_key_cut(g, "pending_post_id", ppid, 200);
            yajl_tree_free(doc);
        }
    }
    yajl_gen_map_close(g);
    gen_write_line(g, f);
    yajl_gen_free(g);
}

static void read_body(struct exchange *x)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(x->req);
    x->body_len = evbuffer_get_length(in);
    x->body = xmalloc(x->body_len + 1);
    evbuffer_copyout(in, x->body, x->body_len);
    x->body[x->body_len] = '\0';
}

/* Applies the global rate limiter; false (and a 429) when over the limit. */
static bool rate_limit(struct exchange *x)
{
    struct server *s = x->srv;
    struct limit_result r;

    if (!s->rate_limited)
        return true;
    limiter_take(&s->limiter, x->mono, &r);
    set_rate_headers(x, s->limiter.limit, r.remaining,
                     ceil_seconds(r.reset_after));
    if (r.allowed)
        return true;
    set_header_long(x->req, "Retry-After", ceil_seconds(r.retry_after));
    reply_limit_exceeded(x);
    return false;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct exchange x = {.srv = s, .req = req};
    const struct fault *f;
    long delay_ms = s->opt.latency_ms;

    if (s->stopping && evcon != NULL) {
        /* Going away: this one is not handled, just cut off. */
        evhttp_connection_set_closecb(evcon, on_connection_close, s);
        x.out = evbuffer_new();
        defer(&x, PENDING_RESET, 0);
        if (x.out != NULL)
            evbuffer_free(x.out);
        return;
    }
    x.n = ++s->nrequests;
    x.t_ms = wall_ms();
    x.mono = mono_s();
    x.out = evbuffer_new();
    new_id(x.request_id);
    if (evcon != NULL)
        evhttp_connection_set_closecb(evcon, on_connection_close, s);
    read_body(&x);
    x.auth = check_auth(s, req);
    classify_route(&x);
    f = find_fault(s, x.n,
                   evhttp_request_get_command(req) == EVHTTP_REQ_GET
                       ? ++s->ngets
                       : 0);
    log_request(&x, f);
    set_header(req, "X-Request-Id", x.request_id);

    if (f != NULL && (f->kind == FAULT_RESET || f->kind == FAULT_HANG) &&
        evcon != NULL) {
        if (s->opt.verbose)
            warnx("#%lu %s %s -> %s", x.n,
                  method_name(evhttp_request_get_command(req)),
                  evhttp_request_get_uri(req),
                  f->kind == FAULT_RESET ? "reset" : "hang");
        defer(&x, f->kind == FAULT_RESET ? PENDING_RESET : PENDING_HANG,
              delay_ms);
        goto done;
    }
    if (f != NULL && fault_replaces_answer(f)) {
        apply_fault_answer(&x, f);
    } else {
        if (rate_limit(&x))
            route_request(&x);
        if (f != NULL)
            apply_fault_modifier(&x, f, &delay_ms);
    }
    if (s->opt.verbose)
        warnx("#%lu %s %s -> %d%s", x.n,
              method_name(evhttp_request_get_command(req)),
              evhttp_request_get_uri(req), x.status,
              delay_ms > 0 ? " (delayed)" : "");

    if (f != NULL && (f->kind == FAULT_HALFBODY ||
                      f->kind == FAULT_HALFBODY500) && evcon != NULL) {
        send_half(&x);
        defer(&x, PENDING_RESET, delay_ms + 100);
    } else if (delay_ms > 0 && evcon != NULL)
        defer(&x, PENDING_REPLY, delay_ms);
    else
        evhttp_send_reply(req, x.status, reason_phrase(x.status), x.out);
done:
    if (x.out != NULL)
        evbuffer_free(x.out);
    free(x.body);
}

/* ------------------------------------------------------------------------ */
/* Setup and teardown                                                       */

static struct bufferevent *tls_bevcb(struct event_base *base, void *arg)
{
    SSL *ssl = SSL_new(arg);
    struct bufferevent *bev;
    if (ssl == NULL)
        return NULL; /* evhttp falls back to a plain socket: the TLS client fails */
    bev = bufferevent_openssl_socket_new(base, -1, ssl,
                                         BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* clients that just close the socket are normal, not errors */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static SSL_CTX *tls_context(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL ||
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        warnx("cannot set up TLS with %s and %s:", cert, key);
        ERR_print_errors_fp(stderr);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static bool write_port_file(const char *path, int port)
{
    size_t n = strlen(path) + 5;
    char *tmp = xmalloc(n);
    FILE *f;
    bool ok;

    snprintf(tmp, n, "%s.tmp", path);
    f = fopen(tmp, "w");
    ok = f != NULL;
    if (ok) {
        ok = fprintf(f, "%d\n", port) > 0;
        ok = (fclose(f) == 0) && ok;
    }
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        warnx("cannot write port file %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return ok;
}

static int bound_port(struct evhttp_bound_socket *handle)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd = evhttp_bound_socket_get_fd(handle);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static FILE *open_log(const char *path)
{
    FILE *f = fopen(path, "a");
    if (f == NULL)
        warnx("cannot open %s: %s", path, strerror(errno));
    return f;
}

/* Stop listening at once; give answers already made a moment to go out
 * (a post created must not lose its answer); a second signal ends it now. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    struct timeval tv = {0, 100 * 1000};
    (void)sig;
    (void)what;
    if (s->stopping) {
        event_base_loopbreak(s->base);
        return;
    }
    s->stopping = true;
    if (s->listener != NULL) {
        evhttp_del_accept_socket(s->http, s->listener);
        s->listener = NULL;
    }
    event_base_loopexit(s->base, &tv);
}

static bool server_start(struct server *s)
{
    const struct options *o = &s->opt;
    struct evhttp_bound_socket *handle;
    int port;

    if (o->posts_path != NULL &&
        (s->posts_file = open_log(o->posts_path)) == NULL)
        return false;
    if (o->requests_path != NULL &&
        (s->requests_file = open_log(o->requests_path)) == NULL)
        return false;
    if (o->rate_per_sec > 0) {
        s->rate_limited = true;
        s->limiter.interval = 1.0 / o->rate_per_sec;
        s->limiter.tolerance = s->limiter.interval * (double)(o->burst + 1);
        s->limiter.limit = o->burst + 1;
    }

    s->base = event_base_new();
    if (s->base == NULL) {
        warnx("cannot create the event loop");
        return false;
    }
    s->http = evhttp_new(s->base);
    if (s->http == NULL) {
        warnx("cannot create the HTTP server");
        return false;
    }
    if (o->tls_cert != NULL) {
        s->tls = tls_context(o->tls_cert, o->tls_key);
        if (s->tls == NULL)
            return false;
        evhttp_set_bevcb(s->http, tls_bevcb, s->tls);
    }
    evhttp_set_max_body_size(s->http, HTTP_MAX_BODY);
    evhttp_set_max_headers_size(s->http, HTTP_MAX_HEADERS);
    /* like the real server: idle keep-alive connections go after 60 s */
    evhttp_set_timeout(s->http, 60);
    /* let every method reach us, so that a wrong one gets our 405 */
    evhttp_set_allowed_methods(
        s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                     EVHTTP_REQ_TRACE | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(s->http, on_request, s);

    handle = evhttp_bind_socket_with_handle(s->http, o->listen_host,
                                            (ev_uint16_t)o->listen_port);
    s->listener = handle;
    if (handle == NULL) {
        warnx("cannot listen on %s:%d: %s", o->listen_host, o->listen_port,
              strerror(errno));
        return false;
    }
    port = bound_port(handle);
    if (port < 0) {
        warnx("cannot find the port listened on: %s", strerror(errno));
        return false;
    }
    if (o->port_file != NULL && !write_port_file(o->port_file, port))
        return false;
    fprintf(stderr, PROG ": listening on %s://%s%s%s:%d\n",
            s->tls ? "https" : "http", strchr(o->listen_host, ':') ? "[" : "",
            o->listen_host, strchr(o->listen_host, ':') ? "]" : "", port);
    return true;
}

static void server_free(struct server *s)
{
    /* Timers first; requests still attached to a connection are freed with
     * it by evhttp_free (whose close callbacks then find nothing left). */
    while (s->pending != NULL) {
        struct pending *p = s->pending;
        pending_unlink(p);
        pending_free(p);
    }
    if (s->http != NULL)
        evhttp_free(s->http);
    if (s->tls != NULL)
        SSL_CTX_free(s->tls);
    if (s->base != NULL)
        event_base_free(s->base);
    for (size_t i = 0; i < s->nposts; i++) {
        free(s->posts[i].channel_id);
        free(s->posts[i].json);
    }
    free(s->posts);
    dedupe_clear(&s->dedupe);
    if (s->posts_file != NULL)
        fclose(s->posts_file);
    if (s->requests_file != NULL)
        fclose(s->requests_file);
    options_free(&s->opt);
}

int main(int argc, char **argv)
{
    struct server *s = xcalloc(1, sizeof *s);
    struct event *sigterm = NULL, *sigint = NULL;
    bool done;
    int status = parse_options(argc, argv, &s->opt, &done);

    if (status != 0 || done) {
        options_free(&s->opt);
        free(s);
        return status;
    }
    /* a client that goes away mid-answer must not kill us */
    signal(SIGPIPE, SIG_IGN);

    if (!server_start(s)) {
        status = 1;
        goto out;
    }
    sigterm = evsignal_new(s->base, SIGTERM, on_signal, s);
    sigint = evsignal_new(s->base, SIGINT, on_signal, s);
    if (sigterm == NULL || sigint == NULL || event_add(sigterm, NULL) != 0 ||
        event_add(sigint, NULL) != 0) {
        warnx("cannot set up signal handling");
        status = 1;
        goto out;
    }
    if (event_base_dispatch(s->base) < 0) {
        warnx("event loop failed");
        status = 1;
    }
out:
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    server_free(s);
    free(s);
    libevent_global_shutdown();
    return status;
}
