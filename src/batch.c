/*
 * batch.c: read the rows of a batch file as a stream.
 *
 * Memory never grows with the file: the reader holds one fixed chunk of
 * the file and the bytes of one row.  Each row is first scanned (its end
 * found, its size and depth measured) and only then loaded, from the chunk
 * or read again, so a row over MMS_MAX_ROW_BYTES is set aside without ever
 * being held.
 *
 * .ndjson / .jsonl: one row per line.  A line ends at '\n'; a '\r' before
 * it is dropped; a UTF-8 byte order mark at the start of the file is
 * skipped; lines of white space only (or nothing) are not rows; the last
 * line needs no '\n'.  Each other line is parsed on its own: a line that
 * is not strict JSON (comments are not), or not a JSON object, is a bad
 * row and the next line goes on.  If the file turns out shorter than it
 * was at open (truncated under us), the reader ends there, without a half
 * line.
 *
 * .json: batch_validate_json() checks the whole file first with yajl's
 * streaming parser (strict JSON), so nothing is sent from a broken file:
 * an array (of anything: elements that are not objects become bad rows),
 * or an envelope object with "rows" (an array, required) and "mode"
 * ("insert" or "add"; optional, insert when absent), in any order, and no
 * other key.  Then a small byte scanner walks the elements of the rows
 * array: the file is known to be valid, so tracking strings, escapes and
 * bracket depth is enough to find each element's exact bytes, which are
 * then parsed on their own.  A position to resume from is just after an
 * element, where the scanner expects ',' or ']'.
 *
 * Rows nested deeper than BATCH_MAX_DEPTH are bad rows: yajl_tree frees
 * its trees recursively and has no limit of its own.  The validator
 * follows at most BATCH_VALIDATE_DEPTH levels (yajl keeps a byte per
 * level); a .json file nested deeper is set aside whole.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yajl/yajl_parse.h>

#include "mmsyncd.h"

#ifndef BATCH_CHUNK		/* overridable for tests of chunk edges */
#define BATCH_CHUNK		(64 * 1024)
#endif
/* Deepest row accepted (the row object itself is level 1). */
#define BATCH_MAX_DEPTH		64
/* Deepest nesting batch_validate_json() follows in a .json file. */
#define BATCH_VALIDATE_DEPTH	1024
/*
 * yajl's lexer keeps a token that spans two chunks in a buffer and lexes
 * it again from its start with every chunk: a huge string or number would
 * cost memory and quadratic time.  The validator feeds yajl at most this
 * many bytes of a string (and of a run of digits) and checks the rest of
 * it itself.
 */
#ifndef BATCH_TOKEN_FEED
#define BATCH_TOKEN_FEED	4096
#endif
/* Two digits are enough for yajl to see a leading zero ("01"). */
_Static_assert(BATCH_TOKEN_FEED >= 2, "BATCH_TOKEN_FEED too small");

#define UTF8_BOM		"\xEF\xBB\xBF"

enum json_state {
	JS_START,		/* at the start of the file */
	JS_FIRST,		/* just inside '[': an element or ']' */
	JS_AFTER,		/* after an element: ',' or ']' */
	JS_DONE,
};

struct batch_reader {
	int		 fd;
	enum batch_format fmt;
	uint64_t	 size;		/* at open: tells a file that shrank */

	unsigned char	*chunk;
	size_t		 clen;		/* bytes in chunk */
	size_t		 cpos;		/* next byte to look at */
	uint64_t	 coff;		/* file offset of chunk[0] */
	int		 eof;

	uint64_t	 line;		/* line at the scan position */
	uint64_t	 rows;		/* items returned */
	struct batch_pos pos;		/* just after the last item */
	enum json_state	 js;
	int		 ended;		/* 0 was returned */
	char		*failed;	/* -1 was returned, with this */

	struct buf	 row;		/* the current row's text */
	yajl_val	 value;		/* the current row, parsed */
};

#define R_OFF(r)	((r)->coff + (r)->cpos)

static int
is_ws(unsigned char c)
{
	/* yajl also takes \v and \f as white space. */
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
	    c == '\f';
}

/* Cut a trailing incomplete UTF-8 sequence (after a truncating printf). */
static void
utf8_trim(char *s)
{
	size_t	len = strlen(s), i, need;

	for (i = len; i > 0 && len - i < 4; i--) {
		unsigned char c = (unsigned char)s[i - 1];

		if ((c & 0xC0) == 0x80)
			continue;
		if (c < 0x80)
			return;
		need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
		if (len - (i - 1) < need)
			s[i - 1] = '\0';
		return;
	}
}

static void MMS_PRINTF(3, 4)
reason_set(char *dst, size_t size, const char *fmt, ...)
{
	va_list	ap;

	if (size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(dst, size, fmt, ap);
	va_end(ap);
	utf8_trim(dst);
	utf8_scrub(dst);
}

/* At most MAX bytes of S[0..LEN), not cutting a UTF-8 sequence. */
static int
utf8_cut(const unsigned char *s, size_t len, size_t max)
{
	if (len <= max)
		return (int)len;
	while (max > 0 && (s[max] & 0xC0) == 0x80)
		max--;
	return (int)max;
}

/* yajl's message, first line only, without its "parse error: " prefix. */
static void
yajl_message(const char *err, char *out, size_t size)
{
	static const char	*prefixes[] = { "parse error: ",
				    "lexical error: " };
	size_t			 i, n;

	if (err == NULL || *err == '\0')
		err = "unknown error";
	for (i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
		n = strlen(prefixes[i]);
		if (strncmp(err, prefixes[i], n) == 0) {
			err += n;
			break;
		}
	}
	n = strcspn(err, "\r\n");
	while (n > 0 && (err[n - 1] == ' ' || err[n - 1] == '.'))
		n--;
	if (n >= size)
		n = size - 1;
	memcpy(out, err, n);
	out[n] = '\0';
	utf8_trim(out);
}

/* The length of a byte order mark at the start of FD: 3 or 0; -1 error. */
static int
bom_length(int fd)
{
	char	b[3];
	ssize_t	n;

	do
		n = pread(fd, b, 3, 0);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	return n == 3 && memcmp(b, UTF8_BOM, 3) == 0 ? 3 : 0;
}

int
batch_format_of(const char *name)
{
	const char	*slash;
	size_t		 len;

	if ((slash = strrchr(name, '/')) != NULL)
		name = slash + 1;
	if (name[0] == '.' || name[0] == '\0')
		return -1;
	len = strlen(name);
#define ENDS(s) (len > sizeof(s) - 1 &&					\
	strcmp(name + len - (sizeof(s) - 1), (s)) == 0)
	if (ENDS(".ndjson") || ENDS(".jsonl"))
		return BATCH_NDJSON;
	if (ENDS(".json"))
		return BATCH_JSON;
#undef ENDS
	return -1;
}

/* -------------------------------------------------------------------- */
/* Validation of a whole .json file. */

enum { KEY_NONE, KEY_MODE, KEY_ROWS };

struct validator {
	int		 depth;
	int		 top;		/* 0, '[' or '{' */
	int		 key;		/* envelope key whose value comes next */
	int		 has_mode, has_rows, in_rows;
	uint64_t	 rows;
	char		 why[256];	/* set by a callback that stops yajl */
};

/* A value starts at v->depth; KIND is '{', '[', 's' (string) or 'x'. */
static int
v_value(struct validator *v, int kind, const unsigned char *s, size_t len)
{
	if (v->depth == 0) {
		if (kind != '{' && kind != '[') {
			reason_set(v->why, sizeof v->why, "a .json batch must "
			    "be an array or a {\"mode\", \"rows\"} object");
			return 0;
		}
		v->top = kind;
		return 1;
	}
	if (v->top == '[') {
		if (v->depth == 1)
			v->rows++;
		return 1;
	}
	if (v->depth == 2 && v->in_rows) {
		v->rows++;
		return 1;
	}
	if (v->depth != 1)
		return 1;
	if (v->key == KEY_MODE) {
		if (kind != 's') {
			reason_set(v->why, sizeof v->why,
			    "\"mode\" must be a string: insert or add");
			return 0;
		}
		if ((len == 6 && memcmp(s, "insert", 6) == 0) ||
		    (len == 3 && memcmp(s, "add", 3) == 0))
			return 1;
		reason_set(v->why, sizeof v->why,
		    "unsupported mode \"%.*s\": only insert and add",
		    utf8_cut(s, len, 100), (const char *)s);
		return 0;
	}
	if (v->key == KEY_ROWS) {
		if (kind != '[') {
			reason_set(v->why, sizeof v->why,
			    "\"rows\" must be an array");
			return 0;
		}
		v->in_rows = 1;
	}
	return 1;
}

static int
v_null(void *ctx)
{
	return v_value(ctx, 'x', NULL, 0);
}

static int
v_boolean(void *ctx, int b)
{
	(void)b;
	return v_value(ctx, 'x', NULL, 0);
}

static int
v_number(void *ctx, const char *s, size_t len)
{
	(void)s;
	(void)len;
	return v_value(ctx, 'x', NULL, 0);
}

static int
v_string(void *ctx, const unsigned char *s, size_t len)
{
	return v_value(ctx, 's', s, len);
}

static int
v_open(struct validator *v, int kind)
{
	if (!v_value(v, kind, NULL, 0))
		return 0;
	if (++v->depth > BATCH_VALIDATE_DEPTH) {
		reason_set(v->why, sizeof v->why,
		    "nested deeper than %d levels", BATCH_VALIDATE_DEPTH);
		return 0;
	}
	return 1;
}

static int
v_start_map(void *ctx)
{
	return v_open(ctx, '{');
}

static int
v_start_array(void *ctx)
{
	return v_open(ctx, '[');
}

static int
v_close(void *ctx)
{
	struct validator	*v = ctx;

	if (--v->depth == 1 && v->in_rows)
		v->in_rows = 0;
	return 1;
}

static int
v_map_key(void *ctx, const unsigned char *s, size_t len)
{
	struct validator	*v = ctx;
	int			*seen;

	if (v->depth != 1 || v->top != '{')
		return 1;
	if (len == 4 && memcmp(s, "mode", 4) == 0) {
		v->key = KEY_MODE;
		seen = &v->has_mode;
	} else if (len == 4 && memcmp(s, "rows", 4) == 0) {
		v->key = KEY_ROWS;
		seen = &v->has_rows;
	} else {
		reason_set(v->why, sizeof v->why, "unknown key \"%.*s\" in "
		    "the batch envelope: only mode and rows",
		    utf8_cut(s, len, 100), (const char *)s);
		return 0;
	}
	if (*seen) {
		reason_set(v->why, sizeof v->why,
		    "duplicate key \"%.*s\" in the batch envelope", (int)len,
		    (const char *)s);
		return 0;
	}
	*seen = 1;
	return 1;
}

static const yajl_callbacks validator_callbacks = {
	v_null, v_boolean, NULL, NULL, v_number, v_string,
	v_start_map, v_map_key, v_close, v_start_array, v_close,
};

/* What the validator knows of the bytes around yajl (see BATCH_TOKEN_FEED). */
enum { SH_OUT, SH_STR, SH_SKIP };

struct feeder {
	yajl_handle	 h;
	struct validator v;
	int		 st;
	int		 esc;		/* after a '\\' in a string */
	int		 hex;		/* \u hex digits still due */
	int		 cont;		/* UTF-8 continuation bytes still due */
	size_t		 fed;		/* bytes of this string given to yajl */
	size_t		 digits;	/* length of this run of digits */
	int		 any;		/* anything but white space seen */
	uint64_t	 line;
};

/* Hand P[0..N) to yajl; LINE is the line at P.  -1 with the reason. */
static int
feed(struct feeder *f, const unsigned char *p, size_t n, uint64_t line,
    char *reason, size_t size)
{
	yajl_status	 st;
	unsigned char	*err;
	char		 msg[200];
	size_t		 at, i;

	if (n == 0)
		return 0;
	if ((st = yajl_parse(f->h, p, n)) == yajl_status_ok)
		return 0;
	if (st == yajl_status_client_canceled) {
		reason_set(reason, size, "%s", f->v.why);
		return -1;
	}
	at = yajl_get_bytes_consumed(f->h);
	for (i = 0; i < at && i < n; i++)
		if (p[i] == '\n')
			line++;
	err = yajl_get_error(f->h, 0, NULL, 0);
	yajl_message((const char *)err, msg, sizeof msg);
	yajl_free_error(f->h, err);
	reason_set(reason, size, "invalid JSON at line %llu: %s",
	    (unsigned long long)line, msg);
	return -1;
}

static int
skip_error(struct feeder *f, const char *what, char *reason, size_t size)
{
	reason_set(reason, size, "invalid JSON at line %llu: %s",
	    (unsigned long long)f->line, what);
	return -1;
}

/*
 * Pass a chunk through: everything to yajl, except digits past
 * BATCH_TOKEN_FEED in a run and string bytes past BATCH_TOKEN_FEED, which
 * are checked here (the way yajl would) instead.  Cuts happen only between
 * characters and escapes, so yajl's view stays a valid prefix.
 */
static int
feed_chunk(struct feeder *f, const unsigned char *p, size_t n,
    char *reason, size_t size)
{
	size_t		 i, ps = 0;	/* the piece not yet fed: [ps, i) */
	int		 piece = f->st != SH_SKIP;	/* 0 while skipping */
	uint64_t	 pline = f->line;
	unsigned char	 c;

	for (i = 0; i < n; i++) {
		c = p[i];
		switch (f->st) {
		case SH_OUT:
			if (c >= '0' && c <= '9') {
				if (++f->digits > BATCH_TOKEN_FEED) {
					/* Drop this digit. */
					if (feed(f, p + ps, i - ps, pline,
					    reason, size) == -1)
						return -1;
					ps = i + 1;
					pline = f->line;
				}
			} else {
				f->digits = 0;
				if (c == '"') {
					f->st = SH_STR;
					f->esc = f->hex = f->cont = 0;
					f->fed = 0;
				}
			}
			if (c == '\n')
				f->line++;
			if (!f->any && !is_ws(c))
				f->any = 1;
			break;
		case SH_STR:
			if (f->cont > 0)
				f->cont--;
			else if (f->esc) {
				f->esc = 0;
				if (c == 'u')
					f->hex = 4;
			} else if (f->hex > 0)
				f->hex--;
			else if (c == '\\')
				f->esc = 1;
			else if (c == '"') {
				f->st = SH_OUT;
				break;
			} else if (c >= 0xC0)
				f->cont = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
			else if (c == '\n')
				f->line++;	/* invalid: yajl will say so */
			if (++f->fed >= BATCH_TOKEN_FEED && f->cont == 0 &&
			    !f->esc && f->hex == 0) {
				if (feed(f, p + ps, i + 1 - ps, pline, reason,
				    size) == -1)
					return -1;
				piece = 0;
				f->st = SH_SKIP;
			}
			break;
		case SH_SKIP:
			if (f->cont > 0) {
				if ((c & 0xC0) != 0x80)
					return skip_error(f, "invalid bytes in "
					    "UTF8 string", reason, size);
				f->cont--;
			} else if (f->esc) {
				f->esc = 0;
				if (c == 'u')
					f->hex = 4;
				else if (strchr("\"\\/bfnrt", c) == NULL ||
				    c == '\0')
					return skip_error(f, "inside a string, "
					    "'\\' occurs before a character "
					    "which it may not", reason, size);
			} else if (f->hex > 0) {
				if (!((c >= '0' && c <= '9') ||
				    (c >= 'a' && c <= 'f') ||
				    (c >= 'A' && c <= 'F')))
					return skip_error(f, "invalid (non-hex) "
					    "character occurs after '\\u' "
					    "inside string", reason, size);
				f->hex--;
			} else if (c == '\\')
				f->esc = 1;
			else if (c == '"') {
				/* The closing quote goes to yajl. */
				f->st = SH_OUT;
				piece = 1;
				ps = i;
				pline = f->line;
			} else if (c < 0x20)
				return skip_error(f, "invalid character inside "
				    "string", reason, size);
			else if (c >= 0x80) {
				if ((c >> 5) == 0x6)
					f->cont = 1;
				else if ((c >> 4) == 0xE)
					f->cont = 2;
				else if ((c >> 3) == 0x1E)
					f->cont = 3;
				else
					return skip_error(f, "invalid bytes in "
					    "UTF8 string", reason, size);
			}
			break;
		}
	}
	if (piece)
		return feed(f, p + ps, n - ps, pline, reason, size);
	return 0;
}

int
batch_validate_json(int fd, uint64_t *rows, char *reason, size_t reasonsz)
{
	struct feeder	 f;
	unsigned char	*chunk, *err;
	char		 msg[200];
	uint64_t	 off;
	ssize_t		 n;
	yajl_status	 st;
	int		 rc = -1, bom;

	memset(&f, 0, sizeof f);
	f.line = 1;
	/* yajl's defaults are strict: no comments, UTF-8 checked, one value,
	 * nothing after it. */
	f.h = yajl_alloc(&validator_callbacks, NULL, &f.v);
	if (f.h == NULL)
		fatalx("out of memory");
	chunk = xmalloc(BATCH_CHUNK);
	if ((bom = bom_length(fd)) == -1) {
		reason_set(reason, reasonsz, "read: %s", strerror(errno));
		goto out;
	}
	off = (uint64_t)bom;
	for (;;) {
		n = pread(fd, chunk, BATCH_CHUNK, (off_t)off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			reason_set(reason, reasonsz, "read: %s",
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		off += (uint64_t)n;
		if (feed_chunk(&f, chunk, (size_t)n, reason, reasonsz) == -1)
			goto out;
	}
	if (!f.any) {
		reason_set(reason, reasonsz, "empty file");
		goto out;
	}
	if ((st = yajl_complete_parse(f.h)) != yajl_status_ok) {
		if (st == yajl_status_client_canceled)
			reason_set(reason, reasonsz, "%s", f.v.why);
		else {
			err = yajl_get_error(f.h, 0, NULL, 0);
			yajl_message((const char *)err, msg, sizeof msg);
			yajl_free_error(f.h, err);
			reason_set(reason, reasonsz,
			    "invalid JSON at line %llu: %s",
			    (unsigned long long)f.line, msg);
		}
		goto out;
	}
	if (f.v.top == '{' && !f.v.has_rows) {
		reason_set(reason, reasonsz,
		    "the batch envelope has no \"rows\" array");
		goto out;
	}
	*rows = f.v.rows;
	rc = 0;
out:
	yajl_free(f.h);
	free(chunk);
	return rc;
}

/* -------------------------------------------------------------------- */
/* The reader. */

struct batch_reader *
batch_open(int fd, enum batch_format fmt, const struct batch_pos *pos,
    char **cause)
{
	struct batch_reader	*r;
	struct stat		 st;

	if (fmt != BATCH_NDJSON && fmt != BATCH_JSON) {
		xasprintf(cause, "unknown batch format %d", (int)fmt);
		return NULL;
	}
	if (fstat(fd, &st) == -1) {
		xasprintf(cause, "fstat: %s", strerror(errno));
		return NULL;
	}
	r = xcalloc(1, sizeof *r);
	r->fd = fd;
	r->fmt = fmt;
	r->size = (uint64_t)st.st_size;
	r->chunk = xmalloc(BATCH_CHUNK);
	buf_init(&r->row);
	r->line = 1;
	r->js = JS_START;
	if (pos != NULL && pos->offset != 0) {
		r->coff = pos->offset;
		r->line = pos->line != 0 ? pos->line : 1;
		r->rows = pos->row;
		r->js = JS_AFTER;
	}
	r->pos.offset = r->coff;
	r->pos.line = r->line;
	r->pos.row = r->rows;
	return r;
}

void
batch_close(struct batch_reader *r)
{
	if (r == NULL)
		return;
	yajl_tree_free(r->value);
	buf_free(&r->row);
	free(r->chunk);
	free(r->failed);
	free(r);
}

void
batch_position(const struct batch_reader *r, struct batch_pos *pos)
{
	*pos = r->pos;
}

/* Make chunk[cpos] available: 1, or 0 at the end of the file, -1 error. */
static int
fill(struct batch_reader *r)
{
	ssize_t	n;

	if (r->cpos < r->clen)
		return 1;
	if (r->eof)
		return 0;
	r->coff += r->clen;
	r->clen = r->cpos = 0;
	do
		n = pread(r->fd, r->chunk, BATCH_CHUNK, (off_t)r->coff);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if (n == 0) {
		r->eof = 1;
		return 0;
	}
	r->clen = (size_t)n;
	return 1;
}

/* At the start of the file, step over a byte order mark. */
static int
skip_bom(struct batch_reader *r)
{
	int	n;

	if (R_OFF(r) != 0)
		return 0;
	if ((n = bom_length(r->fd)) == -1)
		return -1;
	r->coff = (uint64_t)n;
	r->clen = r->cpos = 0;
	return 0;
}

/*
 * Check a row's text before yajl_tree_parse sees it: it must be a C string
 * nested no deeper than BATCH_MAX_DEPTH.  -1 with the reason; 1 when it
 * has a '/' outside strings (a comment, which yajl_tree_parse would
 * accept: refused once the row is otherwise known to be JSON), else 0.
 */
static int
row_precheck(const char *s, size_t len, uint64_t line, char *reason,
    size_t size)
{
	size_t	i;
	int	depth = 0, instr = 0, esc = 0, comment = 0;

	if (memchr(s, '\0', len) != NULL) {
		reason_set(reason, size, "line %llu: invalid JSON: NUL byte",
		    (unsigned long long)line);
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (instr) {
			if (esc)
				esc = 0;
			else if (s[i] == '\\')
				esc = 1;
			else if (s[i] == '"')
				instr = 0;
			continue;
		}
		switch (s[i]) {
		case '"':
			instr = 1;
			break;
		case '{':
		case '[':
			if (++depth > BATCH_MAX_DEPTH) {
				reason_set(reason, size, "row nested deeper "
				    "than %d levels", BATCH_MAX_DEPTH);
				return -1;
			}
			break;
		case '}':
		case ']':
			depth--;
			break;
		case '/':
			comment = 1;
			break;
		}
	}
	return comment;
}

/*
 * Bring the row's bytes [START, START + LEN) into r->row: copied from the
 * chunk when they are all still there, else read again (a row is scanned
 * first and loaded only once it is known to fit, so a row too large is
 * never held).  0, 1 if the file came up short, -1 on a read error.
 */
static int
row_load(struct batch_reader *r, uint64_t start, uint64_t len)
{
	uint64_t	got = 0;
	ssize_t		n;

	buf_reset(&r->row);
	if (start >= r->coff && start + len <= r->coff + r->clen) {
		buf_add(&r->row, r->chunk + (start - r->coff), (size_t)len);
		return 0;
	}
	buf_reserve(&r->row, (size_t)len);
	while (got < len) {
		n = pread(r->fd, r->row.data + got, (size_t)(len - got),
		    (off_t)(start + got));
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return 1;
		got += (uint64_t)n;
	}
	r->row.len = (size_t)len;
	r->row.data[len] = '\0';
	return 0;
}

/* Parse the row in r->row into the item. */
static void
row_parse(struct batch_reader *r, struct batch_item *it)
{
	yajl_val	v;
	char		err[512], msg[200];
	int		comment;

	buf_add(&r->row, "", 0);	/* a C string even when empty */
	if ((comment = row_precheck(r->row.data, r->row.len, it->line,
	    it->reason, sizeof it->reason)) == -1)
		return;
	if ((v = yajl_tree_parse(r->row.data, err, sizeof err)) == NULL) {
		yajl_message(err, msg, sizeof msg);
		reason_set(it->reason, sizeof it->reason,
		    "line %llu: invalid JSON: %s", (unsigned long long)it->line,
		    msg);
		return;
	}
	if (comment) {
		yajl_tree_free(v);
		reason_set(it->reason, sizeof it->reason, "line %llu: invalid "
		    "JSON: comments are not allowed",
		    (unsigned long long)it->line);
		return;
	}
	if (!YAJL_IS_OBJECT(v)) {
		yajl_tree_free(v);
		reason_set(it->reason, sizeof it->reason,
		    "row is not a JSON object");
		return;
	}
	it->kind = BATCH_ROW;
	it->value = r->value = v;
}

static void
item_start(struct batch_reader *r, struct batch_item *it, uint64_t offset,
    uint64_t len, uint64_t line)
{
	memset(it, 0, sizeof *it);
	it->kind = BATCH_BAD_ROW;
	it->offset = offset;
	it->length = len;
	it->line = line;
	it->row = ++r->rows;
	r->pos.offset = R_OFF(r);
	r->pos.line = r->line;
	r->pos.row = r->rows;
}

static void
row_too_big(struct batch_item *it)
{
	reason_set(it->reason, sizeof it->reason, "row larger than %u MiB",
	    MMS_MAX_ROW_BYTES / (1024 * 1024));
}

static int
ndjson_next(struct batch_reader *r, struct batch_item *it, char **cause)
{
	unsigned char	*p, *q, last;
	uint64_t	 start, line, len;
	size_t		 n, k;
	int		 rc, blank, nl;

	if (skip_bom(r) == -1)
		goto fail;
	for (;;) {
		/* Find the end of the line, without holding it. */
		start = R_OFF(r);
		line = r->line;
		len = 0;
		nl = 0;
		blank = 1;
		last = 0;
		for (;;) {
			if ((rc = fill(r)) == -1)
				goto fail;
			if (rc == 0)
				break;
			p = r->chunk + r->cpos;
			n = r->clen - r->cpos;
			if ((q = memchr(p, '\n', n)) != NULL)
				n = (size_t)(q - p);
			if (n > 0) {
				for (k = 0; blank && k < n; k++)
					blank = is_ws(p[k]);
				last = p[n - 1];
				len += n;
				r->cpos += n;
			}
			if (q != NULL) {
				r->cpos++;
				nl = 1;
				break;
			}
		}
		if (!nl) {
			if (len == 0)
				return 0;
			/* Shorter than at open: truncated under us; a
			 * half line is no row. */
			if (R_OFF(r) < r->size)
				return 0;
		} else
			r->line++;
		if (blank)
			continue;
		if (last == '\r')
			len--;

		if (len <= MMS_MAX_ROW_BYTES) {
			if ((rc = row_load(r, start, len)) == -1)
				goto fail;
			if (rc == 1)
				return 0;	/* truncated under us */
		}
		item_start(r, it, start, len, line);
		if (len > MMS_MAX_ROW_BYTES)
			row_too_big(it);
		else
			row_parse(r, it);
		return 1;
	}
fail:
	xasprintf(cause, "read: %s", strerror(errno));
	return -1;
}

/* The next byte that is not white space, not consumed: the byte, or -1
 * at the end of the file, -2 on a read error. */
static int
json_peek(struct batch_reader *r)
{
	unsigned char	c;
	int		rc;

	for (;;) {
		if ((rc = fill(r)) <= 0)
			return rc == 0 ? -1 : -2;
		c = r->chunk[r->cpos];
		if (!is_ws(c))
			return c;
		if (c == '\n')
			r->line++;
		r->cpos++;
	}
}

/*
 * Scan one JSON value starting at the current (non-white) byte, past its
 * last byte, without holding it.  Sets *LENP and *DEEPP (nested deeper
 * than BATCH_MAX_DEPTH).  0, or -1 at an unexpected end of file, -2 on a
 * read error.
 */
static int
json_scan_value(struct batch_reader *r, uint64_t *lenp, int *deepp)
{
	unsigned char	*p, c;
	uint64_t	 len = 0, depth = 0;
	size_t		 i, n;
	int		 rc, scalar, instr = 0, esc = 0, done = 0;

	*deepp = 0;
	c = r->chunk[r->cpos];
	scalar = c != '"' && c != '{' && c != '[';
	while (!done) {
		if ((rc = fill(r)) <= 0)
			return rc == 0 ? -1 : -2;
		p = r->chunk + r->cpos;
		n = r->clen - r->cpos;
		i = 0;
		if (scalar) {
			while (i < n && !is_ws(p[i]) && p[i] != ',' &&
			    p[i] != ']' && p[i] != '}')
				i++;
			done = i < n;
		} else {
			for (; i < n; i++) {
				c = p[i];
				if (instr) {
					if (esc)
						esc = 0;
					else if (c == '\\')
						esc = 1;
					else if (c == '"') {
						instr = 0;
						if (depth == 0) {
							i++;
							done = 1;
							break;
						}
					} else if (c == '\n')
						r->line++;
					continue;
				}
				if (c == '"')
					instr = 1;
				else if (c == '{' || c == '[') {
					if (++depth > BATCH_MAX_DEPTH)
						*deepp = 1;
				} else if (c == '}' || c == ']') {
					if (depth == 0 || --depth == 0) {
						i++;
						done = 1;
						break;
					}
				} else if (c == '\n')
					r->line++;
			}
		}
		len += i;
		r->cpos += i;
	}
	*lenp = len;
	return 0;
}

/* Find the rows array from the start of the file. */
static int
json_find_rows(struct batch_reader *r)
{
	uint64_t	len;
	int		c, deep, rc;

	if (skip_bom(r) == -1)
		return -2;
	if ((c = json_peek(r)) < 0)
		return c;
	r->cpos++;
	if (c == '[')
		return 0;
	if (c != '{')
		return -3;
	for (;;) {
		/* "key" : value, where the value of "rows" is the only
		 * array an envelope can hold. */
		if ((c = json_peek(r)) < 0)
			return c;
		if (c != '"')
			return -3;
		if ((rc = json_scan_value(r, &len, &deep)) != 0)
			return rc;
		if ((c = json_peek(r)) < 0)
			return c;
		if (c != ':')
			return -3;
		r->cpos++;
		if ((c = json_peek(r)) < 0)
			return c;
		if (c == '[') {
			r->cpos++;
			return 0;
		}
		if ((rc = json_scan_value(r, &len, &deep)) != 0)
			return rc;
		if ((c = json_peek(r)) < 0)
			return c;
		if (c != ',')
			return -3;
		r->cpos++;
	}
}

static int
json_next(struct batch_reader *r, struct batch_item *it, char **cause)
{
	uint64_t	start, line, len;
	int		c, rc, deep;

	if (r->js == JS_DONE)
		return 0;
	if (r->js == JS_START) {
		if ((rc = json_find_rows(r)) != 0)
			goto bad;
		r->js = JS_FIRST;
	}
	if ((c = json_peek(r)) < 0) {
		rc = c;
		goto bad;
	}
	if (c == ']') {
		r->js = JS_DONE;
		return 0;
	}
	if (r->js == JS_AFTER) {
		if (c != ',') {
			rc = -3;
			goto bad;
		}
		r->cpos++;
		if ((c = json_peek(r)) < 0) {
			rc = c;
			goto bad;
		}
	}
	if (c == ']' || c == ',') {
		rc = -3;
		goto bad;
	}

	start = R_OFF(r);
	line = r->line;
	if ((rc = json_scan_value(r, &len, &deep)) != 0)
		goto bad;
	if (len <= MMS_MAX_ROW_BYTES && !deep &&
	    (rc = row_load(r, start, len)) != 0) {
		rc = rc == 1 ? -1 : -2;
		goto bad;
	}
	r->js = JS_AFTER;
	item_start(r, it, start, len, line);
	if (len > MMS_MAX_ROW_BYTES)
		row_too_big(it);
	else if (deep)
		reason_set(it->reason, sizeof it->reason,
		    "row nested deeper than %d levels", BATCH_MAX_DEPTH);
	else
		row_parse(r, it);
	return 1;

bad:
	if (rc == -2)
		xasprintf(cause, "read: %s", strerror(errno));
	else if (rc == -1)
		*cause = xstrdup("batch changed while being read");
	else
		xasprintf(cause, "batch changed while being read "
		    "(unexpected byte at line %llu)",
		    (unsigned long long)r->line);
	return -1;
}

int
batch_next(struct batch_reader *r, struct batch_item *it, char **cause)
{
	int	rc;

	if (r->value != NULL) {
		yajl_tree_free(r->value);
		r->value = NULL;
	}
	/* Give back the memory of a big row. */
	if (r->row.cap > 1024 * 1024)
		buf_free(&r->row);
	if (r->failed != NULL) {
		*cause = xstrdup(r->failed);
		return -1;
	}
	if (r->ended)
		return 0;
	if (r->fmt == BATCH_NDJSON)
		rc = ndjson_next(r, it, cause);
	else
		rc = json_next(r, it, cause);
	if (rc == 0)
		r->ended = 1;
	else if (rc == -1)
		r->failed = xstrdup(*cause);
	return rc;
}
