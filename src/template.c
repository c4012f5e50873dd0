/*
 * template.c: message templates.
 *
 * A template is compiled once into segments: literal text, and
 * placeholders whose field path is split in advance.  Rendering walks the
 * segments and appends to a buffer: no parsing and no allocation beyond
 * growing the output.
 *
 * The rules:
 *
 * - A placeholder is "{{", optional spaces and tabs, a NAME, optional
 *   spaces and tabs, "}}".  NAME is at least one character and contains
 *   no '{', no '}' and no control character (a newline included); spaces
 *   inside NAME are part of it ("{{ first name }}" names "first name").
 * - Everything else is literal text, exactly as written: "{{}}", "{{ }}",
 *   an unclosed "{{name", a lone "}}" or "{", "{{a\nb}}".
 * - Extra braces around a placeholder stay literal: "{{{name}}}" is "{"
 *   then the placeholder "{{name}}" then "}", i.e. the value in braces.
 *   (At a "{{" that does not open a placeholder, the first '{' is literal
 *   and scanning goes on at the next character.)
 * - NAME is split at '.' into a path: "{{a.b.c}}" is row.a.b.c, walking
 *   through nested objects.  If the walk finds nothing, a top-level key
 *   equal to the whole NAME ("a.b") is used.  Arrays are not indexed
 *   ("{{a.0}}" walks nowhere).  When an object has the same key twice,
 *   the last one counts (as in JavaScript).
 * - A placeholder whose field the row lacks stays exactly as written,
 *   inner spaces included.
 * - Values: a string as its text; a number exactly as written in the
 *   batch (1.50 stays 1.50, 1e3 stays 1e3); true and false as such; null
 *   as nothing; objects and arrays as compact JSON.
 * - Compile errors only for what cannot be a template: longer than
 *   TEMPLATE_MAX_BYTES, or not valid UTF-8.
 */
#include <stdlib.h>
#include <string.h>

#include "mmsyncd.h"

#define TEMPLATE_MAX_BYTES	(64 * 1024)

struct tseg {
	const char	*text;		/* literal, or the placeholder as written */
	size_t		 len;
	int		 field;		/* 1: placeholder */
	size_t		 name;		/* offset of the whole NAME in names */
	size_t		 path;		/* first component in paths */
	size_t		 npath;
};

struct template {
	char		*src;
	struct tseg	*segs;
	size_t		 nsegs;
	char		*names;		/* NUL-terminated names and components */
	const char	**paths;	/* component pointers into names */
	size_t		 npaths;
};

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static int
utf8_valid(const unsigned char *s, size_t len)
{
	size_t	i = 0, n, k;
	uint32_t cp;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (s[i] >= 0xC2 && s[i] <= 0xDF) {
			n = 1;
			cp = s[i] & 0x1F;
		} else if (s[i] >= 0xE0 && s[i] <= 0xEF) {
			n = 2;
			cp = s[i] & 0x0F;
		} else if (s[i] >= 0xF0 && s[i] <= 0xF4) {
			n = 3;
			cp = s[i] & 0x07;
		} else
			return 0;
		if (len - i <= n)
			return 0;
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += n + 1;
	}
	return 1;
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * At S[I] == S[I+1] == '{': if a placeholder starts here, set the inner
 * name's bounds and the end (just past "}}") and return 1.
 */
static int
placeholder_at(const char *s, size_t len, size_t i, size_t *nb, size_t *ne,
    size_t *end)
{
	size_t	j = i + 2, b, e;

	/* The inner text runs to the first brace; no control characters. */
	while (j < len && s[j] != '{' && s[j] != '}' &&
	    ((unsigned char)s[j] >= 0x20 || s[j] == '\t') && s[j] != 0x7f)
		j++;
	if (j + 1 >= len || s[j] != '}' || s[j + 1] != '}')
		return 0;
	b = i + 2;
	e = j;
	while (b < e && is_blank(s[b]))
		b++;
	while (e > b && is_blank(s[e - 1]))
		e--;
	if (b == e)
		return 0;
	*nb = b;
	*ne = e;
	*end = j + 2;
	return 1;
}

static struct tseg *
seg_push(struct template *t, size_t *cap)
{
	if (t->nsegs == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		t->segs = xreallocarray(t->segs, *cap, sizeof *t->segs);
	}
	memset(&t->segs[t->nsegs], 0, sizeof t->segs[0]);
	return &t->segs[t->nsegs++];
}

static void
lit_flush(struct template *t, size_t *cap, size_t from, size_t to)
{
	struct tseg	*sg;

	if (to == from)
		return;
	sg = seg_push(t, cap);
	sg->text = t->src + from;
	sg->len = to - from;
}

struct template *
template_compile(const char *src, char **cause)
{
	struct template	*t;
	struct tseg	*sg;
	size_t		 len, i, lit, nb, ne, end, segcap = 0, pathcap = 0;
	size_t		 nameoff = 0;
	char		*name, *dot;

	if (src == NULL) {
		*cause = xstrdup("no template");
		return NULL;
	}
	len = strlen(src);
	if (len > TEMPLATE_MAX_BYTES) {
		xasprintf(cause, "template is longer than %d bytes",
		    TEMPLATE_MAX_BYTES);
		return NULL;
	}
	if (!utf8_valid((const unsigned char *)src, len)) {
		*cause = xstrdup("template is not valid UTF-8");
		return NULL;
	}

	t = xcalloc(1, sizeof *t);
	t->src = xstrdup(src);
	/* Each placeholder of inner length n takes 2n + 2 bytes here and
	 * n + 4 of the source, so this never needs to grow. */
	t->names = xmalloc(2 * len + 2);

	lit = i = 0;
	while (i < len) {
		if (src[i] != '{' || i + 1 >= len || src[i + 1] != '{' ||
		    !placeholder_at(src, len, i, &nb, &ne, &end)) {
			i++;
			continue;
		}
		lit_flush(t, &segcap, lit, i);
		sg = seg_push(t, &segcap);
		sg->field = 1;
		sg->text = t->src + i;
		sg->len = end - i;

		/* The whole name, then its components. */
		name = t->names + nameoff;
		memcpy(name, src + nb, ne - nb);
		name[ne - nb] = '\0';
		sg->name = nameoff;
		nameoff += ne - nb + 1;

		sg->path = t->npaths;
		name = t->names + nameoff;
		memcpy(name, src + nb, ne - nb);
		name[ne - nb] = '\0';
		for (;;) {
			if (t->npaths == pathcap) {
				pathcap = pathcap ? pathcap * 2 : 8;
				t->paths = xreallocarray(t->paths, pathcap,
				    sizeof *t->paths);
			}
			t->paths[t->npaths++] = name;
			sg->npath++;
			if ((dot = strchr(name, '.')) == NULL)
				break;
			*dot = '\0';
			name = dot + 1;
		}
		nameoff += ne - nb + 1;

		i = lit = end;
	}
	lit_flush(t, &segcap, lit, len);
	return t;
}

void
template_free(struct template *t)
{
	if (t == NULL)
		return;
	free(t->src);
	free(t->segs);
	free(t->names);
	free(t->paths);
	free(t);
}

/* The value of key K in object O; the last one if K is there twice. */
static yajl_val
object_get(yajl_val o, const char *k)
{
	size_t	i;

	if (o == NULL || o->type != yajl_t_object)
		return NULL;
	for (i = o->u.object.len; i-- > 0;)
		if (strcmp(o->u.object.keys[i], k) == 0)
			return o->u.object.values[i];
	return NULL;
}

static yajl_val
lookup(const struct template *t, const struct tseg *sg, yajl_val row)
{
	yajl_val	v = row;
	size_t		i;

	for (i = 0; i < sg->npath && v != NULL; i++)
		v = object_get(v, t->paths[sg->path + i]);
	if (v == NULL && sg->npath > 1)
		v = object_get(row, t->names + sg->name);
	return v;
}

static void
append_value(struct buf *out, yajl_val v)
{
	switch (v->type) {
	case yajl_t_string:
		buf_addstr(out, v->u.string);
		break;
	case yajl_t_number:
		buf_addstr(out, v->u.number.r);
		break;
	case yajl_t_true:
		buf_add(out, "true", 4);
		break;
	case yajl_t_false:
		buf_add(out, "false", 5);
		break;
	case yajl_t_null:
		break;
	default:
		json_append_compact(out, v);
		break;
	}
}

void
template_render(const struct template *t, yajl_val row, struct buf *out)
{
	const struct tseg	*sg;
	yajl_val		 v;
	size_t			 i;

	for (i = 0; i < t->nsegs; i++) {
		sg = &t->segs[i];
		if (sg->field && (v = lookup(t, sg, row)) != NULL)
			append_value(out, v);
		else
			buf_add(out, sg->text, sg->len);
	}
	if (out->data == NULL)
		buf_reserve(out, 0);	/* "" for an empty rendering */
	out->data[out->len] = '\0';
}


void
json_append_compact(struct buf *out, yajl_val v)
{
	size_t	i;

	if (v == NULL) {
		buf_add(out, "null", 4);
		return;
	}
	switch (v->type) {
	case yajl_t_string:
		buf_add_json_string(out, v->u.string, strlen(v->u.string));
		break;
	case yajl_t_number:
		buf_addstr(out, v->u.number.r);
		break;
	case yajl_t_object:
		buf_addc(out, '{');
		for (i = 0; i < v->u.object.len; i++) {
			if (i != 0)
				buf_addc(out, ',');
			buf_add_json_string(out, v->u.object.keys[i],
			    strlen(v->u.object.keys[i]));
			buf_addc(out, ':');
			json_append_compact(out, v->u.object.values[i]);
		}
		buf_addc(out, '}');
		break;
	case yajl_t_array:
		buf_addc(out, '[');
		for (i = 0; i < v->u.array.len; i++) {
			if (i != 0)
				buf_addc(out, ',');
			json_append_compact(out, v->u.array.values[i]);
		}
		buf_addc(out, ']');
		break;
	case yajl_t_true:
		buf_add(out, "true", 4);
		break;
	case yajl_t_false:
		buf_add(out, "false", 5);
		break;
	default:
		buf_add(out, "null", 4);
		break;
	}
}
