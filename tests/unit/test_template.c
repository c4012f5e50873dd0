/*
 * Unit tests for template.c: compile once, render rows.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmsyncd.h"
#include "tap.h"

/* Render SRC over the JSON row JSON; the result is a static buffer. */
static const char *
render(const char *src, const char *json)
{
	static struct buf	 out;
	struct template		*t;
	yajl_val		 row;
	char			*cause = NULL, err[256];

	buf_free(&out);
	if ((t = template_compile(src, &cause)) == NULL) {
		printf("# compile failed: %s\n", cause);
		free(cause);
		return "(compile error)";
	}
	if ((row = yajl_tree_parse(json, err, sizeof err)) == NULL) {
		printf("# bad test JSON: %s\n", err);
		template_free(t);
		return "(bad json)";
	}
	template_render(t, row, &out);
	yajl_tree_free(row);
	template_free(t);
	return buf_cstr(&out);
}

static void
test_basic(void)
{
	const char *row = "{\"name\":\"Ada\",\"email\":\"ada@example.com\","
	    "\"first name\":\"A\",\"a\":{\"b\":\"ab\",\"c\":{\"d\":\"abcd\"}}}";

	is_str(render("hello", row), "hello", "no placeholder");
	is_str(render("", row), "", "empty template");
	is_str(render("New lead: {{name}} ({{email}})", row),
	    "New lead: Ada (ada@example.com)", "plain fields");
	is_str(render("{{ name }}|{{\tname\t}}|{{  name}}", row),
	    "Ada|Ada|Ada", "spaces and tabs inside the braces");
	is_str(render("{{first name}} {{ first name }}", row), "A A",
	    "inner spaces belong to the name");
	is_str(render("{{a.b}}", row), "ab", "nested a.b");
	is_str(render("{{ a.c.d }}", row), "abcd", "nested a.c.d");
	is_str(render("{{a.x}}", row), "{{a.x}}", "missing nested field");
	is_str(render("{{a.b.c}}", row), "{{a.b.c}}",
	    "path through a string");
	is_str(render("[{{ missing  }}]", row), "[{{ missing  }}]",
	    "missing field left as written, spaces kept");
	is_str(render("{{}}", row), "{{}}", "{{}} is literal");
	is_str(render("{{ }}", row), "{{ }}", "{{ }} is literal");
	is_str(render("{{\t}}", row), "{{\t}}", "{{<tab>}} is literal");
	is_str(render("x {{name", row), "x {{name", "unclosed {{ is literal");
	is_str(render("{{name}", row), "{{name}", "{{name} is literal");
	is_str(render("a }} b", row), "a }} b", "lone }} is literal");
	is_str(render("{ name }", row), "{ name }", "single braces");
	is_str(render("{", row), "{", "lone {");
	is_str(render("}", row), "}", "lone }");
	is_str(render("{{", row), "{{", "lone {{");
	is_str(render("{{{name}}}", row), "{Ada}",
	    "{{{name}}} renders the value in braces");
	is_str(render("{{{{name}}}}", row), "{{Ada}}",
	    "{{{{name}}}} keeps the outer braces");
	is_str(render("{{name}}{{email}}", row), "Adaada@example.com",
	    "adjacent placeholders");
	is_str(render("{{name}}}}", row), "Ada}}", "placeholder then }}");
	is_str(render("{{ {{name}} }}", row), "{{ Ada }}",
	    "placeholder inside braces");
	is_str(render("{{na\nme}}", row), "{{na\nme}}",
	    "newline inside braces is literal");
	is_str(render("{{name}} {{name}}", "{}"), "{{name}} {{name}}",
	    "empty row leaves everything");
	is_str(render("{{name}}", "[1,2]"), "{{name}}", "row not an object");
}

static void
test_values(void)
{
	is_str(render("{{a}} {{b}} {{c}} {{d}} {{e}}",
	    "{\"a\":1.50,\"b\":1e3,\"c\":-0,\"d\":12345678901234567890123,"
	    "\"e\":-1.25E-7}"),
	    "1.50 1e3 -0 12345678901234567890123 -1.25E-7",
	    "numbers exactly as written");
	is_str(render("[{{t}}|{{f}}|{{n}}]",
	    "{\"t\":true,\"f\":false,\"n\":null}"), "[true|false|]",
	    "true, false, null");
	is_str(render("{{o}}", "{\"o\": { \"x\" : [1, 2.0, \"a\"] , "
	    "\"y\": {}, \"z\": [] }}"),
	    "{\"x\":[1,2.0,\"a\"],\"y\":{},\"z\":[]}", "object as compact JSON");
	is_str(render("{{a}}", "{\"a\":[true,false,null,{\"k\":1}]}"),
	    "[true,false,null,{\"k\":1}]", "array as compact JSON");
	is_str(render("{{o}}",
	    "{\"o\":{\"q\\\"k\":\"say \\\"hi\\\" \\\\ back\"}}"),
	    "{\"q\\\"k\":\"say \\\"hi\\\" \\\\ back\"}",
	    "quotes and backslashes re-escaped");
	is_str(render("{{o}}",
	    "{\"o\":[\"\\n\\t\\r\\b\\f\\u0001\\u001f/\"]}"),
	    "[\"\\n\\t\\r\\b\\f\\u0001\\u001f/\"]",
	    "control characters re-escaped");
	is_str(render("{{o}}", "{\"o\":[\"\\u00e9\\u4e2d\\ud83d\\ude00\"]}"),
	    "[\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\"]",
	    "unicode escapes come out as UTF-8");
	is_str(render("{{s}}", "{\"s\":\"line1\\nline2 \\\"q\\\"\"}"),
	    "line1\nline2 \"q\"", "a string is inserted as its text");
	is_str(render("caf\xc3\xa9 {{ \xc3\xa9t\xc3\xa9 }} \xe2\x9c\x93",
	    "{\"\xc3\xa9t\xc3\xa9\":\"\xe4\xb8\xad\xe6\x96\x87\"}"),
	    "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xe2\x9c\x93",
	    "UTF-8 in template, field name and value");
	is_str(render("{{a.b}}", "{\"a.b\":\"dotted\"}"), "dotted",
	    "a field literally named a.b");
	is_str(render("{{a.b}}", "{\"a.b\":\"dotted\",\"a\":{\"b\":\"nested\"}}"),
	    "nested", "the path walk wins over the dotted key");
	is_str(render("{{a.b}}", "{\"a\":{\"c\":1},\"a.b\":\"dotted\"}"),
	    "dotted", "dotted key when the walk finds nothing");
	is_str(render("{{a}}", "{\"a\":1,\"a\":2}"), "2",
	    "duplicate key: the last wins");
	is_str(render("{{a..b}}", "{\"a\":{\"\":{\"b\":\"e\"}}}"), "e",
	    "empty path component names the empty key");
}

static void
test_errors(void)
{
	struct template	*t;
	char		*cause = NULL, *big;

	t = template_compile("bad \xff byte", &cause);
	ok(t == NULL && cause != NULL, "invalid UTF-8 is an error");
	if (cause != NULL)
		printf("# %s\n", cause);
	free(cause);
	cause = NULL;
	t = template_compile("overlong \xc0\xaf", &cause);
	ok(t == NULL, "overlong UTF-8 is an error");
	free(cause);
	cause = NULL;
	t = template_compile("cut \xe4\xb8", &cause);
	ok(t == NULL, "truncated UTF-8 is an error");
	free(cause);
	cause = NULL;

	big = xmalloc(64 * 1024 + 2);
	memset(big, 'x', 64 * 1024 + 1);
	big[64 * 1024 + 1] = '\0';
	t = template_compile(big, &cause);
	ok(t == NULL && cause != NULL, "template over 64 KiB is an error");
	free(cause);
	cause = NULL;
	big[64 * 1024] = '\0';
	t = template_compile(big, &cause);
	ok(t != NULL, "template of exactly 64 KiB compiles");
	template_free(t);
	free(big);
}

static void
test_big(void)
{
	struct template	*t;
	struct buf	 src, json, out;
	yajl_val	 row;
	char		*cause = NULL, err[256];
	size_t		 i, n = 1024 * 1024;
	clock_t		 c0;
	int		 good;

	/* A 1 MB value, rendered fully, in linear time. */
	buf_init(&json);
	buf_addstr(&json, "{\"v\":\"");
	for (i = 0; i < n; i++)
		buf_addc(&json, (char)('a' + i % 26));
	buf_addstr(&json, "\",\"o\":{\"s\":\"");
	for (i = 0; i < n / 2; i++)
		buf_add(&json, "\\\"\\n", 4);
	buf_addstr(&json, "\"}}");
	row = yajl_tree_parse(json.data, err, sizeof err);
	ok(row != NULL, "1 MB row parses");
	t = template_compile("<{{v}}>", &cause);
	buf_init(&out);
	c0 = clock();
	template_render(t, row, &out);
	is_int(out.len, n + 2, "1 MB value renders fully");
	ok(out.data[0] == '<' && out.data[n + 1] == '>' &&
	    out.data[n] == (char)('a' + (n - 1) % 26), "1 MB value intact");
	template_free(t);
	buf_reset(&out);
	t = template_compile("{{o}}", &cause);
	template_render(t, row, &out);
	is_int(out.len, 6 + (n / 2) * 4 + 2, "1 MB of escapes as compact JSON");
	ok((double)(clock() - c0) / CLOCKS_PER_SEC < 2.0,
	    "big renders are fast (%.3f s)",
	    (double)(clock() - c0) / CLOCKS_PER_SEC);
	template_free(t);
	yajl_tree_free(row);
	buf_free(&json);

	/* 1000 placeholders, some present, some not. */
	buf_init(&src);
	for (i = 0; i < 1000; i++)
		buf_printf(&src, "{{f%zu}}-", i % 20);
	t = template_compile(src.data, &cause);
	ok(t != NULL, "1000 placeholders compile");
	row = yajl_tree_parse("{\"f0\":0,\"f1\":1,\"f2\":2,\"f3\":3,\"f4\":4,"
	    "\"f5\":5,\"f6\":6,\"f7\":7,\"f8\":8,\"f9\":9}", err, sizeof err);
	buf_reset(&out);
	template_render(t, row, &out);
	buf_reset(&json);
	for (i = 0; i < 1000; i++) {
		if (i % 20 < 10)
			buf_printf(&json, "%zu-", i % 20);
		else
			buf_printf(&json, "{{f%zu}}-", i % 20);
	}
	is_str(out.data, json.data, "1000 placeholders render");

	/* Rendering appends, and renders again identically. */
	template_render(t, row, &out);
	good = out.len == 2 * json.len &&
	    memcmp(out.data + json.len, json.data, json.len) == 0;
	ok(good, "render appends to OUT");
	template_free(t);
	yajl_tree_free(row);
	buf_free(&src);
	buf_free(&json);
	buf_free(&out);
}

static void
test_compact_direct(void)
{
	struct buf	out;
	yajl_val	v;
	char		err[128];

	buf_init(&out);
	v = yajl_tree_parse("[\"\\u007f\", \"\\\\u\", 0.0, -1E+2]", err,
	    sizeof err);
	json_append_compact(&out, v);
	is_str(buf_cstr(&out), "[\"\x7f\",\"\\\\u\",0.0,-1E+2]",
	    "json_append_compact on its own");
	yajl_tree_free(v);
	buf_free(&out);
}

int
main(void)
{
	test_basic();
	test_values();
	test_errors();
	test_big();
	test_compact_direct();
	return tap_done();
}
