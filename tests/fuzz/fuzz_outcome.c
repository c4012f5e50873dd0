/*
 * fuzz_outcome: outcome_classify() on arbitrary HTTP answers, and
 * outcome_parse_retry_after() on arbitrary header values.
 *
 * Input: fields separated by NUL bytes, the last one (the body) taking
 * the rest, NULs included:
 *
 *   0  "STATUS[:CURLCODE][w]"   e.g. "429", "0:28", "400w" (w: webhook)
 *   1  Retry-After              a missing field is an absent header
 *   2  X-RateLimit-Reset
 *   3  X-RateLimit-Remaining
 *   4  Content-Type
 *   5  curl's error buffer
 *   6  the body
 *
 * Each piece is a separate allocation of exactly its size (plus the NUL
 * http.c guarantees), so ASan sees any read past it.  Checked: the
 * verdict follows the table at the top of outcome.c; waits are within
 * [0, OUTCOME_MAX_WAIT_MS] and only where one may be given; the reason is
 * a non-empty, valid UTF-8 string without control characters and without
 * a URL; the error id is printable ASCII; Retry-After in delta-seconds
 * gives exactly min(n s, the cap).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmsyncd.h"
#include "fuzz_oracle.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define NFIELDS		7
/* 2025-11-26T17:34:37Z */
#define NOW_WALL_MS	UINT64_C(1764178477000)

static const char	*cur_status;

static void	fail(const char *, ...) MMS_PRINTF(1, 2) MMS_NORETURN;

static void
fail(const char *fmt, ...)
{
	va_list	ap;

	fprintf(stderr, "fuzz_outcome: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  status field: [%s]\n", cur_status ? cur_status :
	    "");
	abort();
}

static void
check_text(const char *s, size_t size, const char *what, int ascii,
    int nonempty)
{
	size_t	len = strnlen(s, size), i;

	if (len == size)
		fail("%s is not NUL-terminated", what);
	if (nonempty && len == 0)
		fail("%s is empty", what);
	for (i = 0; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			fail("%s has a control character: [%s]", what, s);
		if (ascii && (unsigned char)s[i] >= 0x80)
			fail("%s is not ASCII: [%s]", what, s);
	}
	if (!utf8_ok((const unsigned char *)s, len))
		fail("%s is not valid UTF-8: [%s]", what, s);
}

/* Is V digits only, with optional white space around (and a ",...")? */
static int
delta_seconds(const char *v, uint64_t *secs)
{
	uint64_t	n = 0;
	int		any = 0;

	while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
		v++;
	for (; *v >= '0' && *v <= '9'; v++) {
		any = 1;
		if (n < UINT64_C(1) << 40)
			n = n * 10 + (uint64_t)(*v - '0');
	}
	while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
		v++;
	if (!any || (*v != '\0' && *v != ','))
		return 0;
	*secs = n;
	return 1;
}

static void
check_retry_after(const char *v, uint64_t now)
{
	uint64_t	ms = UINT64_MAX, secs, want;
	int		rc;

	rc = outcome_parse_retry_after(v, now, &ms);
	if (rc == 0 && ms > OUTCOME_MAX_WAIT_MS)
		fail("Retry-After [%s] gave %llu ms", v,
		    (unsigned long long)ms);
	if (rc != 0 && rc != -1)
		fail("outcome_parse_retry_after returned %d", rc);
	if (delta_seconds(v, &secs)) {
		want = secs >= OUTCOME_MAX_WAIT_MS / 1000 ?
		    OUTCOME_MAX_WAIT_MS : secs * 1000;
		if (rc != 0 || ms != want)
			fail("Retry-After [%s]: %d, %llu ms, expected %llu ms",
			    v, rc, (unsigned long long)ms,
			    (unsigned long long)want);
	}
}

/* "scheme://x": a URL (the advice "https:// or http://" is not one). */
static int
has_url(const char *s)
{
	const char	*p;

	for (p = s; (p = strstr(p, "://")) != NULL; p += 3)
		if (p[3] != '\0' && p[3] != ' ' && p[3] != ')' && p[3] != '"' &&
		    p[3] != '\'')
			return 1;
	return 0;
}

/* The verdict the table in outcome.c gives, or -1 for "BLOCK or BACKOFF"
 * (curl errors), -2 for "BLOCK or SET_ASIDE" (a 400 on a webhook). */
static int
expected_verdict(const struct response *r, enum auth_kind auth)
{
	long	st = r->status;

	if (r->curl_code != 0 && !(st >= 200 && st <= 299))
		return -1;
	if (st >= 200 && st <= 299)
		return VERDICT_DELIVERED;
	if (st >= 300 && st <= 399)
		return VERDICT_BLOCK;
	if (st < 400 || st > 599)
		return VERDICT_BACKOFF;
	if (st == 429)
		return VERDICT_RATE_LIMITED;
	if (st == 501)
		return VERDICT_BLOCK;
	if (st >= 500)
		return VERDICT_BACKOFF;
	if (st == 408 || st == 425)
		return VERDICT_BACKOFF;
	if (st == 401 || st == 403 || st == 404 || st == 405 || st == 407)
		return VERDICT_BLOCK;
	if (st == 400 && auth == AUTH_WEBHOOK)
		return -2;
	return VERDICT_SET_ASIDE;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init("fuzz_outcome");
	log_set_level(LOG_LEVEL_ERROR);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		*field[NFIELDS] = { NULL };
	size_t		 flen[NFIELDS] = { 0 }, off = 0, i, n;
	const uint8_t	*nul;
	struct response	 r;
	struct outcome	 o;
	enum auth_kind	 auth;
	const char	*p;
	char		*end;
	int		 want;
	uint64_t	 now2;

	for (i = 0; i < NFIELDS && off <= size; i++) {
		if (i == NFIELDS - 1 || (nul = memchr(data + off, '\0',
		    size - off)) == NULL)
			n = size - off;
		else
			n = (size_t)(nul - (data + off));
		field[i] = xmalloc(n + 1);
		memcpy(field[i], data + off, n);
		field[i][n] = '\0';
		flen[i] = n;
		off += n + 1;
	}
	if (field[0] == NULL)
		field[0] = xstrdup("");
	cur_status = field[0];

	memset(&r, 0, sizeof r);
	p = field[0];
	r.status = strtol(p, &end, 10);
	if (*end == ':')
		r.curl_code = (int)strtol(end + 1, &end, 10);
	auth = strchr(field[0], 'w') != NULL ? AUTH_WEBHOOK : AUTH_TOKEN;
	r.retry_after = field[1];
	r.ratelimit_reset = field[2];
	r.ratelimit_remaining = field[3];
	r.content_type = field[4];
	r.curl_error = field[5];
	r.body = field[6];
	r.body_len = field[6] != NULL ? flen[6] : 0;

	memset(&o, 0xA5, sizeof o);
	outcome_classify(&r, auth, NOW_WALL_MS, &o);

	want = expected_verdict(&r, auth);
	if (want == -1 ? (o.verdict != VERDICT_BACKOFF &&
	    o.verdict != VERDICT_BLOCK) : want == -2 ?
	    (o.verdict != VERDICT_BLOCK && o.verdict != VERDICT_SET_ASIDE) :
	    (int)o.verdict != want)
		fail("status %ld curl %d: verdict %d, expected %d (%s)",
		    r.status, r.curl_code, (int)o.verdict, want, o.reason);
	if (o.status != r.status)
		fail("status %ld became %ld", r.status, o.status);
	if (o.has_wait && o.wait_ms > OUTCOME_MAX_WAIT_MS)
		fail("wait of %llu ms", (unsigned long long)o.wait_ms);
	if (o.has_wait && o.verdict != VERDICT_RATE_LIMITED &&
	    o.verdict != VERDICT_DELIVERED &&
	    !(o.verdict == VERDICT_BACKOFF && r.status == 503))
		fail("a wait with verdict %d", (int)o.verdict);
	check_text(o.reason, sizeof o.reason, "reason", 0, 1);
	check_text(o.error_id, sizeof o.error_id, "error id", 1, 0);
	if (has_url(o.reason))
		fail("a URL in the reason: [%s]", o.reason);

	/* Retry-After alone, at two times. */
	if (field[1] != NULL) {
		check_retry_after(field[1], NOW_WALL_MS);
		now2 = (uint64_t)flen[6] * UINT64_C(86400000) * 7;
		check_retry_after(field[1], now2 % (UINT64_C(4102444800000)));
	}

	for (i = 0; i < NFIELDS; i++)
		free(field[i]);
	return 0;
}
