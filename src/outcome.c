/*
 * outcome.c: what an answer from Mattermost means.
 *
 * Pure functions: a response (curl code, status, a few headers, the body) in,
 * a verdict out; Retry-After parsing; backoff and pacing arithmetic.  Time is
 * passed in.  Nothing here does I/O or keeps state; the only outside call is
 * random_between() for the backoff jitter.
 *
 * The classification (see the Delivery section of the interface and the
 * Mattermost reference):
 *
 *   no answer (curl error)     BACKOFF, except errors that waiting cannot
 *                              heal (untrusted certificate, unreadable
 *                              ca_file, malformed URL...): BLOCK
 *   2xx                        DELIVERED; X-RateLimit-Remaining: 0 holds
 *                              the next request for X-RateLimit-Reset s
 *                              (also when curl failed after a 2xx status
 *                              line: the post exists, do not repeat it)
 *   3xx                        BLOCK: a redirect we do not follow means a
 *                              wrong URL, and waiting will not change it
 *   401, 403, 501, 404, 405,   BLOCK: the target cannot send, the row is
 *   407, webhook 400 "invalid" not at fault
 *   408, 425                   BACKOFF: the server gave up on a slow request
 *   429                        RATE_LIMITED, wait from Retry-After, else
 *                              X-RateLimit-Reset, else the engine backs off
 *   other 4xx                  SET_ASIDE with the status, id and message
 *   5xx (except 501)           BACKOFF (a 503's Retry-After, if any, is
 *                              passed on in wait_ms)
 *   1xx, anything else         BACKOFF: unknown, so resend; never drop
 *
 * Reasons end up in logs, the status socket and .errors files.  They are
 * bounded, valid UTF-8 with no control characters, and never carry a URL
 * (a webhook URL is a secret): anything looking like one is replaced.
 */

#include <ctype.h>
#include <stdarg.h>
#include <string.h>

#include <curl/curl.h>

#include "mmsyncd.h"

/* Only this much of a body is ever looked at. */
#define OUTCOME_MAX_BODY	(64u * 1024)
/* Longest piece of a non-JSON body quoted in a reason. */
#define OUTCOME_SNIPPET		100
/* An AppError is flat; anything nested deeper is not one (and deep trees
 * would make yajl_tree_free recurse). */
#define OUTCOME_MAX_JSON_DEPTH	16

/* What the body told us. */
struct body_info {
	bool	 json_object;		/* it parsed as a JSON object */
	char	 id[128];		/* AppError id, printable ASCII */
	char	 message[320];		/* AppError message, or a snippet */
};

/* ------------------------------------------------------------ characters */

static bool
is_ws(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
to_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

/* Case-insensitive (ASCII) substring test; not locale-dependent. */
static bool
contains_nocase(const char *hay, const char *needle)
{
	size_t	 i, n = strlen(needle);

	if (hay == NULL)
		return false;
	for (; *hay != '\0'; hay++) {
		for (i = 0; i < n; i++) {
			if (hay[i] == '\0' ||
			    to_lower((unsigned char)hay[i]) !=
			    to_lower((unsigned char)needle[i]))
				break;
		}
		if (i == n)
			return true;
	}
	return false;
}

/*
 * If S ends in the middle of a UTF-8 sequence (it was cut), drop the
 * incomplete sequence.
 */
static void
utf8_trim_incomplete(char *s)
{
	size_t		 len = strlen(s), p, need;
	unsigned char	 c;

	p = len;
	while (p > 0 && len - p < 4 && ((unsigned char)s[p - 1] & 0xc0) == 0x80)
		p--;
	if (p == 0)
		return;
	c = (unsigned char)s[p - 1];
	if (c < 0x80)
		return;			/* ASCII: complete */
	if ((c & 0xe0) == 0xc0)
		need = 2;
	else if ((c & 0xf0) == 0xe0)
		need = 3;
	else if ((c & 0xf8) == 0xf0)
		need = 4;
	else
		need = 1;		/* stray byte: drop it */
	if (p - 1 + need != len)
		s[p - 1] = '\0';
}

/*
 * Copy at most LEN bytes of text into DST (size DSTSZ, always terminated),
 * cut at a UTF-8 boundary.  Control characters become spaces; when ASCII is
 * true, every byte outside printable ASCII becomes '?'.
 */
static void
copy_text(char *dst, size_t dstsz, const char *src, size_t len, bool ascii)
{
	size_t		 i;
	unsigned char	 c;

	if (dstsz == 0)
		return;
	if (len > dstsz - 1)
		len = dstsz - 1;
	for (i = 0; i < len; i++) {
		c = (unsigned char)src[i];
		if (c < 0x20 || c == 0x7f)
			dst[i] = ascii ? '?' : ' ';
		else if (ascii && c >= 0x80)
			dst[i] = '?';
		else
			dst[i] = (char)c;
	}
	dst[len] = '\0';
	if (!ascii) {
		utf8_trim_incomplete(dst);
		utf8_scrub(dst);
	}
}

/* Error ids are dotted words (api.context.session_expired.app_error):
 * anything else in one, a URL say, is not repeated. */
static void
id_scrub(char *id)
{
	for (; *id != '\0'; id++)
		if (!isalnum((unsigned char)*id) && *id != '.' && *id != '_' &&
		    *id != '-')
			*id = '?';
}

/*
 * A short, printable-ASCII picture of a body that is not an AppError:
 * whitespace runs collapse to one space, other bytes outside printable ASCII
 * become '?', at most OUTCOME_SNIPPET bytes then "...".
 */
static void
body_snippet(char *dst, size_t dstsz, const char *body, size_t len)
{
	size_t		 i, o = 0, max;
	unsigned char	 c;
	bool		 space = false, cut = false;

	max = dstsz - 4;		/* room for "..." and the NUL */
	if (max > OUTCOME_SNIPPET)
		max = OUTCOME_SNIPPET;
	if (len > OUTCOME_MAX_BODY)
		len = OUTCOME_MAX_BODY;
	for (i = 0; i < len; i++) {
		c = (unsigned char)body[i];
		if (is_ws(c)) {
			space = o > 0;
			continue;
		}
		if (o + (space ? 2 : 1) > max) {
			cut = true;
			break;
		}
		if (space)
			dst[o++] = ' ';
		space = false;
		dst[o++] = (c > 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (cut)
		memcpy(dst + o, "...", 3), o += 3;
	dst[o] = '\0';
}

/* Does W (LEN bytes) contain NEEDLE?  Its offset, or -1. */
static long
find_in(const char *w, size_t len, const char *needle)
{
	size_t	 i, n = strlen(needle);

	for (i = 0; i + n <= len; i++) {
		if (memcmp(w + i, needle, n) == 0)
			return (long)i;
	}
	return -1;
}

/*
 * Replace anything that looks like a URL ("scheme://...") with "[url]", and
 * the part after "/hooks/" (a webhook id is its secret) with "[redacted]".
 * Works on words separated by spaces, quotes and angle brackets.
 */
static void
scrub_urls(char *s, size_t size)
{
	char		 out[1024];
	const char	*p = s, *w;
	size_t		 o = 0, wl, n;
	long		 h;

#define PUT(src, len) do {						\
	n = (len);							\
	if (n > sizeof out - 1 - o)					\
		n = sizeof out - 1 - o;					\
	memcpy(out + o, (src), n);					\
	o += n;								\
} while (0)
#define IS_SEP(c) ((c) == ' ' || (c) == '"' || (c) == '\'' ||		\
	(c) == '<' || (c) == '>' || (c) == '(' || (c) == ')')

	while (*p != '\0') {
		if (IS_SEP(*p)) {
			PUT(p, 1);
			p++;
			continue;
		}
		w = p;
		while (*p != '\0' && !IS_SEP(*p))
			p++;
		wl = (size_t)(p - w);
		if (find_in(w, wl, "://") >= 0)
			PUT("[url]", 5);
		else if ((h = find_in(w, wl, "/hooks/")) >= 0 &&
		    (size_t)h + 7 < wl) {
			PUT(w, (size_t)h + 7);
			PUT("[redacted]", 10);
		} else
			PUT(w, wl);
	}
	out[o] = '\0';
#undef PUT
#undef IS_SEP
	copy_text(s, size, out, o, false);
}

/* ----------------------------------------------------------------- body */

/*
 * True when the JSON text never nests deeper than OUTCOME_MAX_JSON_DEPTH
 * (brackets inside strings do not count).
 */
static bool
json_depth_ok(const char *s, size_t len)
{
	size_t	 i, depth = 0;
	bool	 in_str = false, esc = false;

	for (i = 0; i < len; i++) {
		if (in_str) {
			if (esc)
				esc = false;
			else if (s[i] == '\\')
				esc = true;
			else if (s[i] == '"')
				in_str = false;
			continue;
		}
		switch (s[i]) {
		case '"':
			in_str = true;
			break;
		case '{':
		case '[':
			if (++depth > OUTCOME_MAX_JSON_DEPTH)
				return false;
			break;
		case '}':
		case ']':
			if (depth > 0)
				depth--;
			break;
		}
	}
	return true;
}

/*
 * Read the AppError ({"id": ..., "message": ...}) out of a body, or failing
 * that a snippet of it.  The body is NUL-terminated at body_len (it may also
 * hold NULs before that: yajl then sees less, which is harmless).
 */
static void
body_read(const struct response *r, struct body_info *bi)
{
	static const char *id_path[] = { "id", NULL };
	static const char *msg_path[] = { "message", NULL };
	const char	*body = r->body != NULL ? r->body : "";
	size_t		 len = r->body != NULL ? r->body_len : 0, i;
	char		 err[64];
	yajl_val	 root, v;
	bool		 json;

	memset(bi, 0, sizeof *bi);
	for (i = 0; i < len && i < OUTCOME_MAX_BODY && is_ws(body[i]); i++)
		;
	json = contains_nocase(r->content_type, "json") ||
	    (i < len && body[i] == '{');
	/* An AppError is small: a body over the limit is not one. */
	if (json && len > 0 && len <= OUTCOME_MAX_BODY &&
	    json_depth_ok(body, len) &&
	    (root = yajl_tree_parse(body, err, sizeof err)) != NULL) {
		if (YAJL_IS_OBJECT(root)) {
			bi->json_object = true;
			v = yajl_tree_get(root, id_path, yajl_t_string);
			if (v != NULL && v->u.string != NULL) {
				copy_text(bi->id, sizeof bi->id, v->u.string,
				    strlen(v->u.string), true);
				id_scrub(bi->id);
			}
			v = yajl_tree_get(root, msg_path, yajl_t_string);
			if (v != NULL && v->u.string != NULL)
				copy_text(bi->message, sizeof bi->message,
				    v->u.string, strlen(v->u.string), false);
		}
		yajl_tree_free(root);
	}
	if (bi->id[0] == '\0' && bi->message[0] == '\0')
		body_snippet(bi->message, sizeof bi->message, body, len);
	scrub_urls(bi->message, sizeof bi->message);
}

/* --------------------------------------------------------------- headers */

/*
 * Parse the first value of a header that may have been joined ("5, 5"): an
 * optionally signed integer with surrounding space.  Saturates.
 */
static int
header_first_int(const char *v, int64_t *out)
{
	int64_t	 n = 0;
	bool	 neg = false, any = false;

	if (v == NULL)
		return -1;
	while (is_ws(*v))
		v++;
	if (*v == '-' || *v == '+')
		neg = (*v++ == '-');
	for (; is_digit(*v); v++) {
		any = true;
		if (n < INT64_MAX / 10 - 9)
			n = n * 10 + (*v - '0');
		else
			n = INT64_MAX / 10;
	}
	while (is_ws(*v))
		v++;
	if (!any || (*v != '\0' && *v != ','))
		return -1;
	*out = neg ? -n : n;
	return 0;
}

/* Seconds to milliseconds, clamped to [0, OUTCOME_MAX_WAIT_MS]. */
static uint64_t
secs_to_wait(int64_t secs)
{
	if (secs <= 0)
		return 0;
	if ((uint64_t)secs >= OUTCOME_MAX_WAIT_MS / 1000)
		return OUTCOME_MAX_WAIT_MS;
	return (uint64_t)secs * 1000;
}

/* "5 s", or "4877 ms" when not a whole number of seconds. */
static void
format_wait(uint64_t ms, char *out, size_t outsz)
{
	if (ms % 1000 == 0)
		snprintf(out, outsz, "%llu s", (unsigned long long)(ms / 1000));
	else
		snprintf(out, outsz, "%llu ms", (unsigned long long)ms);
}

/* ------------------------------------------------------------ HTTP dates */

static const char *const month_names[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};
static const char *const day_names[7] = {
	"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun",
};
static const char *const day_names_long[7] = {
	"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
	"Sunday",
};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t		 era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* The year of a day count since 1970-01-01. */
static int64_t
year_from_days(int64_t z)
{
	int64_t		 era, doe, yoe, doy, mp, y;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	return y + (mp >= 10);
}

static int
days_in_month(int64_t y, int m)
{
	static const int days[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};

	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return 29;
	return days[m - 1];
}

/* Match WORD (case-insensitively) at *P and step over it. */
static bool
take_word(const char **p, const char *word)
{
	size_t	 i;

	for (i = 0; word[i] != '\0'; i++) {
		if (to_lower((unsigned char)(*p)[i]) !=
		    to_lower((unsigned char)word[i]))
			return false;
	}
	*p += i;
	return true;
}

static bool
take_char(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/* At least one space or tab. */
static bool
take_space(const char **p)
{
	if (**p != ' ' && **p != '\t')
		return false;
	while (**p == ' ' || **p == '\t')
		(*p)++;
	return true;
}

/* Between MIN and MAX digits. */
static bool
take_num(const char **p, int min, int max, int *out)
{
	int	 n = 0, i;

	for (i = 0; i < max && is_digit((*p)[i]); i++)
		n = n * 10 + ((*p)[i] - '0');
	if (i < min || is_digit((*p)[i]))
		return false;
	*p += i;
	*out = n;
	return true;
}

static bool
take_month(const char **p, int *m)
{
	int	 i;

	for (i = 0; i < 12; i++) {
		if (take_word(p, month_names[i])) {
			*m = i + 1;
			return true;
		}
	}
	return false;
}

/* "08:49:37" */
static bool
take_time(const char **p, int *h, int *mi, int *s)
{
	return take_num(p, 2, 2, h) && take_char(p, ':') &&
	    take_num(p, 2, 2, mi) && take_char(p, ':') &&
	    take_num(p, 2, 2, s) && *h <= 23 && *mi <= 59 && *s <= 60;
}

/*
 * An HTTP-date (RFC 9110 5.6.7) at *P in any of its three forms:
 *   IMF-fixdate  Sun, 06 Nov 1994 08:49:37 GMT
 *   RFC 850      Sunday, 06-Nov-94 08:49:37 GMT
 *   asctime      Sun Nov  6 08:49:37 1994
 * Seconds since the epoch in *SECS; *P moves past it.  A two-digit year is
 * the one nearest NOW_YEAR that is not more than 50 years ahead.
 */
static bool
parse_http_date(const char **p, int64_t now_year, int64_t *secs)
{
	const char	*q = *p;
	int		 i, d = 0, m = 0, y = 0, h = 0, mi = 0, s = 0;
	int64_t		 year = 0;
	bool		 wday = false;

	for (i = 0; i < 7 && !wday; i++) {
		if (take_word(&q, day_names_long[i])) {
			/* RFC 850 */
			if (!take_char(&q, ',') || !take_space(&q) ||
			    !take_num(&q, 1, 2, &d) || !take_char(&q, '-') ||
			    !take_month(&q, &m) || !take_char(&q, '-') ||
			    !take_num(&q, 2, 2, &y) || !take_space(&q) ||
			    !take_time(&q, &h, &mi, &s) || !take_space(&q) ||
			    !take_word(&q, "GMT"))
				return false;
			year = now_year - now_year % 100 + y;
			if (year > now_year + 50)
				year -= 100;
			wday = true;
		}
	}
	for (i = 0; i < 7 && !wday; i++) {
		if (!take_word(&q, day_names[i]))
			continue;
		wday = true;
		if (take_char(&q, ',')) {
			/* IMF-fixdate */
			if (!take_space(&q) || !take_num(&q, 1, 2, &d) ||
			    !take_space(&q) || !take_month(&q, &m) ||
			    !take_space(&q) || !take_num(&q, 4, 4, &y) ||
			    !take_space(&q) || !take_time(&q, &h, &mi, &s) ||
			    !take_space(&q) || !take_word(&q, "GMT"))
				return false;
		} else {
			/* asctime */
			if (!take_space(&q) || !take_month(&q, &m) ||
			    !take_space(&q) || !take_num(&q, 1, 2, &d) ||
			    !take_space(&q) || !take_time(&q, &h, &mi, &s) ||
			    !take_space(&q) || !take_num(&q, 4, 4, &y))
				return false;
		}
		year = y;
	}
	if (!wday || d < 1 || d > days_in_month(year, m))
		return false;
	*secs = days_from_civil(year, m, d) * 86400 + h * 3600 + mi * 60 + s;
	*p = q;
	return true;
}

/* ------------------------------------------------------------------- API */

int
outcome_parse_retry_after(const char *v, uint64_t now_wall_ms, uint64_t *ms)
{
	uint64_t	 secs = 0, target;
	int64_t		 date = 0;
	bool		 digits = false;

	if (v == NULL)
		return -1;
	while (is_ws(*v))
		v++;
	if (is_digit(*v)) {
		/* delta-seconds; saturate far beyond the clamp */
		for (; is_digit(*v); v++) {
			digits = true;
			if (secs < OUTCOME_MAX_WAIT_MS)
				secs = secs * 10 + (uint64_t)(*v - '0');
		}
	} else if (!parse_http_date(&v,
	    year_from_days((int64_t)(now_wall_ms / 1000 / 86400)), &date))
		return -1;
	while (is_ws(*v))
		v++;
	/* The end, or a repeated header joined with a comma. */
	if (*v != '\0' && *v != ',')
		return -1;
	if (digits) {
		*ms = secs >= OUTCOME_MAX_WAIT_MS / 1000 ?
		    OUTCOME_MAX_WAIT_MS : secs * 1000;
		return 0;
	}
	if (date <= 0)
		target = 0;
	else
		target = (uint64_t)date * 1000;
	if (target <= now_wall_ms)
		*ms = 0;
	else if (target - now_wall_ms > OUTCOME_MAX_WAIT_MS)
		*ms = OUTCOME_MAX_WAIT_MS;
	else
		*ms = target - now_wall_ms;
	return 0;
}

static void MMS_PRINTF(2, 3)
set_reason(struct outcome *out, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof out->reason, fmt, ap);
	va_end(ap);
	utf8_trim_incomplete(out->reason);
}

/* A libcurl failure: there was no (complete) answer. */
static void
classify_transport(const struct response *r, struct outcome *out)
{
	const char	*what, *cerr;
	char		 detail[256];
	enum verdict	 v = VERDICT_BACKOFF;

	cerr = r->curl_error != NULL && r->curl_error[0] != '\0' ?
	    r->curl_error : curl_easy_strerror((CURLcode)r->curl_code);
	copy_text(detail, sizeof detail, cerr, strlen(cerr), false);
	scrub_urls(detail, sizeof detail);

	switch (r->curl_code) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_ISSUER_ERROR:
		out->verdict = VERDICT_BLOCK;
		set_reason(out, "certificate not trusted: set ca_file (%s)",
		    detail);
		return;
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CRL_BADFILE:
		out->verdict = VERDICT_BLOCK;
		set_reason(out, "cannot read ca_file (%s)", detail);
		return;

	/* Configuration errors: waiting will not heal them. */
	case CURLE_UNSUPPORTED_PROTOCOL:
		v = VERDICT_BLOCK;
		what = "unsupported protocol: the URL must start with "
		    "https:// or http://";
		break;
	case CURLE_URL_MALFORMAT:
		v = VERDICT_BLOCK;
		what = "malformed URL: check server_url or webhook_url";
		break;
	case CURLE_NOT_BUILT_IN:
		v = VERDICT_BLOCK;
		what = "feature not built into libcurl";
		break;
	case CURLE_TOO_MANY_REDIRECTS:
		v = VERDICT_BLOCK;
		what = "too many redirects: check server_url or webhook_url";
		break;
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		v = VERDICT_BLOCK;
		what = "pinned public key does not match";
		break;

	/* Transient, or at least possibly so: back off and resend. */
	case CURLE_OPERATION_TIMEDOUT:
		what = "timeout";
		break;
	case CURLE_COULDNT_CONNECT:
		what = "connection refused or host unreachable";
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
		what = "cannot resolve host";
		break;
	case CURLE_COULDNT_RESOLVE_PROXY:
		what = "cannot resolve proxy";
		break;
	case CURLE_RECV_ERROR:
		what = "connection reset (receive failed)";
		break;
	case CURLE_SEND_ERROR:
		what = "connection reset (send failed)";
		break;
	case CURLE_GOT_NOTHING:
		what = "connection closed without an answer";
		break;
	case CURLE_PARTIAL_FILE:
		what = "answer cut short";
		break;
	case CURLE_SSL_CONNECT_ERROR:
		what = "TLS handshake failed";
		break;
	case CURLE_WEIRD_SERVER_REPLY:
		what = "malformed answer";
		break;
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
		what = "HTTP/2 or HTTP/3 protocol error";
		break;
	case CURLE_OUT_OF_MEMORY:
		what = "out of memory";
		break;
	default:
		what = "transfer failed";
		break;
	}
	out->verdict = v;
	set_reason(out, "%s (curl %d: %s)", what, r->curl_code, detail);
}

/* A 4xx that blocks the target, or NULL when the row is at fault. */
static const char *
block_reason_4xx(long status, enum auth_kind auth, const char *id)
{
	switch (status) {
	case 400:
		if (auth == AUTH_WEBHOOK &&
		    strcmp(id, "web.incoming_webhook.invalid.app_error") == 0)
			return "webhook not found or deleted";
		return NULL;
	case 401:
		if (auth == AUTH_WEBHOOK)
			return "unauthorized";
		return "token revoked or personal access tokens disabled "
		    "(System Console > Integrations > Integration Management)";
	case 403:
		if (auth == AUTH_TOKEN)
			return "channel id not found or no permission: use the "
			    "id from View Info, not the display name; the user "
			    "must be a member with create_post";
		if (strstr(id, "channel_locked") != NULL)
			return "webhook is locked to another channel: remove "
			    "the channel override";
		if (strstr(id, "permissions") != NULL)
			return "webhook owner cannot post in that channel";
		return "forbidden: the webhook may not post there";
	case 404:
		if (auth == AUTH_TOKEN)
			return "not a Mattermost API: check server_url";
		if (strcmp(id, "web.incoming_webhook.channel.app_error") == 0)
			return "channel name not found in the webhook's team: "
			    "use the channel's URL name, not its display name";
		/* Not Mattermost's own answer: a proxy, or a wrong path. */
		return "not found: check webhook_url, and that channel is "
		    "the channel's URL name, not its display name";
	case 405:
		/* POST refused: the URL does not lead to Mattermost. */
		return auth == AUTH_TOKEN ?
		    "method not allowed: check server_url" :
		    "method not allowed: check webhook_url";
	case 407:
		return "proxy authentication required";
	}
	return NULL;
}

void
outcome_classify(const struct response *r, enum auth_kind auth,
    uint64_t now_wall_ms, struct outcome *out)
{
	struct body_info bi;
	const char	*block, *url_key;
	char		 w[32], idpart[160];
	int64_t		 n;
	long		 st = r->status;

	memset(out, 0, sizeof *out);
	out->status = st;
	url_key = auth == AUTH_TOKEN ? "server_url" : "webhook_url";

	/*
	 * A curl error after a 2xx status line: the server accepted the post
	 * (Mattermost answers after saving it) and only the rest of the answer
	 * was lost.  Count it delivered rather than post it twice.  Any other
	 * curl error means no usable answer.
	 */
	if (r->curl_code != 0 && !(st >= 200 && st <= 299)) {
		classify_transport(r, out);
		return;
	}

	if (st >= 200 && st <= 299) {
		out->verdict = VERDICT_DELIVERED;
		if (header_first_int(r->ratelimit_remaining, &n) == 0 &&
		    n <= 0) {
			out->has_wait = true;
			if (header_first_int(r->ratelimit_reset, &n) == 0)
				out->wait_ms = secs_to_wait(n);
			else
				out->wait_ms = 1000;
			format_wait(out->wait_ms, w, sizeof w);
			set_reason(out, "delivered (%ld); rate limit reached, "
			    "next request in %s", st, w);
		} else
			set_reason(out, "delivered (%ld)", st);
		if (r->curl_code != 0) {
			size_t l = strlen(out->reason);
			snprintf(out->reason + l, sizeof out->reason - l,
			    "; answer then lost (curl %d)", r->curl_code);
		}
		return;
	}

	if (st >= 300 && st <= 399) {
		/* We follow no redirects: the URL is wrong (http vs https, a
		 * moved server).  Waiting will not change that. */
		out->verdict = VERDICT_BLOCK;
		set_reason(out, "unexpected redirect (%ld): check %s", st,
		    url_key);
		return;
	}

	if (st < 400 || st > 599) {
		/* No status, 1xx or beyond 5xx: unknown, so resend. */
		out->verdict = VERDICT_BACKOFF;
		set_reason(out, "unexpected answer (status %ld)", st);
		return;
	}

	body_read(r, &bi);
	memcpy(out->error_id, bi.id, sizeof out->error_id);
	if (bi.id[0] != '\0')
		snprintf(idpart, sizeof idpart, " %s", bi.id);
	else
		idpart[0] = '\0';

	if (st == 429) {
		out->verdict = VERDICT_RATE_LIMITED;
		if (outcome_parse_retry_after(r->retry_after, now_wall_ms,
		    &out->wait_ms) == 0) {
			out->has_wait = true;
			format_wait(out->wait_ms, w, sizeof w);
			set_reason(out, "rate limited (429), retry after %s", w);
		} else if (header_first_int(r->ratelimit_reset, &n) == 0 &&
		    n >= 0) {
			out->has_wait = true;
			out->wait_ms = secs_to_wait(n);
			format_wait(out->wait_ms, w, sizeof w);
			set_reason(out, "rate limited (429), retry after %s "
			    "(X-RateLimit-Reset)", w);
		} else
			set_reason(out, "rate limited (429), no usable "
			    "Retry-After: backing off");
		return;
	}

	if (st == 501) {
		out->verdict = VERDICT_BLOCK;
		set_reason(out, "%s (501%s)", auth == AUTH_WEBHOOK ?
		    "incoming webhooks disabled (System Console > Integrations)" :
		    "not implemented", idpart);
		return;
	}

	if (st >= 500) {
		/* Includes 500 api.post.deduplicate_create_post.pending: the
		 * first copy is still being saved; resending is safe. */
		out->verdict = VERDICT_BACKOFF;
		if (st == 503 && outcome_parse_retry_after(r->retry_after,
		    now_wall_ms, &out->wait_ms) == 0)
			out->has_wait = true;
		set_reason(out, "server error %ld%s%s%s", st, idpart,
		    bi.message[0] != '\0' ? ": " : "", bi.message);
		return;
	}

	if (st == 408 || st == 425) {
		/* The server gave up waiting for us; nothing wrong with the
		 * row. */
		out->verdict = VERDICT_BACKOFF;
		set_reason(out, "request timeout (%ld)", st);
		return;
	}

	if ((block = block_reason_4xx(st, auth, bi.id)) != NULL) {
		out->verdict = VERDICT_BLOCK;
		set_reason(out, "%s (%ld%s)", block, st, idpart);
		return;
	}

	/* Any other 4xx: this row is refused; set it aside. */
	out->verdict = VERDICT_SET_ASIDE;
	set_reason(out, "%ld%s%s%s", st, idpart,
	    bi.message[0] != '\0' ? ": " : "", bi.message);
}

uint64_t
backoff_delay(unsigned n, uint64_t min_ms, uint64_t max_ms)
{
	uint64_t	 cap;
	unsigned	 shift;

	if (n == 0)
		n = 1;
	if (max_ms < min_ms)
		max_ms = min_ms;
	shift = n - 1;
	if (min_ms == 0)
		cap = 0;		/* no base, no growth */
	else if (shift >= 64 || min_ms > (max_ms >> shift))
		cap = max_ms;
	else
		cap = min_ms << shift;	/* <= max_ms, no overflow */
	return random_between(min_ms, cap);
}

uint64_t
pace_next_start(uint64_t last_start_ms, uint64_t interval_ms,
    uint64_t answered_ms)
{
	uint64_t	 next = last_start_ms + interval_ms;

	if (next < last_start_ms)
		next = UINT64_MAX;
	return next > answered_ms ? next : answered_ms;
}
