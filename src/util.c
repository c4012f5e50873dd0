/*
 * util.c: allocation that cannot fail, growable buffers, clocks, random
 * numbers, and the one atomic file writer every durable file goes through.
 */
#include <sys/random.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mmsyncd.h"

void *
xmalloc(size_t size)
{
	void	*p;

	if (size == 0)
		size = 1;
	if ((p = malloc(size)) == NULL)
		fatalx("out of memory (%zu bytes)", size);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void	*p;

	if (n == 0 || size == 0)
		n = size = 1;
	if ((p = calloc(n, size)) == NULL)
		fatalx("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

void *
xreallocarray(void *old, size_t n, size_t size)
{
	void	*p;

	if (size != 0 && n > SIZE_MAX / size)
		fatalx("allocation overflow (%zu x %zu)", n, size);
	if (n * size == 0)
		n = size = 1;
	if ((p = realloc(old, n * size)) == NULL)
		fatalx("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		fatalx("out of memory");
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p;

	if ((p = strndup(s, n)) == NULL)
		fatalx("out of memory");
	return p;
}

int
xvasprintf(char **out, const char *fmt, va_list ap)
{
	int	n;

	if ((n = vasprintf(out, fmt, ap)) == -1)
		fatalx("out of memory");
	return n;
}

int
xasprintf(char **out, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = xvasprintf(out, fmt, ap);
	va_end(ap);
	return n;
}

void
buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = b->cap = 0;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
buf_reserve(struct buf *b, size_t more)
{
	size_t	need, cap;

	if (more > SIZE_MAX - b->len - 1)
		fatalx("buffer overflow");
	need = b->len + more + 1;
	if (need <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->data = xreallocarray(b->data, 1, cap);
	b->cap = cap;
}

void
buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n != 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_addstr(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_addc(struct buf *b, char c)
{
	buf_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at P (at most LEFT bytes), or 0. */
static size_t
utf8_seq_len(const unsigned char *p, size_t left)
{
	size_t		n, i;
	uint32_t	cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		n = 2, cp = p[0] & 0x1F;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		n = 3, cp = p[0] & 0x0F;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (n > left)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are invalid. */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return 0;
	return n;
}

void
buf_add_json_string(struct buf *b, const char *s, size_t len)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 i = 0, run, n;

	buf_reserve(b, len + 2);
	buf_addc(b, '"');
	while (i < len) {
		/* Copy the longest run that needs no escaping in one go. */
		for (run = i; run < len && p[run] >= 0x20 && p[run] < 0x80 &&
		    p[run] != '"' && p[run] != '\\'; run++)
			;
		if (run > i) {
			buf_add(b, p + i, run - i);
			i = run;
			continue;
		}
		switch (p[i]) {
		case '"':  buf_addstr(b, "\\\""); i++; continue;
		case '\\': buf_addstr(b, "\\\\"); i++; continue;
		case '\n': buf_addstr(b, "\\n"); i++; continue;
		case '\r': buf_addstr(b, "\\r"); i++; continue;
		case '\t': buf_addstr(b, "\\t"); i++; continue;
		case '\b': buf_addstr(b, "\\b"); i++; continue;
		case '\f': buf_addstr(b, "\\f"); i++; continue;
		}
		if (p[i] < 0x20) {
			buf_addstr(b, "\\u00");
			buf_addc(b, hex[p[i] >> 4]);
			buf_addc(b, hex[p[i] & 0xF]);
			i++;
		} else if ((n = utf8_seq_len(p + i, len - i)) == 0) {
			buf_addstr(b, "\\ufffd");
			i++;
		} else {
			buf_add(b, p + i, n);
			i += n;
		}
	}
	buf_addc(b, '"');
}

const char *
buf_cstr(const struct buf *b)
{
	return b->data != NULL ? b->data : "";
}

static uint64_t
clock_ms(clockid_t id)
{
	struct timespec	ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
now_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

uint64_t
now_ms_ceil(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 +
	    ((uint64_t)ts.tv_nsec + 999999) / 1000000;
}

uint64_t
wall_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

void
format_rfc3339(uint64_t wall, char out[32])
{
	time_t		t = (time_t)(wall / 1000);
	struct tm	tm;
	size_t		n;

	gmtime_r(&t, &tm);
	n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(wall % 1000));
}

size_t
utf8_runes(const char *s, size_t len)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 i = 0, n = 0, k;

	/* Counted as buf_add_json_string sends it: a byte that starts no
	 * valid sequence (yajl lets UTF-8 surrogates through) becomes one
	 * U+FFFD. */
	while (i < len) {
		if (p[i] < 0x80)
			i++;
		else if ((k = utf8_seq_len(p + i, len - i)) == 0)
			i++;
		else
			i += k;
		n++;
	}
	return n;
}

void
utf8_scrub(char *s)
{
	unsigned char	*p = (unsigned char *)s;
	size_t		 len = strlen(s), i = 0, k;

	while (i < len) {
		if ((k = utf8_seq_len(p + i, len - i)) == 0)
			p[i++] = '?';
		else
			i += k;
	}
}

void
random_bytes(void *p, size_t len)
{
	unsigned char	*c = p;
	ssize_t		 n;

	while (len > 0) {
		n = getrandom(c, len, 0);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			fatalx("getrandom failed: %s", strerror(errno));
		}
		c += n;
		len -= (size_t)n;
	}
}

uint64_t
random_between(uint64_t lo, uint64_t hi)
{
	static uint64_t	 state[4];
	static bool	 seeded;
	uint64_t	 range, x, limit, t;

	if (hi <= lo)
		return lo;
	/* xoshiro256** seeded once from the kernel: jitter needs no more. */
	if (!seeded) {
		do
			random_bytes(state, sizeof state);
		while ((state[0] | state[1] | state[2] | state[3]) == 0);
		seeded = true;
	}
	range = hi - lo;
	if (range == UINT64_MAX)
		limit = UINT64_MAX;
	else
		limit = UINT64_MAX - (UINT64_MAX % (range + 1));
	do {
		x = state[1] * 5;
		x = ((x << 7) | (x >> 57)) * 9;
		t = state[1] << 17;
		state[2] ^= state[0];
		state[3] ^= state[1];
		state[1] ^= state[2];
		state[0] ^= state[3];
		state[2] ^= t;
		state[3] = (state[3] << 45) | (state[3] >> 19);
	} while (range != UINT64_MAX && x >= limit);
	return range == UINT64_MAX ? x : lo + x % (range + 1);
}

int
dir_sync(const char *path)
{
	int	fd, r, saved;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	r = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return r;
}

int
dir_make(const char *path, mode_t mode)
{
	char		tmp[PATH_MAX];
	char		*p;
	struct stat	st;

	if (strlen(path) >= sizeof tmp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(tmp, path);
	for (p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) == -1) {
		if (errno != EEXIST)
			return -1;
		if (stat(tmp, &st) == -1)
			return -1;
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			return -1;
		}
	}
	return 0;
}

static int
write_all(int fd, const void *data, size_t len)
{
	const char	*p = data;
	ssize_t		 n;

	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Test seam: MMSYNCD_FAIL_WRITES=N makes every Nth atomic write fail with
 * ENOSPC, so the full-disk paths are exercised without a full disk. */
static int
write_fault_injected(void)
{
	static long	 every = -1, count;
	const char	*s;

	if (every == -1) {
		s = getenv("MMSYNCD_FAIL_WRITES");
		every = s != NULL ? strtol(s, NULL, 10) : 0;
		if (every < 0)
			every = 0;
	}
	return every > 0 && ++count % every == 0;
}

int
file_write_atomic(const char *path, const void *data, size_t len,
    mode_t mode)
{
	char	 tmp[PATH_MAX], dir[PATH_MAX];
	int	 fd, saved;

	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp ||
	    strlen(path) >= sizeof dir) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (write_fault_injected()) {
		errno = ENOSPC;
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    mode);
	if (fd == -1)
		return -1;
	if (write_all(fd, data, len) == -1 || fsync(fd) == -1) {
		saved = errno;
		close(fd);
		unlink(tmp);
		errno = saved;
		return -1;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		saved = errno;
		unlink(tmp);
		errno = saved;
		return -1;
	}
	strcpy(dir, path);
	return dir_sync(dirname(dir));
}

int
file_read_small(const char *path, size_t max, char **out, size_t *outlen)
{
	struct buf	b;
	struct stat	st;
	char		chunk[4096];
	ssize_t		n;
	int		fd, saved;

	/* A FIFO or device at the path must not hang the caller. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1)
		return -1;
	if (fstat(fd, &st) == -1)
		saved = errno;
	else if (!S_ISREG(st.st_mode))
		saved = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
	else
		saved = 0;
	if (saved != 0) {
		close(fd);
		errno = saved;
		return -1;
	}
	buf_init(&b);
	buf_reserve(&b, 0);
	for (;;) {
		n = read(fd, chunk, sizeof chunk);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (n == 0)
			break;
		if (b.len + (size_t)n > max) {
			errno = EFBIG;
			goto fail;
		}
		buf_add(&b, chunk, (size_t)n);
	}
	close(fd);
	*out = b.data;
	if (outlen != NULL)
		*outlen = b.len;
	return 0;
fail:
	saved = errno;
	close(fd);
	buf_free(&b);
	errno = saved;
	return -1;
}
