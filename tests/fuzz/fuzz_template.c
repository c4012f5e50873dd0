/*
 * fuzz_template: the template compiler and renderer, and the compact JSON
 * writer.
 *
 * Input: TEMPLATE NUL ROW-JSON.  Without a NUL the whole input is the
 * template and the row is a fixed one.  Checked on every input:
 *
 *   - template_compile() fails only for what the rules allow (longer than
 *     64 KiB, not valid UTF-8);
 *   - rendered over {} the template gives back its source exactly (every
 *     placeholder stays as written, literal text is untouched);
 *   - rendered over the row it gives what an independent, naive reading of
 *     the rules in template.c gives;
 *   - json_append_compact() of the row is valid UTF-8 and parses again;
 *     after one more round (parse, write) the text no longer changes.
 *
 * Rows nested deeper than the batch reader allows (64) are skipped: the
 * daemon never renders them, and yajl_tree_free() recurses.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmsyncd.h"
#include "fuzz_oracle.h"

#define ROW_MAX_DEPTH	64	/* batch.c BATCH_MAX_DEPTH */
#define TEMPLATE_MAX	(64 * 1024)

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char default_row[] =
    "{\"name\":\"Ada\",\"email\":\"ada@example.com\",\"n\":1.50,"
    "\"a\":{\"b\":\"ab\",\"c\":{\"d\":[1,true,null,\"x\"]}},\"a.b\":\"dot\","
    "\"first name\":\"A\",\"t\":true,\"f\":false,\"z\":null}";

static void	fail(const char *, const char *, const struct buf *,
		    const struct buf *) MMS_NORETURN;

static void
fail(const char *what, const char *tmpl, const struct buf *got,
    const struct buf *want)
{
	fprintf(stderr, "fuzz_template: %s\n  template: [%s]\n", what, tmpl);
	if (got != NULL)
		fprintf(stderr, "  got:  [%s] (%zu bytes)\n", buf_cstr(got),
		    got->len);
	if (want != NULL)
		fprintf(stderr, "  want: [%s] (%zu bytes)\n", buf_cstr(want),
		    want->len);
	abort();
}

/* 1 when the JSON text nests no deeper than ROW_MAX_DEPTH. */
static int
depth_ok(const char *s)
{
	int	depth = 0, instr = 0, esc = 0;

	for (; *s != '\0'; s++) {
		if (instr) {
			if (esc)
				esc = 0;
			else if (*s == '\\')
				esc = 1;
			else if (*s == '"')
				instr = 0;
			continue;
		}
		if (*s == '"')
			instr = 1;
		else if ((*s == '{' || *s == '[') && ++depth > ROW_MAX_DEPTH)
			return 0;
		else if (*s == '}' || *s == ']')
			depth--;
	}
	return 1;
}

/* ------------------------------------------------ the naive reference */

static yajl_val
ref_get(yajl_val o, const char *k)
{
	size_t	i;
	yajl_val v = NULL;

	if (o == NULL || o->type != yajl_t_object)
		return NULL;
	for (i = 0; i < o->u.object.len; i++)	/* the last one wins */
		if (strcmp(o->u.object.keys[i], k) == 0)
			v = o->u.object.values[i];
	return v;
}

static yajl_val
ref_lookup(yajl_val row, const char *name)
{
	char		*copy = strdup(name), *p = copy, *dot;
	yajl_val	 v = row;

	if (copy == NULL)
		abort();
	for (;;) {
		dot = strchr(p, '.');
		if (dot != NULL)
			*dot = '\0';
		v = ref_get(v, p);
		if (dot == NULL || v == NULL)
			break;
		p = dot + 1;
	}
	if (v == NULL && strchr(name, '.') != NULL)
		v = ref_get(row, name);
	free(copy);
	return v;
}

static void
ref_value(struct buf *out, yajl_val v)
{
	switch (v->type) {
	case yajl_t_string:
		buf_addstr(out, v->u.string);
		break;
	case yajl_t_number:
		buf_addstr(out, v->u.number.r);
		break;
	case yajl_t_true:
		buf_addstr(out, "true");
		break;
	case yajl_t_false:
		buf_addstr(out, "false");
		break;
	case yajl_t_null:
		break;
	default:
		json_append_compact(out, v);
		break;
	}
}

static int
name_char(unsigned char c)
{
	return c != '{' && c != '}' && (c >= 0x20 || c == '\t') && c != 0x7f;
}

static void
ref_render(const char *s, size_t len, yajl_val row, struct buf *out)
{
	size_t	 i = 0, j, b, e;
	char	*name;
	yajl_val v;

	buf_add(out, "", 0);
	while (i < len) {
		if (s[i] == '{' && i + 1 < len && s[i + 1] == '{') {
			for (j = i + 2; j < len && name_char((unsigned char)s[j]);
			    j++)
				;
			if (j + 1 < len && s[j] == '}' && s[j + 1] == '}') {
				for (b = i + 2; b < j && (s[b] == ' ' ||
				    s[b] == '\t'); b++)
					;
				for (e = j; e > b && (s[e - 1] == ' ' ||
				    s[e - 1] == '\t'); e--)
					;
				if (e > b) {
					name = strndup(s + b, e - b);
					if (name == NULL)
						abort();
					v = ref_lookup(row, name);
					free(name);
					if (v != NULL)
						ref_value(out, v);
					else
						buf_add(out, s + i, j + 2 - i);
					i = j + 2;
					continue;
				}
			}
		}
		buf_addc(out, s[i]);
		i++;
	}
}

/* ------------------------------------------------------------- checks */

/* Parse TEXT (which must parse) and write it again, compact. */
static void
recompact(const struct buf *text, struct buf *out, const char *tmpl)
{
	yajl_val	v;
	char		err[256];

	if ((v = yajl_tree_parse(buf_cstr(text), err, sizeof err)) == NULL) {
		fprintf(stderr, "yajl: %s\n", err);
		fail("json_append_compact wrote JSON that does not parse",
		    tmpl, text, NULL);
	}
	json_append_compact(out, v);
	yajl_tree_free(v);
}

/*
 * The compact writer's output is valid UTF-8 (invalid bytes in strings
 * become U+FFFD) and parses; once written, parsed and written again it
 * no longer changes (the first pass may turn invalid bytes into "\ufffd"
 * escapes, which the second writes as the character itself).
 */
static void
check_compact(yajl_val v, const char *tmpl)
{
	struct buf	 once, twice, thrice;

	buf_init(&once);
	buf_init(&twice);
	buf_init(&thrice);
	json_append_compact(&once, v);
	if (!utf8_ok((const unsigned char *)buf_cstr(&once), once.len))
		fail("json_append_compact wrote invalid UTF-8", tmpl, &once,
		    NULL);
	recompact(&once, &twice, tmpl);
	recompact(&twice, &thrice, tmpl);
	if (twice.len != thrice.len ||
	    memcmp(twice.data, thrice.data, twice.len) != 0)
		fail("json_append_compact is not stable", tmpl, &thrice,
		    &twice);
	buf_free(&once);
	buf_free(&twice);
	buf_free(&thrice);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init("fuzz_template");
	log_set_level(LOG_LEVEL_ERROR);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t	*nul = memchr(data, '\0', size);
	size_t		 tlen = nul != NULL ? (size_t)(nul - data) : size;
	char		*tmpl, *rowtext, *cause = NULL, err[256];
	struct template	*t;
	struct buf	 got, want;
	yajl_val	 row, empty;

	tmpl = strndup((const char *)data, tlen);
	if (nul != NULL)
		rowtext = strndup((const char *)nul + 1, size - tlen - 1);
	else
		rowtext = strdup(default_row);
	if (tmpl == NULL || rowtext == NULL)
		abort();

	t = template_compile(tmpl, &cause);
	if (t == NULL) {
		if (cause == NULL)
			fail("template_compile failed without a cause", tmpl,
			    NULL, NULL);
		if (tlen <= TEMPLATE_MAX &&
		    utf8_ok((const unsigned char *)tmpl, tlen))
			fail("template_compile refused a valid template", tmpl,
			    NULL, NULL);
		free(cause);
	} else if (tlen > TEMPLATE_MAX ||
	    !utf8_ok((const unsigned char *)tmpl, tlen))
		fail("template_compile took an invalid template", tmpl, NULL,
		    NULL);

	if (t != NULL) {
		/* Over {}: the source, exactly. */
		empty = yajl_tree_parse("{}", err, sizeof err);
		buf_init(&got);
		template_render(t, empty, &got);
		if (got.data == NULL || got.data[got.len] != '\0' ||
		    got.len != tlen || memcmp(got.data, tmpl, tlen) != 0)
			fail("rendering over {} changed the template", tmpl,
			    &got, NULL);
		buf_free(&got);
		yajl_tree_free(empty);
	}

	row = depth_ok(rowtext) ? yajl_tree_parse(rowtext, err, sizeof err) :
	    NULL;
	if (row != NULL) {
		check_compact(row, tmpl);
		if (t != NULL && YAJL_IS_OBJECT(row)) {
			buf_init(&got);
			buf_init(&want);
			/* Appending: what was there stays. */
			buf_addstr(&got, "<");
			buf_addstr(&want, "<");
			template_render(t, row, &got);
			ref_render(tmpl, tlen, row, &want);
			if (got.len != want.len ||
			    memcmp(got.data, want.data, got.len) != 0 ||
			    got.data[got.len] != '\0')
				fail("rendering differs from the rules", tmpl,
				    &got, &want);
			buf_free(&got);
			buf_free(&want);
		}
		yajl_tree_free(row);
	}
	template_free(t);
	free(tmpl);
	free(rowtext);
	return 0;
}
