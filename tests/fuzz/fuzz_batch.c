/*
 * fuzz_batch: the batch reader (.ndjson and .json) and the .json
 * validator, on the input written to a memfd.
 *
 * Built with src/batch.c compiled for this target with a tiny chunk and
 * token feed (BATCH_CHUNK, BATCH_TOKEN_FEED; see Makefile.am), so that
 * small inputs cross every chunk and token edge the production sizes only
 * meet in large files.
 *
 * Every input is read both ways.  The checks (any failure aborts):
 *
 *   all reads    row numbers go up by one; each row's bytes lie within the
 *                file, after the previous row's; lines never go down and
 *                are 1 + the newlines before the row; the position after
 *                a row is past it, in the file, with the right line; a
 *                good row holds an object, a bad one a reason that is a
 *                non-empty, valid UTF-8 C string; no more items than bytes.
 *   resume       reading again from batch_position() after half the items
 *                gives exactly the rest (same items, same ending).
 *   .ndjson      the items are exactly the non-blank lines (BOM, "\r\n",
 *                white-space-only lines, a last line without "\n"), each
 *                a good row iff it is a strict JSON object no deeper than
 *                64, with the same value; the read ends with 0.
 *   .json        when batch_validate_json() accepts the file, the read
 *                ends with 0, the items are the rows array's elements
 *                (as many as the validator counted), objects no deeper
 *                than 64 being good rows with the same value.  When it
 *                refuses, the reason is a non-empty valid UTF-8 string;
 *                the daemon reads no further, but the reader must still
 *                be memory safe.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* memfd_create */
#endif

#include <sys/mman.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmsyncd.h"
#include "fuzz_oracle.h"

#define ROW_MAX_DEPTH	64	/* batch.c BATCH_MAX_DEPTH */

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct rec {
	int		 kind;
	uint64_t	 offset, length, line, row;
	char		 reason[256];
	char		*json;		/* a good row's value, compact */
	struct batch_pos after;
};

struct run {
	struct rec	*recs;
	size_t		 n, cap;
	int		 rc;		/* of the last batch_next */
	char		*cause;
};

static int		 memfd = -1;
static const uint8_t	*cur;		/* the input, for messages */
static size_t		 cursize;

static void	fail(const char *, ...) MMS_PRINTF(1, 2) MMS_NORETURN;

static void
fail(const char *fmt, ...)
{
	va_list	ap;

	fprintf(stderr, "fuzz_batch: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  input: %zu bytes\n", cursize);
	abort();
}

static void
check_reason(const char *r, size_t size, const char *what)
{
	size_t	len = strnlen(r, size);

	if (len == size)
		fail("%s: not NUL-terminated", what);
	if (len == 0)
		fail("%s: empty", what);
	if (!utf8_ok((const unsigned char *)r, len))
		fail("%s: not valid UTF-8: [%s]", what, r);
}

static char *
compact(yajl_val v)
{
	struct buf	b;

	buf_init(&b);
	json_append_compact(&b, v);
	return b.data;
}

static int
is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
	    c == '\f';
}

static uint64_t
line_at(uint64_t off)
{
	uint64_t	i, line = 1;

	for (i = 0; i < off && i < cursize; i++)
		if (cur[i] == '\n')
			line++;
	return line;
}

static void
run_free(struct run *r)
{
	size_t	i;

	for (i = 0; i < r->n; i++)
		free(r->recs[i].json);
	free(r->recs);
	free(r->cause);
	memset(r, 0, sizeof *r);
}

/* Read everything from POS (NULL: the start), checking as we go. */
static void
read_all(enum batch_format fmt, const struct batch_pos *pos, struct run *out,
    int lines_exact)
{
	struct batch_reader	*br;
	struct batch_item	 it;
	struct batch_pos	 p, start = { 0, 1, 0 };
	struct rec		*rc;
	uint64_t		 prev_end, prev_line;
	char			*cause = NULL;
	const char		*fname = fmt == BATCH_JSON ? "json" : "ndjson";

	memset(out, 0, sizeof *out);
	if (pos != NULL)
		start = *pos;
	if ((br = batch_open(memfd, fmt, pos, &cause)) == NULL)
		fail("%s: batch_open: %s", fname, cause);
	prev_end = start.offset;
	prev_line = start.line;
	for (;;) {
		memset(&it, 0xA5, sizeof it);
		out->rc = batch_next(br, &it, &cause);
		if (out->rc != 1)
			break;
		if (out->n > cursize + 1)
			fail("%s: more items than bytes", fname);
		if (out->n == out->cap) {
			out->cap = out->cap ? out->cap * 2 : 16;
			out->recs = xreallocarray(out->recs, out->cap,
			    sizeof *out->recs);
		}
		rc = &out->recs[out->n++];
		memset(rc, 0, sizeof *rc);
		rc->kind = it.kind;
		rc->offset = it.offset;
		rc->length = it.length;
		rc->line = it.line;
		rc->row = it.row;

		if (it.row != start.row + out->n)
			fail("%s: item %zu has row number %llu", fname, out->n,
			    (unsigned long long)it.row);
		if (it.offset > cursize || it.length > cursize - it.offset)
			fail("%s: row %llu at %llu+%llu is past the end (%zu)",
			    fname, (unsigned long long)it.row,
			    (unsigned long long)it.offset,
			    (unsigned long long)it.length, cursize);
		if (it.offset < prev_end)
			fail("%s: row %llu at %llu starts before the end of "
			    "the previous one (%llu)", fname,
			    (unsigned long long)it.row,
			    (unsigned long long)it.offset,
			    (unsigned long long)prev_end);
		if (it.line < prev_line || it.line < 1)
			fail("%s: row %llu on line %llu, after line %llu",
			    fname, (unsigned long long)it.row,
			    (unsigned long long)it.line,
			    (unsigned long long)prev_line);
		if (lines_exact && it.line != line_at(it.offset))
			fail("%s: row %llu at %llu says line %llu, is on %llu",
			    fname, (unsigned long long)it.row,
			    (unsigned long long)it.offset,
			    (unsigned long long)it.line,
			    (unsigned long long)line_at(it.offset));
		if (it.kind == BATCH_ROW) {
			if (it.value == NULL || !YAJL_IS_OBJECT(it.value))
				fail("%s: row %llu is good but not an object",
				    fname, (unsigned long long)it.row);
			rc->json = compact(it.value);
		} else if (it.kind == BATCH_BAD_ROW) {
			check_reason(it.reason, sizeof it.reason,
			    "bad row reason");
			memcpy(rc->reason, it.reason, sizeof rc->reason);
		} else
			fail("%s: item kind %d", fname, (int)it.kind);

		batch_position(br, &p);
		rc->after = p;
		if (p.row != it.row || p.offset < it.offset + it.length ||
		    p.offset > cursize)
			fail("%s: position after row %llu (%llu+%llu) is "
			    "row %llu offset %llu", fname,
			    (unsigned long long)it.row,
			    (unsigned long long)it.offset,
			    (unsigned long long)it.length,
			    (unsigned long long)p.row,
			    (unsigned long long)p.offset);
		if (lines_exact && p.line != line_at(p.offset))
			fail("%s: position after row %llu says line %llu, is "
			    "%llu", fname, (unsigned long long)it.row,
			    (unsigned long long)p.line,
			    (unsigned long long)line_at(p.offset));
		prev_end = it.offset + it.length;
		prev_line = it.line;
	}
	if (out->rc == -1) {
		if (cause == NULL)
			fail("%s: -1 without a cause", fname);
		check_reason(cause, strlen(cause) + 1, "batch_next cause");
		out->cause = cause;
	} else if (out->rc != 0)
		fail("%s: batch_next returned %d", fname, out->rc);
	/* Once ended, it stays ended. */
	cause = NULL;
	if (batch_next(br, &it, &cause) != out->rc)
		fail("%s: batch_next does not repeat its ending", fname);
	free(cause);
	batch_close(br);
}

/* Read again from after half the items: the rest must be the same. */
static void
check_resume(enum batch_format fmt, const struct run *all, int lines_exact)
{
	struct run	 rest;
	size_t		 k, i;
	const struct rec *a, *b;
	const char	*fname = fmt == BATCH_JSON ? "json" : "ndjson";

	if (all->n == 0)
		return;
	k = (all->n + 1) / 2;		/* 1..n */
	read_all(fmt, &all->recs[k - 1].after, &rest, lines_exact);
	if (rest.n != all->n - k)
		fail("%s: resumed after %zu of %zu items, got %zu more",
		    fname, k, all->n, rest.n);
	for (i = 0; i < rest.n; i++) {
		a = &all->recs[k + i];
		b = &rest.recs[i];
		if (a->kind != b->kind || a->offset != b->offset ||
		    a->length != b->length || a->line != b->line ||
		    a->row != b->row || strcmp(a->reason, b->reason) != 0 ||
		    (a->json == NULL) != (b->json == NULL) ||
		    (a->json != NULL && strcmp(a->json, b->json) != 0) ||
		    a->after.offset != b->after.offset ||
		    a->after.line != b->after.line ||
		    a->after.row != b->after.row)
			fail("%s: resumed read differs at row %llu", fname,
			    (unsigned long long)a->row);
	}
	if (rest.rc != all->rc)
		fail("%s: resumed read ends with %d, not %d", fname, rest.rc,
		    all->rc);
	run_free(&rest);
}

/* ---------------------------------------------------------- oracles */

static int
value_depth(yajl_val v)
{
	size_t	i;
	int	d, max = 0;

	if (YAJL_IS_OBJECT(v)) {
		for (i = 0; i < v->u.object.len; i++)
			if ((d = value_depth(v->u.object.values[i])) > max)
				max = d;
		return max + 1;
	}
	if (YAJL_IS_ARRAY(v)) {
		for (i = 0; i < v->u.array.len; i++)
			if ((d = value_depth(v->u.array.values[i])) > max)
				max = d;
		return max + 1;
	}
	return 0;
}

/*
 * What one .ndjson line should give: its compact value when it is a good
 * row, NULL when it is a bad one.  Strict JSON: no NUL, no comment (the
 * first '/' outside a string), no deeper than 64, an object.
 */
static char *
expect_line(const uint8_t *s, size_t len)
{
	char	*text, *json = NULL, err[128];
	size_t	 i;
	int	 depth = 0, instr = 0, esc = 0;
	yajl_val v;

	if (memchr(s, '\0', len) != NULL)
		return NULL;
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
		if (s[i] == '"')
			instr = 1;
		else if (s[i] == '/')
			return NULL;
		else if ((s[i] == '{' || s[i] == '[') &&
		    ++depth > ROW_MAX_DEPTH)
			return NULL;
		else if (s[i] == '}' || s[i] == ']')
			depth--;
	}
	text = xstrndup((const char *)s, len);
	if ((v = yajl_tree_parse(text, err, sizeof err)) != NULL) {
		if (YAJL_IS_OBJECT(v))
			json = compact(v);
		yajl_tree_free(v);
	}
	free(text);
	return json;
}

static void
check_rec(const char *fname, const struct rec *r, uint64_t offset,
    uint64_t length, uint64_t line, const char *json)
{
	if (r->offset != offset || r->length != length || r->line != line)
		fail("%s: row %llu is at %llu+%llu line %llu, expected "
		    "%llu+%llu line %llu", fname, (unsigned long long)r->row,
		    (unsigned long long)r->offset,
		    (unsigned long long)r->length, (unsigned long long)r->line,
		    (unsigned long long)offset, (unsigned long long)length,
		    (unsigned long long)line);
	if ((json != NULL) != (r->kind == BATCH_ROW))
		fail("%s: row %llu is %s, expected %s (%s)", fname,
		    (unsigned long long)r->row,
		    r->kind == BATCH_ROW ? "good" : "bad",
		    json != NULL ? "good" : "bad",
		    r->kind == BATCH_ROW ? "" : r->reason);
	if (json != NULL && strcmp(json, r->json) != 0)
		fail("%s: row %llu is %s, expected %s", fname,
		    (unsigned long long)r->row, r->json, json);
}

static void
oracle_ndjson(const struct run *run)
{
	size_t		 i = 0, start, end, len, k, n = 0;
	uint64_t	 line = 1;
	int		 blank;
	char		*json;

	if (run->rc != 0)
		fail("ndjson: the read ended with %d (%s)", run->rc,
		    run->cause ? run->cause : "");
	if (cursize >= 3 && memcmp(cur, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	while (i < cursize) {
		start = i;
		while (i < cursize && cur[i] != '\n')
			i++;
		end = i;
		blank = 1;
		for (k = start; k < end && blank; k++)
			blank = is_ws(cur[k]);
		if (!blank) {
			len = end - start;
			if (cur[end - 1] == '\r')
				len--;
			if (n >= run->n)
				fail("ndjson: line %llu is missing",
				    (unsigned long long)line);
			json = expect_line(cur + start, len);
			check_rec("ndjson", &run->recs[n], start, len, line,
			    json);
			free(json);
			n++;
		}
		if (i < cursize) {
			i++;		/* the '\n' */
			line++;
		}
	}
	if (n != run->n)
		fail("ndjson: %zu rows, expected %zu", run->n, n);
}

static void
oracle_json(const struct run *run, uint64_t nrows)
{
	char		*text, *json, err[256];
	size_t		 skip = 0, i, nel;
	yajl_val	 root, rows = NULL, el;
	const char	*key;

	if (run->rc != 0)
		fail("json: valid file, yet the read ended with %d (%s)",
		    run->rc, run->cause ? run->cause : "");
	if (run->n != nrows)
		fail("json: the validator counted %llu rows, the reader "
		    "gave %zu", (unsigned long long)nrows, run->n);
	if (cursize >= 3 && memcmp(cur, "\xEF\xBB\xBF", 3) == 0)
		skip = 3;
	if (memchr(cur + skip, '\0', cursize - skip) != NULL)
		fail("json: the validator took a NUL byte");
	text = xstrndup((const char *)cur + skip, cursize - skip);
	if ((root = yajl_tree_parse(text, err, sizeof err)) == NULL)
		fail("json: valid for the validator, not for yajl_tree: %s",
		    err);
	if (YAJL_IS_ARRAY(root))
		rows = root;
	else if (YAJL_IS_OBJECT(root)) {
		for (i = 0; i < root->u.object.len; i++) {
			key = root->u.object.keys[i];
			if (strcmp(key, "rows") == 0)
				rows = root->u.object.values[i];
			else if (strcmp(key, "mode") != 0)
				fail("json: envelope key '%s' was accepted",
				    key);
			else if (!YAJL_IS_STRING(root->u.object.values[i]) ||
			    (strcmp(root->u.object.values[i]->u.string,
			    "insert") != 0 &&
			    strcmp(root->u.object.values[i]->u.string,
			    "add") != 0))
				fail("json: a bad mode was accepted");
		}
	}
	if (rows == NULL || !YAJL_IS_ARRAY(rows))
		fail("json: accepted without a rows array");
	nel = rows->u.array.len;
	if (nel != run->n)
		fail("json: %zu elements, %zu items", nel, run->n);
	for (i = 0; i < nel; i++) {
		el = rows->u.array.values[i];
		json = YAJL_IS_OBJECT(el) && value_depth(el) <= ROW_MAX_DEPTH ?
		    compact(el) : NULL;
		if ((json != NULL) != (run->recs[i].kind == BATCH_ROW) ||
		    (json != NULL && strcmp(json, run->recs[i].json) != 0))
			fail("json: element %zu: expected %s, got %s (%s)", i,
			    json != NULL ? json : "a bad row",
			    run->recs[i].kind == BATCH_ROW ? run->recs[i].json :
			    "a bad row", run->recs[i].reason);
		free(json);
	}
	yajl_tree_free(root);
	free(text);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init("fuzz_batch");
	log_set_level(LOG_LEVEL_ERROR);
	if ((memfd = memfd_create("fuzz_batch", MFD_CLOEXEC)) == -1) {
		perror("memfd_create");
		abort();
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run	 run;
	uint64_t	 nrows = UINT64_MAX;
	char		 reason[256];
	size_t		 done = 0;
	ssize_t		 n;
	int		 valid;

	cur = data;
	cursize = size;
	if (ftruncate(memfd, 0) == -1)
		abort();
	while (done < size) {
		if ((n = pwrite(memfd, data + done, size - done,
		    (off_t)done)) <= 0)
			abort();
		done += (size_t)n;
	}

	/* .json: validate, then read as the daemon would (and also when
	 * the validator refused, for memory safety only). */
	memset(reason, 0xA5, sizeof reason);
	valid = batch_validate_json(memfd, &nrows, reason, sizeof reason) == 0;
	if (!valid)
		check_reason(reason, sizeof reason, "validator reason");
	read_all(BATCH_JSON, NULL, &run, valid);
	if (valid)
		oracle_json(&run, nrows);
	check_resume(BATCH_JSON, &run, valid);
	run_free(&run);

	/* .ndjson */
	read_all(BATCH_NDJSON, NULL, &run, 1);
	oracle_ndjson(&run);
	check_resume(BATCH_NDJSON, &run, 1);
	run_free(&run);
	return 0;
}
