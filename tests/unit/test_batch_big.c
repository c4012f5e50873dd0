/*
 * Streaming proof for batch.c: read a 200+ MB .ndjson and a 200+ MB .json
 * array through and check that the peak resident size grows by less than
 * RSS_LIMIT_KB while doing so; then the same for single rows far over the
 * row limit, which must be set aside without being held.
 *
 * The files go to a fresh directory under $TMPDIR (default /tmp) and are
 * removed at the end.  Under AddressSanitizer (whose quarantine keeps freed
 * memory resident) the row counts are still checked, the RSS checks are
 * skipped.
 */
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mmsyncd.h"
#include "tap.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

#define TARGET_BYTES	(200ull * 1000 * 1000 + 1)
#define HUGE_ROW_BYTES	(64u * 1024 * 1024)
#define RSS_LIMIT_KB	(32 * 1024)
#define WBUF_SIZE	(1024 * 1024)

static char		 dir[4096];
static char		 wbuf[WBUF_SIZE];
static size_t		 wlen;
static int		 wfd;

static long
maxrss_kb(void)
{
	struct rusage	ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

static double
now_s(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *
path_of(const char *name)
{
	static char	p[4200];

	snprintf(p, sizeof p, "%s/%s", dir, name);
	return p;
}

static void
w_flush(void)
{
	size_t	off = 0;
	ssize_t	n;

	while (off < wlen) {
		if ((n = write(wfd, wbuf + off, wlen - off)) == -1) {
			if (errno == EINTR)
				continue;
			printf("Bail out! write: %s\n", strerror(errno));
			exit(1);
		}
		off += (size_t)n;
	}
	wlen = 0;
}

static void
w_open(const char *name)
{
	wfd = open(path_of(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (wfd == -1) {
		printf("Bail out! open %s: %s\n", name, strerror(errno));
		exit(1);
	}
	wlen = 0;
}

static void
w_add(const void *p, size_t n)
{
	const char	*c = p;
	size_t		 k;

	while (n > 0) {
		if (wlen == WBUF_SIZE)
			w_flush();
		k = WBUF_SIZE - wlen < n ? WBUF_SIZE - wlen : n;
		memcpy(wbuf + wlen, c, k);
		wlen += k;
		c += k;
		n -= k;
	}
}

static void
w_fill(char c, size_t n)
{
	size_t	k;

	while (n > 0) {
		if (wlen == WBUF_SIZE)
			w_flush();
		k = WBUF_SIZE - wlen < n ? WBUF_SIZE - wlen : n;
		memset(wbuf + wlen, c, k);
		wlen += k;
		n -= k;
	}
}

static uint64_t
w_close(void)
{
	struct stat	st;

	w_flush();
	fstat(wfd, &st);
	close(wfd);
	return (uint64_t)st.st_size;
}

/* Write a big batch of ~1 KB rows; the number of rows. */
static uint64_t
write_big(const char *name, int json)
{
	char		 row[1200], pad[901];
	uint64_t	 n = 0, bytes = 0;
	int		 len;

	memset(pad, 'p', 900);
	pad[900] = '\0';
	w_open(name);
	if (json)
		w_add("[\n", 2);
	while (bytes < TARGET_BYTES) {
		len = snprintf(row, sizeof row, "%s{\"id\":%llu,\"name\":"
		    "\"user %llu\",\"email\":\"user%llu@example.com\","
		    "\"score\":%llu.5,\"tags\":[\"a\",\"b\",{\"c\":null}],"
		    "\"pad\":\"%s\"}\n", json && n > 0 ? "," : "",
		    (unsigned long long)n, (unsigned long long)n,
		    (unsigned long long)n, (unsigned long long)n % 1000, pad);
		w_add(row, (size_t)len);
		bytes += (uint64_t)len;
		n++;
	}
	if (json)
		w_add("]\n", 2);
	w_close();
	return n;
}

/* A small row, a row of HUGE_ROW_BYTES, a small row. */
static void
write_huge(const char *name, int json)
{
	w_open(name);
	w_add(json ? "[{\"a\":1},\n" : "{\"a\":1}\n", json ? 10 : 8);
	w_add("{\"huge\":\"", 9);
	w_fill('h', HUGE_ROW_BYTES - 11);
	w_add("\"}", 2);
	w_add(json ? ",\n{\"b\":2}]\n" : "\n{\"b\":2}\n", json ? 11 : 9);
	w_close();
}

struct counts {
	uint64_t	rows, bad, items;
	int		rc;
	double		secs;
	long		grew_kb;
};

static void
read_through(const char *name, struct counts *c)
{
	struct batch_reader	*r;
	struct batch_item	 it;
	char			*cause = NULL;
	long			 before;
	double			 t0;
	int			 fd;

	memset(c, 0, sizeof *c);
	before = maxrss_kb();
	t0 = now_s();
	fd = open(path_of(name), O_RDONLY);
	r = batch_open(fd, batch_format_of(name), NULL, &cause);
	while ((c->rc = batch_next(r, &it, &cause)) == 1) {
		c->items++;
		if (it.kind == BATCH_ROW)
			c->rows++;
		else
			c->bad++;
	}
	if (c->rc == -1)
		printf("# %s: %s\n", name, cause);
	free(cause);
	batch_close(r);
	close(fd);
	c->secs = now_s() - t0;
	c->grew_kb = maxrss_kb() - before;
}

static void
check_rss(const char *what, long grew_kb)
{
	if (UNDER_ASAN) {
		printf("ok %d - # skip %s: RSS not meaningful under ASan\n",
		    ++tap_count, what);
		return;
	}
	ok(grew_kb < RSS_LIMIT_KB, "%s: peak RSS grew by %ld KiB (< %d)", what,
	    grew_kb, RSS_LIMIT_KB);
}

static void
test_ndjson(void)
{
	struct counts	c;
	uint64_t	n;
	double		t0 = now_s();

	n = write_big("big.ndjson", 0);
	printf("# wrote big.ndjson: %llu rows in %.2f s\n",
	    (unsigned long long)n, now_s() - t0);
	read_through("big.ndjson", &c);
	printf("# read in %.2f s\n", c.secs);
	is_int(c.rc, 0, "ndjson: read to the end");
	is_int(c.rows, n, "ndjson: every row (%llu)", (unsigned long long)n);
	is_int(c.bad, 0, "ndjson: no bad rows");
	check_rss("ndjson 200 MB", c.grew_kb);
	unlink(path_of("big.ndjson"));
}

static void
test_json(void)
{
	struct counts	 c;
	uint64_t	 n, rows = 0;
	char		 reason[256] = "";
	long		 before;
	double		 t0 = now_s();
	int		 fd;

	n = write_big("big.json", 1);
	printf("# wrote big.json: %llu rows in %.2f s\n",
	    (unsigned long long)n, now_s() - t0);

	before = maxrss_kb();
	t0 = now_s();
	fd = open(path_of("big.json"), O_RDONLY);
	is_int(batch_validate_json(fd, &rows, reason, sizeof reason), 0,
	    "json: valid%s%s", *reason ? ": " : "", reason);
	close(fd);
	printf("# validated in %.2f s\n", now_s() - t0);
	is_int(rows, n, "json: validation counts every row");
	check_rss("json validation", maxrss_kb() - before);

	read_through("big.json", &c);
	printf("# read in %.2f s\n", c.secs);
	is_int(c.rc, 0, "json: read to the end");
	is_int(c.rows, n, "json: every row");
	is_int(c.bad, 0, "json: no bad rows");
	check_rss("json 200 MB", c.grew_kb);
	unlink(path_of("big.json"));
}

static void
test_huge(const char *name, int json)
{
	struct counts	 c;
	uint64_t	 rows = 0;
	char		 reason[256] = "", what[64];
	long		 before;
	int		 fd;

	write_huge(name, json);
	if (json) {
		before = maxrss_kb();
		fd = open(path_of(name), O_RDONLY);
		is_int(batch_validate_json(fd, &rows, reason, sizeof reason), 0,
		    "%s: valid%s%s", name, *reason ? ": " : "", reason);
		close(fd);
		is_int(rows, 3, "%s: 3 rows", name);
		snprintf(what, sizeof what, "%s validation", name);
		check_rss(what, maxrss_kb() - before);
	}
	read_through(name, &c);
	is_int(c.items, 3, "%s: 3 items", name);
	is_int(c.bad, 1, "%s: the 64 MiB row is set aside", name);
	snprintf(what, sizeof what, "%s 64 MiB row", name);
	check_rss(what, c.grew_kb);
	unlink(path_of(name));
}

int
main(void)
{
	const char	*tmp = getenv("TMPDIR");

	snprintf(dir, sizeof dir, "%s/test_batch_big.XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_ndjson();
	test_json();
	test_huge("huge.ndjson", 0);
	test_huge("huge.json", 1);
	rmdir(dir);
	return tap_done();
}
