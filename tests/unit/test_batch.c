/*
 * Unit tests for batch.c: the streaming batch reader and the .json
 * validator, on files written to a temporary directory.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmsyncd.h"
#include "tap.h"

#define MAXITEMS	64

struct got {
	int		 kind;
	uint64_t	 offset, length, line, row;
	char		 reason[256];
	char		*json;		/* the row as compact JSON, or NULL */
};

struct result {
	int		 rc;		/* of the last batch_next */
	char		*cause;
	size_t		 n;		/* items */
	size_t		 nbad;
	struct got	 items[MAXITEMS];
	struct batch_pos pos;		/* after the first STOP items */
};

static char	tmpdir[] = "/tmp/test_batch.XXXXXX";

static char *
path_of(const char *name)
{
	static char	p[512];

	snprintf(p, sizeof p, "%s/%s", tmpdir, name);
	return p;
}

static void
write_file(const char *name, const void *data, size_t len)
{
	int	fd;

	fd = open(path_of(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd == -1 || write(fd, data, len) != (ssize_t)len) {
		printf("Bail out! cannot write %s\n", name);
		exit(1);
	}
	close(fd);
}

static void
result_free(struct result *res)
{
	size_t	i;

	for (i = 0; i < res->n && i < MAXITEMS; i++)
		free(res->items[i].json);
	free(res->cause);
	memset(res, 0, sizeof *res);
}

/* Compact JSON of V, for comparing rows (independent of template.c). */
static void
compact(struct buf *b, yajl_val v)
{
	const char	*s;
	size_t		 i;

	switch (v->type) {
	case yajl_t_string:
		buf_addc(b, '"');
		for (s = v->u.string; *s != '\0'; s++) {
			if (*s == '"' || *s == '\\')
				buf_addc(b, '\\');
			buf_addc(b, *s);
		}
		buf_addc(b, '"');
		break;
	case yajl_t_number:
		buf_addstr(b, v->u.number.r);
		break;
	case yajl_t_object:
		buf_addc(b, '{');
		for (i = 0; i < v->u.object.len; i++) {
			buf_printf(b, "%s\"%s\":", i ? "," : "",
			    v->u.object.keys[i]);
			compact(b, v->u.object.values[i]);
		}
		buf_addc(b, '}');
		break;
	case yajl_t_array:
		buf_addc(b, '[');
		for (i = 0; i < v->u.array.len; i++) {
			if (i)
				buf_addc(b, ',');
			compact(b, v->u.array.values[i]);
		}
		buf_addc(b, ']');
		break;
	case yajl_t_true:
		buf_addstr(b, "true");
		break;
	case yajl_t_false:
		buf_addstr(b, "false");
		break;
	default:
		buf_addstr(b, "null");
		break;
	}
}

/*
 * Read NAME from POS (NULL: the start); stop after STOP items (0: read
 * all) and note the position there.
 */
static void
read_from(const char *name, const struct batch_pos *pos, size_t stop,
    struct result *res)
{
	struct batch_reader	*r;
	struct batch_item	 it;
	struct buf		 b;
	struct got		*g;
	char			*cause = NULL;
	int			 fd;

	memset(res, 0, sizeof *res);
	fd = open(path_of(name), O_RDONLY);
	r = batch_open(fd, batch_format_of(name), pos, &cause);
	if (r == NULL) {
		res->rc = -2;
		res->cause = cause;
		close(fd);
		return;
	}
	while ((res->rc = batch_next(r, &it, &res->cause)) == 1) {
		if (it.kind == BATCH_BAD_ROW)
			res->nbad++;
		if (res->n < MAXITEMS) {
			g = &res->items[res->n];
			g->kind = it.kind;
			g->offset = it.offset;
			g->length = it.length;
			g->line = it.line;
			g->row = it.row;
			memcpy(g->reason, it.reason, sizeof g->reason);
			if (it.kind == BATCH_ROW) {
				buf_init(&b);
				compact(&b, it.value);
				g->json = b.data;
			}
		}
		res->n++;
		if (stop != 0 && res->n == stop)
			break;
	}
	batch_position(r, &res->pos);
	batch_close(r);
	close(fd);
}

static void
read_all(const char *name, struct result *res)
{
	read_from(name, NULL, 0, res);
}

/* Write DATA as NAME and read it all. */
static void
try(const char *name, const char *data, struct result *res)
{
	write_file(name, data, strlen(data));
	read_all(name, res);
}

static int
validate(const char *name, uint64_t *rows, char *reason, size_t size)
{
	int	fd, rc;

	*reason = '\0';
	fd = open(path_of(name), O_RDONLY);
	rc = batch_validate_json(fd, rows, reason, size);
	close(fd);
	return rc;
}

/* Validate NAME with DATA: the result, with the reason in REASON. */
static int
try_validate(const char *name, const char *data, uint64_t *rows,
    char reason[256])
{
	write_file(name, data, strlen(data));
	*rows = (uint64_t)-1;
	return validate(name, rows, reason, 256);
}

static void
test_format_of(void)
{
	is_int(batch_format_of("a.ndjson"), BATCH_NDJSON, "a.ndjson");
	is_int(batch_format_of("a.jsonl"), BATCH_NDJSON, "a.jsonl");
	is_int(batch_format_of("a.json"), BATCH_JSON, "a.json");
	is_int(batch_format_of("/x/y/2024-01-01.b.json"), BATCH_JSON,
	    "a path");
	is_int(batch_format_of("a.ndjson.tmp"), -1, "a.ndjson.tmp");
	is_int(batch_format_of(".a.ndjson"), -1, "dot file");
	is_int(batch_format_of(".json"), -1, ".json alone");
	is_int(batch_format_of("a.JSON"), -1, "upper case");
	is_int(batch_format_of("a.txt"), -1, "a.txt");
	is_int(batch_format_of("ajson"), -1, "ajson");
	is_int(batch_format_of(""), -1, "empty name");
}

static void
test_ndjson_basic(void)
{
	struct result	res;

	try("good.ndjson", "{\"a\":1}\n{\"a\":\"two\"}\n{\"a\":[3]}\n", &res);
	is_int(res.rc, 0, "good: ends with 0");
	is_int(res.n, 3, "good: 3 rows");
	is_str(res.items[0].json, "{\"a\":1}", "good: row 1");
	is_str(res.items[1].json, "{\"a\":\"two\"}", "good: row 2");
	is_str(res.items[2].json, "{\"a\":[3]}", "good: row 3");
	is_int(res.items[2].line, 3, "good: line 3");
	is_int(res.items[2].row, 3, "good: row number 3");
	is_int(res.items[1].offset, 8, "good: offset of row 2");
	is_int(res.items[1].length, 11, "good: length of row 2");
	is_int(res.pos.offset, 8 + 12 + 10, "good: final position");
	is_int(res.pos.line, 4, "good: final line");
	is_int(res.pos.row, 3, "good: final row");
	result_free(&res);

	try("blank.jsonl", "\n{\"a\":1}\n   \n\t\r\n\n{\"a\":2}\n\n \n", &res);
	is_int(res.n, 2, "blank lines are not rows");
	is_int(res.items[0].line, 2, "blank: first row on line 2");
	is_int(res.items[1].line, 6, "blank: second row on line 6");
	is_int(res.items[1].row, 2, "blank: row numbers skip blanks");
	is_int(res.nbad, 0, "blank: no bad rows");
	result_free(&res);

	try("crlf.ndjson", "{\"a\":1}\r\n\r\n{\"a\":2}\r\n", &res);
	is_int(res.n, 2, "CRLF: 2 rows");
	is_int(res.items[0].length, 7, "CRLF: length without \\r");
	is_int(res.items[1].offset, 11, "CRLF: offset of row 2");
	is_int(res.items[1].line, 3, "CRLF: line of row 2");
	is_str(res.items[1].json, "{\"a\":2}", "CRLF: row 2");
	result_free(&res);

	try("bom.ndjson", "\xEF\xBB\xBF{\"a\":1}\n{\"b\":2}\n", &res);
	is_int(res.n, 2, "BOM: 2 rows");
	is_int(res.nbad, 0, "BOM: skipped");
	is_int(res.items[0].offset, 3, "BOM: row 1 starts after it");
	is_int(res.items[0].length, 7, "BOM: row 1 length");
	is_int(res.items[0].line, 1, "BOM: line 1");
	result_free(&res);

	try("zero.ndjson", "\n\n\n", &res);
	is_int(res.n, 0, "0-byte lines are blank");
	is_int(res.rc, 0, "0-byte lines: end");
	result_free(&res);

	try("nonl.ndjson", "{\"a\":1}\n{\"a\":2}", &res);
	is_int(res.n, 2, "last line without newline is a row");
	is_int(res.items[1].length, 7, "last line length");
	is_str(res.items[1].json, "{\"a\":2}", "last line content");
	is_int(res.pos.offset, 15, "position at the end");
	result_free(&res);

	try("nonlcr.ndjson", "{\"a\":1}\r", &res);
	is_int(res.n, 1, "last line with a lone \\r");
	is_int(res.nbad, 0, "lone \\r stripped");
	result_free(&res);

	try("empty.ndjson", "", &res);
	is_int(res.n, 0, "empty file: no rows");
	is_int(res.rc, 0, "empty file: ends");
	result_free(&res);
}

static void
test_ndjson_bad(void)
{
	struct result	res;
	const char	nul[] = "{\"a\":\"x\0y\"}\n{\"a\":2}\n\0\n";

	try("inval.ndjson", "{\"a\":1}\n{\"a\":\n{\"a\":3}\n{\"a\" 1}\n", &res);
	is_int(res.n, 4, "invalid: every line is an item");
	is_int(res.items[1].kind, BATCH_BAD_ROW, "invalid: bad row");
	is_int(res.items[1].line, 2, "invalid: its line");
	is_int(res.items[1].row, 2, "invalid: its row");
	ok(strncmp(res.items[1].reason, "line 2: invalid JSON: ", 22) == 0 &&
	    strchr(res.items[1].reason, '\n') == NULL,
	    "invalid: reason \"%s\"", res.items[1].reason);
	is_str(res.items[2].json, "{\"a\":3}", "invalid: the rest delivered");
	is_int(res.items[3].kind, BATCH_BAD_ROW, "invalid: no colon");
	printf("# %s\n", res.items[3].reason);
	result_free(&res);

	try("nonobj.ndjson", "[1,2]\n\"str\"\n42\ntrue\nnull\n{}\n", &res);
	is_int(res.n, 6, "non-objects: 6 items");
	is_int(res.nbad, 5, "non-objects: 5 bad rows");
	is_str(res.items[0].reason, "row is not a JSON object", "array");
	is_str(res.items[1].reason, "row is not a JSON object", "string");
	is_str(res.items[2].reason, "row is not a JSON object", "number");
	is_int(res.items[5].kind, BATCH_ROW, "{} is a row");
	result_free(&res);

	write_file("nul.ndjson", nul, sizeof nul - 1);
	read_all("nul.ndjson", &res);
	is_int(res.n, 3, "NUL: 3 items");
	is_int(res.items[0].kind, BATCH_BAD_ROW, "NUL inside a row: bad");
	printf("# %s\n", res.items[0].reason);
	is_int(res.items[0].length, 11, "NUL: length counts it");
	is_int(res.items[1].kind, BATCH_ROW, "NUL: next row fine");
	is_int(res.items[2].kind, BATCH_BAD_ROW, "a lone NUL is a bad row");
	result_free(&res);

	try("comment.ndjson", "{\"a\":1} // note\n/* x */{\"a\":1}\n"
	    "{\"a\":\"//not a comment\"}\n", &res);
	is_int(res.items[0].kind, BATCH_BAD_ROW, "comment after: bad");
	is_int(res.items[1].kind, BATCH_BAD_ROW, "comment before: bad");
	is_str(res.items[2].json, "{\"a\":\"//not a comment\"}",
	    "slashes in strings are fine");
	result_free(&res);

	try("utf8.ndjson", "{\"a\":\"\xff\xfe\"}\n{\"a\":\"\xc3\xa9\"}\n",
	    &res);
	is_int(res.items[0].kind, BATCH_BAD_ROW, "invalid UTF-8: bad");
	printf("# %s\n", res.items[0].reason);
	is_str(res.items[1].json, "{\"a\":\"\xc3\xa9\"}", "valid UTF-8 row");
	result_free(&res);

	try("trail.ndjson", "{\"a\":1}{\"b\":2}\n{\"a\":1} x\n", &res);
	is_int(res.nbad, 2, "two values on a line: bad");
	result_free(&res);
}

static void
test_ndjson_deep(void)
{
	struct result	 res;
	struct buf	 b;
	char		*copy;
	int		 i;

	buf_init(&b);
	/* Depth 64 (the row itself is level 1): fine. */
	for (i = 0; i < 64; i++)
		buf_addstr(&b, "{\"a\":");
	buf_addstr(&b, "1");
	for (i = 0; i < 64; i++)
		buf_addc(&b, '}');
	buf_addc(&b, '\n');
	/* Depth 65: too deep. */
	copy = xstrndup(b.data, b.len - 1);
	buf_addstr(&b, "{\"a\":");
	buf_addstr(&b, copy);
	buf_addstr(&b, "}\n");
	free(copy);
	/* A million brackets (and brackets in strings, which don't count). */
	buf_addstr(&b, "{\"s\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
	    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}\n");
	for (i = 0; i < 1000000; i++)
		buf_addc(&b, '[');
	buf_addc(&b, '\n');
	write_file("deep.ndjson", b.data, b.len);
	read_all("deep.ndjson", &res);
	is_int(res.n, 4, "deep: 4 items");
	is_int(res.items[0].kind, BATCH_ROW, "depth 64 is fine");
	is_int(res.items[1].kind, BATCH_BAD_ROW, "depth 65 is a bad row");
	is_str(res.items[1].reason, "row nested deeper than 64 levels",
	    "depth reason");
	is_int(res.items[2].kind, BATCH_ROW, "brackets in strings");
	is_int(res.items[3].kind, BATCH_BAD_ROW, "a million brackets");
	result_free(&res);
	buf_free(&b);
}

static void
test_ndjson_garbage(void)
{
	struct result	 res;
	unsigned char	*g;
	size_t		 i, n = 1024 * 1024;
	uint32_t	 x = 12345;

	g = xmalloc(n);
	for (i = 0; i < n; i++) {
		x = x * 1103515245 + 12345;
		g[i] = (unsigned char)(x >> 16);
	}
	write_file("garbage.ndjson", g, n);
	read_all("garbage.ndjson", &res);
	ok(res.rc == 0 && res.n > 0, "garbage: read through (%zu items)",
	    res.n);
	is_int(res.nbad, res.n, "garbage: only bad rows");
	result_free(&res);

	/* Garbage shaped like JSON: braces, quotes, backslashes. */
	for (i = 0; i < n; i++) {
		x = x * 1103515245 + 12345;
		g[i] = (unsigned char)"{}[]\"\\:,\n 1a"[(x >> 16) % 13];
	}
	write_file("garbage2.ndjson", g, n);
	read_all("garbage2.ndjson", &res);
	ok(res.rc == 0, "JSON-ish garbage: read through (%zu items, %zu bad)",
	    res.n, res.nbad);
	result_free(&res);

	write_file("garbage.json", g, n);
	{
		uint64_t	rows;
		char		reason[256];

		ok(validate("garbage.json", &rows, reason, sizeof reason) ==
		    -1, "JSON-ish garbage .json: invalid (%s)", reason);
	}
	free(g);
}

static void
test_ndjson_big(void)
{
	struct result	 res;
	char		*data;
	size_t		 n10 = 10 * 1024 * 1024, n17 = 17 * 1024 * 1024;
	size_t		 off;

	/* A 10 MB row, then a row over 16 MiB, then a small one. */
	data = xmalloc(n10 + n17 + 64);
	memcpy(data, "{\"big\":\"", 8);
	memset(data + 8, 'x', n10 - 10);
	memcpy(data + n10 - 2, "\"}\n", 3);
	off = n10 + 1;
	memcpy(data + off, "{\"huge\":\"", 9);
	memset(data + off + 9, 'y', n17 - 11);
	memcpy(data + off + n17 - 2, "\"}\n", 3);
	off += n17 + 1;
	memcpy(data + off, "{\"small\":1}", 11);
	off += 11;
	write_file("big.ndjson", data, off);
	free(data);

	read_all("big.ndjson", &res);
	is_int(res.n, 3, "big: 3 items");
	is_int(res.items[0].kind, BATCH_ROW, "10 MB row delivered");
	is_int(res.items[0].length, n10, "10 MB row length");
	ok(res.items[0].json != NULL && strlen(res.items[0].json) == n10,
	    "10 MB row intact");
	is_int(res.items[1].kind, BATCH_BAD_ROW, "17 MiB row is a bad row");
	is_str(res.items[1].reason, "row larger than 16 MiB", "its reason");
	is_int(res.items[1].offset, n10 + 1, "its offset");
	is_int(res.items[1].length, n17, "its length");
	is_int(res.items[1].line, 2, "its line");
	is_str(res.items[2].json, "{\"small\":1}", "the row after it");
	is_int(res.items[2].line, 3, "the row after it: line 3");
	result_free(&res);

	/* A row of exactly the limit is read; one more byte is not. */
	data = xmalloc(MMS_MAX_ROW_BYTES + 16);
	memcpy(data, "{\"a\":\"", 6);
	memset(data + 6, 'z', MMS_MAX_ROW_BYTES - 8);
	memcpy(data + MMS_MAX_ROW_BYTES - 2, "\"}\r\n", 4);
	write_file("limit.ndjson", data, MMS_MAX_ROW_BYTES + 2);
	read_all("limit.ndjson", &res);
	is_int(res.items[0].kind, BATCH_ROW, "row of exactly 16 MiB (CRLF)");
	result_free(&res);
	memcpy(data + MMS_MAX_ROW_BYTES - 2, "\" }\n", 4);
	write_file("limit1.ndjson", data, MMS_MAX_ROW_BYTES + 2);
	read_all("limit1.ndjson", &res);
	is_int(res.items[0].kind, BATCH_BAD_ROW, "row of 16 MiB + 1");
	result_free(&res);
	free(data);
}

static void
test_json_validate(void)
{
	char		reason[256];
	uint64_t	rows;
	struct buf	b;
	int		i;

	is_int(try_validate("v1.json", "[{\"a\":1},{\"a\":2}]", &rows, reason),
	    0, "array: valid");
	is_int(rows, 2, "array: 2 rows");
	is_int(try_validate("v2.json", "{\"mode\":\"insert\",\"rows\":"
	    "[{\"a\":1},{\"a\":{\"rows\":[1,2,3]}},{}]}", &rows, reason), 0,
	    "envelope insert: valid");
	is_int(rows, 3, "envelope: 3 rows");
	is_int(try_validate("v3.json", "{\"rows\":[{\"a\":1}],\"mode\":\"add\"}",
	    &rows, reason), 0, "envelope add, rows first: valid");
	is_int(rows, 1, "envelope add: 1 row");
	is_int(try_validate("v3b.json", "{\"rows\":[{\"a\":1}]}", &rows,
	    reason), 0, "envelope without mode: valid");
	is_int(try_validate("v4.json", "{\"mode\":\"upsert\",\"rows\":[]}",
	    &rows, reason), -1, "mode upsert: invalid");
	is_str(reason, "unsupported mode \"upsert\": only insert and add",
	    "mode upsert: reason");
	is_int(try_validate("v5.json", "{\"rows\":[{}],\"mode\":\"delete\"}",
	    &rows, reason), -1, "mode delete after rows: invalid");
	is_str(reason, "unsupported mode \"delete\": only insert and add",
	    "mode delete: reason");
	is_int(try_validate("v6.json", "{\"mode\":1,\"rows\":[]}", &rows,
	    reason), -1, "mode not a string");
	printf("# %s\n", reason);
	is_int(try_validate("v7.json", "{\"mode\":\"insert\"}", &rows, reason),
	    -1, "envelope without rows");
	printf("# %s\n", reason);
	is_int(try_validate("v8.json", "{\"rows\":{}}", &rows, reason), -1,
	    "rows not an array");
	printf("# %s\n", reason);
	is_int(try_validate("v9.json", "{\"rows\":[],\"extra\":1}", &rows,
	    reason), -1, "unknown envelope key");
	printf("# %s\n", reason);
	is_int(try_validate("v10.json", "{\"rows\":[],\"rows\":[]}", &rows,
	    reason), -1, "duplicate rows");
	is_int(try_validate("v11.json", "hello", &rows, reason), -1,
	    "not JSON");
	ok(strncmp(reason, "invalid JSON at line 1: ", 24) == 0,
	    "not JSON: reason \"%s\"", reason);
	is_int(try_validate("v12.json", "[{\"a\":1},\n\n{\"a\":]", &rows,
	    reason), -1, "broken on line 3");
	ok(strncmp(reason, "invalid JSON at line 3: ", 24) == 0,
	    "line counted: \"%s\"", reason);
	is_int(try_validate("v13.json", "[{\"a\":1}]\n x", &rows, reason), -1,
	    "trailing garbage");
	printf("# %s\n", reason);
	is_int(try_validate("v14.json", "[] []", &rows, reason), -1,
	    "two values");
	is_int(try_validate("v15.json", "[{\"a\":1}", &rows, reason), -1,
	    "unterminated");
	printf("# %s\n", reason);
	is_int(try_validate("v16.json", "", &rows, reason), -1, "empty file");
	is_str(reason, "empty file", "empty file: reason");
	is_int(try_validate("v17.json", " \n\t\n", &rows, reason), -1,
	    "white space only");
	is_str(reason, "empty file", "white space only: reason");
	is_int(try_validate("v18.json", "[]", &rows, reason), 0,
	    "empty array: valid");
	is_int(rows, 0, "empty array: 0 rows");
	is_int(try_validate("v19.json", "[1,\"s\",[2],{\"a\":1},null]", &rows,
	    reason), 0, "non-objects: valid file");
	is_int(rows, 5, "non-objects: 5 rows");
	is_int(try_validate("v20.json", "42", &rows, reason), -1,
	    "top-level number");
	printf("# %s\n", reason);
	is_int(try_validate("v21.json", "[{\"a\":1} // c\n]", &rows, reason),
	    -1, "comments are not JSON");
	is_int(try_validate("v22.json", "\xEF\xBB\xBF[{}]", &rows, reason), 0,
	    "BOM: valid");
	is_int(try_validate("v23.json", "[\"\xff\"]", &rows, reason), -1,
	    "invalid UTF-8");
	is_int(try_validate("v24.json", "[12345678901234567890123456789]",
	    &rows, reason), 0, "big integer: valid");
	is_int(try_validate("v25.json", "{\"rows\":[],\"mode\":\"\xc3\xa9\"}",
	    &rows, reason), -1, "UTF-8 mode");
	is_str(reason, "unsupported mode \"\xc3\xa9\": only insert and add",
	    "UTF-8 mode: reason");

	/* Long tokens: past what is fed to yajl, checked by the validator. */
	buf_init(&b);
	buf_addstr(&b, "[{\"s\":\"");
	for (i = 0; i < 100000; i++)
		buf_addstr(&b, i % 1000 == 0 ? "\\u00e9\\n\xc3\xa9\\\"" : "ab");
	buf_addstr(&b, "\"},{\"n\":-");
	for (i = 0; i < 100000; i++)
		buf_addc(&b, (char)('1' + i % 9));
	buf_addstr(&b, ".5e+");
	for (i = 0; i < 10000; i++)
		buf_addc(&b, '7');
	buf_addstr(&b, "}]");
	write_file("long.json", b.data, b.len);
	is_int(validate("long.json", &rows, reason, sizeof reason), 0,
	    "long string and number: valid");
	is_int(rows, 2, "long tokens: 2 rows");

	/* A string over many chunks: characters and escapes cut by the
	 * chunk edges. */
	buf_reset(&b);
	buf_addstr(&b, "[{\"s\":\"");
	for (i = 0; i < 200000; i++)
		buf_addstr(&b, i % 7 == 0 ? "\\u00e9" : i % 3 ? "\xe4\xb8\xad" :
		    "\\\\");
	buf_addstr(&b, "\"}]");
	write_file("chunks.json", b.data, b.len);
	is_int(validate("chunks.json", &rows, reason, sizeof reason), 0,
	    "string across chunk edges: valid (%s)", reason);
	{
		struct result	res;

		read_all("chunks.json", &res);
		ok(res.n == 1 && res.items[0].kind == BATCH_ROW &&
		    res.items[0].length == b.len - 2,
		    "string across chunk edges: read");
		result_free(&res);
	}
	buf_reset(&b);
	buf_addstr(&b, "[{\"s\":\"");
	for (i = 0; i < 100000; i++)
		buf_addstr(&b, "\xe4\xb8\xad");
	buf_addstr(&b, "\xe4\xb8\"}]");
	write_file("chunks.json", b.data, b.len);
	is_int(validate("chunks.json", &rows, reason, sizeof reason), -1,
	    "cut character at the end of a long string: invalid");

	{
		static const struct {
			const char	*bad, *what;
		} cases[] = {
			{ "\\x", "bad escape" },
			{ "\\u12G4", "bad hex" },
			{ "\x01", "control character" },
			{ "\n", "newline" },
			{ "\xc3(", "bad continuation" },
			{ "\xff", "bad lead byte" },
		};
		size_t	k, base;

		buf_reset(&b);
		buf_addstr(&b, "[\n{\"s\":\"");
		for (i = 0; i < 10000; i++)
			buf_addc(&b, 'x');
		base = b.len;
		for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
			b.len = base;
			buf_addstr(&b, cases[k].bad);
			buf_addstr(&b, "\"}]");
			write_file("longbad.json", b.data, b.len);
			is_int(validate("longbad.json", &rows, reason,
			    sizeof reason), -1, "long string with %s: invalid",
			    cases[k].what);
			ok(strncmp(reason, "invalid JSON at line 2: ", 24) == 0,
			    "  reason: %s", reason);
		}
		/* A leading zero far into a long number. */
		buf_reset(&b);
		buf_addstr(&b, "[0");
		for (i = 0; i < 10000; i++)
			buf_addc(&b, '1');
		buf_addstr(&b, "]");
		write_file("longbad.json", b.data, b.len);
		is_int(validate("longbad.json", &rows, reason, sizeof reason),
		    -1, "long number with a leading zero: invalid");
		buf_reset(&b);
		buf_addstr(&b, "[1");
		for (i = 0; i < 10000; i++)
			buf_addc(&b, '1');
		buf_addstr(&b, "x]");
		write_file("longbad.json", b.data, b.len);
		is_int(validate("longbad.json", &rows, reason, sizeof reason),
		    -1, "long number then a letter: invalid");
		/* Unterminated long string. */
		buf_reset(&b);
		buf_addstr(&b, "[\"");
		for (i = 0; i < 10000; i++)
			buf_addc(&b, 'x');
		write_file("longbad.json", b.data, b.len);
		is_int(validate("longbad.json", &rows, reason, sizeof reason),
		    -1, "unterminated long string: invalid (%s)", reason);
	}

	/* Deep nesting: too deep for the validator to follow. */
	buf_reset(&b);
	for (i = 0; i < 100000; i++)
		buf_addc(&b, '[');
	for (i = 0; i < 100000; i++)
		buf_addc(&b, ']');
	write_file("deep.json", b.data, b.len);
	is_int(validate("deep.json", &rows, reason, sizeof reason), -1,
	    "100000 levels: set aside");
	printf("# %s\n", reason);
	buf_free(&b);
}

static void
test_json_read(void)
{
	struct result	 res;
	const char	*data;
	char		 reason[256];
	uint64_t	 rows;
	struct buf	 b;
	int		 i;

	data = "[{\"a\":1},\n {\"a\":\"]}\\\"[{\"} ,\n\t{\"a\":[3, {}]}\n]\n";
	try("arr.json", data, &res);
	is_int(res.rc, 0, "array: ends");
	is_int(res.n, 3, "array: 3 rows");
	is_str(res.items[0].json, "{\"a\":1}", "array: row 1");
	is_str(res.items[1].json, "{\"a\":\"]}\\\"[{\"}",
	    "array: row 2 with brackets in a string");
	is_str(res.items[2].json, "{\"a\":[3,{}]}", "array: row 3");
	is_int(res.items[1].line, 2, "array: row 2 on line 2");
	is_int(res.items[2].line, 3, "array: row 3 on line 3");
	is_int(res.items[1].offset, 11, "array: row 2 offset");
	is_int(res.items[1].length, 14, "array: row 2 length");
	ok(memcmp(data + res.items[2].offset, "{\"a\":[3, {}]}",
	    res.items[2].length) == 0 && res.items[2].length == 13,
	    "array: row 3 bytes as they were");
	is_int(res.items[2].row, 3, "array: row number 3");
	result_free(&res);

	try("env.json", "{\"mode\":\"insert\",\n\"rows\":[{\"a\":1},\n{\"a\":2}]}",
	    &res);
	is_int(res.n, 2, "envelope: 2 rows");
	is_str(res.items[1].json, "{\"a\":2}", "envelope: row 2");
	is_int(res.items[1].line, 3, "envelope: row 2 on line 3");
	result_free(&res);

	try("env2.json", "{ \"rows\" : [ {\"a\":1} , {\"b\":[]} ] , "
	    "\"mode\" : \"add\" }", &res);
	is_int(res.n, 2, "envelope, rows first: 2 rows");
	is_str(res.items[1].json, "{\"b\":[]}", "envelope, rows first: row 2");
	result_free(&res);

	try("env3.json", "{\"mode\":\"a\\\"d]d\",\"rows\":[{\"x\":1}]}", &res);
	is_int(res.n, 1, "envelope: escapes in the mode are skipped");
	result_free(&res);

	try("nonobj.json", "[1, \"s\", [2], {\"a\":1}, null, -2.5e3 ,true]",
	    &res);
	is_int(res.n, 7, "non-objects: 7 items");
	is_int(res.nbad, 6, "non-objects: 6 bad rows");
	is_str(res.items[0].reason, "row is not a JSON object",
	    "non-objects: reason");
	is_int(res.items[3].kind, BATCH_ROW, "non-objects: the object");
	is_int(res.items[5].length, 6, "non-objects: number length");
	result_free(&res);

	try("empty.json", "[ ]", &res);
	is_int(res.n, 0, "empty array: no rows");
	is_int(res.rc, 0, "empty array: ends");
	result_free(&res);

	try("emptyenv.json", "{\"rows\":[],\"mode\":\"add\"}", &res);
	is_int(res.n, 0, "empty envelope: no rows");
	result_free(&res);

	try("bom.json", "\xEF\xBB\xBF[{\"a\":1}]", &res);
	is_int(res.n, 1, "BOM: 1 row");
	is_int(res.items[0].offset, 4, "BOM: offset");
	result_free(&res);

	/* An empty file is not valid, and the reader ends it early. */
	try("zero.json", "", &res);
	is_int(res.rc, -1, "reading an empty .json: -1");
	result_free(&res);

	/* A deep element is a bad row; a big one too. */
	buf_init(&b);
	buf_addstr(&b, "[");
	for (i = 0; i < 70; i++)
		buf_addstr(&b, "{\"a\":");
	buf_addc(&b, '1');
	for (i = 0; i < 70; i++)
		buf_addc(&b, '}');
	buf_addstr(&b, ",{\"big\":\"");
	for (i = 0; i < 17 * 1024 * 1024; i++)
		buf_addc(&b, 'q');
	buf_addstr(&b, "\"},\n{\"ok\":true}]");
	write_file("deepbig.json", b.data, b.len);
	is_int(validate("deepbig.json", &rows, reason, sizeof reason), 0,
	    "deep and big: valid file");
	is_int(rows, 3, "deep and big: 3 rows");
	read_all("deepbig.json", &res);
	is_int(res.n, 3, "deep and big: 3 items");
	is_str(res.items[0].reason, "row nested deeper than 64 levels",
	    "deep element: bad row");
	is_str(res.items[1].reason, "row larger than 16 MiB",
	    "big element: bad row");
	is_int(res.items[1].length, 17 * 1024 * 1024 + 10, "big: length");
	is_str(res.items[2].json, "{\"ok\":true}", "the row after");
	is_int(res.items[2].line, 2, "the row after: line 2");
	result_free(&res);
	buf_free(&b);
}

static void
test_resume_one(const char *name, const char *data, const char *what,
    int line4, int line6)
{
	struct result	res, again;

	try(name, data, &res);
	is_int(res.n, 6, "%s: 6 rows in all", what);
	result_free(&res);

	read_from(name, NULL, 3, &res);
	is_int(res.n, 3, "%s: read 3", what);
	is_int(res.pos.row, 3, "%s: position row 3", what);
	read_from(name, &res.pos, 0, &again);
	is_int(again.n, 3, "%s: 3 more after resuming", what);
	is_int(again.items[0].row, 4, "%s: row 4 next", what);
	is_int(again.items[0].line, line4, "%s: on line %d", what, line4);
	is_str(again.items[0].json, "{\"n\":4}", "%s: row 4 content", what);
	is_int(again.items[2].row, 6, "%s: row 6 last", what);
	is_int(again.items[2].line, line6, "%s: on line %d", what, line6);
	is_int(again.rc, 0, "%s: ends", what);
	result_free(&again);

	/* Resuming from the end gives nothing more. */
	result_free(&res);
	read_all(name, &res);
	read_from(name, &res.pos, 0, &again);
	is_int(again.n, 0, "%s: nothing after the end", what);
	is_int(again.rc, 0, "%s: end after the end", what);
	result_free(&again);
	result_free(&res);
}

static void
test_resume(void)
{
	test_resume_one("res.ndjson", "{\"n\":1}\n{\"n\":2}\n\n{\"n\":3}\n"
	    "{\"n\":4}\n\n\n{\"n\":5}\n{\"n\":6}\n", "ndjson", 5, 9);
	test_resume_one("res.json", "[{\"n\":1},\n{\"n\":2},\n\n{\"n\":3},\n"
	    "{\"n\":4},\n\n\n{\"n\":5},\n{\"n\":6}]\n", "json array", 5, 9);
	test_resume_one("res2.json", "{\"rows\":[{\"n\":1},\n{\"n\":2},\n\n"
	    "{\"n\":3}\n,\n{\"n\":4},\n\n\n{\"n\":5},\n{\"n\":6}],\n"
	    "\"mode\":\"insert\"}", "json envelope", 6, 10);
}

static void
truncate_one(const char *name, int json)
{
	struct batch_reader	*r;
	struct batch_item	 it;
	struct buf		 b;
	char			*cause = NULL;
	int			 fd, rc, i, n = 0;

	buf_init(&b);
	if (json)
		buf_addc(&b, '[');
	for (i = 0; i < 20000; i++)
		buf_printf(&b, "%s{\"n\":%d,\"pad\":\"xxxxxxxxxxxxxxxxxxxx\"}%s",
		    json && i > 0 ? "," : "", i, json ? "" : "\n");
	if (json)
		buf_addc(&b, ']');
	write_file(name, b.data, b.len);
	buf_free(&b);

	fd = open(path_of(name), O_RDWR);
	r = batch_open(fd, batch_format_of(name), NULL, &cause);
	for (i = 0; i < 5; i++)
		if (batch_next(r, &it, &cause) == 1)
			n++;
	if (ftruncate(fd, 100000) == -1)
		printf("# ftruncate: %s\n", strerror(errno));
	while ((rc = batch_next(r, &it, &cause)) == 1)
		n++;
	ok(n > 5 && n < 20000, "%s truncated: stopped after %d rows", name,
	    n);
	if (json) {
		is_int(rc, -1, "%s truncated: -1", name);
		is_str(cause, "batch changed while being read",
		    "%s truncated: cause", name);
		free(cause);
		cause = NULL;
		is_int(batch_next(r, &it, &cause), -1, "%s: -1 again", name);
		free(cause);
	} else {
		is_int(rc, 0, "%s truncated: ends cleanly", name);
		is_int(batch_next(r, &it, &cause), 0, "%s: 0 again", name);
	}
	batch_close(r);
	close(fd);
}

static void
test_truncated(void)
{
	truncate_one("trunc.ndjson", 0);
	truncate_one("trunc.json", 1);
}

static void
test_io_error(void)
{
	struct batch_reader	*r;
	struct batch_item	 it;
	char			*cause = NULL;
	int			 fd;

	/* A directory: pread fails with EISDIR. */
	fd = open(tmpdir, O_RDONLY | O_DIRECTORY);
	r = batch_open(fd, BATCH_NDJSON, NULL, &cause);
	ok(r != NULL, "open on a directory");
	is_int(batch_next(r, &it, &cause), -1, "read error: -1");
	ok(cause != NULL && strncmp(cause, "read: ", 6) == 0,
	    "read error: cause \"%s\"", cause ? cause : "");
	free(cause);
	batch_close(r);
	close(fd);
}

static void
cleanup(void)
{
	char	cmd[600];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
}

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_format_of();
	test_ndjson_basic();
	test_ndjson_bad();
	test_ndjson_deep();
	test_ndjson_garbage();
	test_ndjson_big();
	test_json_validate();
	test_json_read();
	test_resume();
	test_truncated();
	test_io_error();
	cleanup();
	return tap_done();
}
