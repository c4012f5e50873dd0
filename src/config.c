/*
 * config.c: read the YAML configuration into struct config.
 *
 * Two steps.  First libyaml's event parser builds a small tree of our own
 * (scalars, lists, mappings, each with the line and column where it
 * starts); aliases are refused there, nesting and size are bounded, and
 * duplicate keys are found at every level.  Then the tree is checked key by
 * key.  Every problem found is kept as "FILE:LINE:COLUMN: message" and the
 * check goes on, so one run of `mmsyncd -t` shows them all.  Nothing here
 * contacts anything; the only files read are the configuration, token
 * files and (for existence) CA files.
 *
 * A secret (a token, a webhook URL) is never quoted in a message.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* explicit_bzero */
#endif

#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "mmsyncd.h"

#define CONFIG_MAX_BYTES	(1024 * 1024)	/* larger: refused */
#define CONFIG_MAX_DEPTH	32		/* nesting levels */
#define CONFIG_MAX_KEYS		10000		/* in one mapping */
#define CONFIG_MAX_ERRORS	100		/* then "too many" */
#define TOKEN_FILE_MAX		4096
/* Longest duration: fits a signed 32-bit count of milliseconds (curl's
 * timeouts are longs), about 24.8 days. */
#define CONFIG_MAX_DURATION_MS	((uint64_t)INT32_MAX)

#define DEFAULT_INTERVAL_MS		250
#define DEFAULT_TIMEOUT_MS		(30 * 1000)
#define DEFAULT_CONNECT_TIMEOUT_MS	(10 * 1000)
#define DEFAULT_BACKOFF_MIN_MS		(1000)
#define DEFAULT_BACKOFF_MAX_MS		(5 * 60 * 1000)
#define DEFAULT_BLOCKED_RETRY_MS	(5 * 60 * 1000)
/* setgid: batches written by producers belong to the spool's group, so
 * mmsyncd can read them whatever the producer's umask. */
#define DEFAULT_SPOOL_MODE		02770
#define DEFAULT_SOCKET_MODE		0660
#define DIGEST_ROWS_MAX			1000

/* ------------------------------------------------------------ the tree */

enum ykind {
	Y_SCALAR,
	Y_SEQ,
	Y_MAP,
	Y_ALIAS,	/* refused (reported); stands in as "no value" */
};

struct ynode {
	enum ykind	  kind;
	int		  line, col;	/* 1-based start */
	bool		  null;		/* plain "", "~" or "null" */
	char		 *text;		/* scalar, NUL-terminated */
	size_t		  len;		/* bytes; a NUL may be in */
	struct ynode	**kids;		/* items; MAP: k, v, ... */
	size_t		  n;		/* number of kids */
};

/* One problem, kept with its place so all can be sorted by it. */
struct problem {
	int		 line, col;	/* 0: about the file as a whole */
	size_t		 seq;
	char		*msg;
};

struct loader {
	const char	*path;
	const char	*data;		/* the file (reader errors) */
	size_t		 datalen;
	yaml_parser_t	 parser;
	struct problem	*probs;
	size_t		 nprobs;
	bool		 truncated;
};

static void	 problem_add(struct loader *, int, int, const char *, ...)
		    MMS_PRINTF(4, 5);

static void
problem_add(struct loader *L, int line, int col, const char *fmt, ...)
{
	struct problem	*p;
	va_list		 ap;

	if (L->nprobs >= CONFIG_MAX_ERRORS) {
		L->truncated = true;
		return;
	}
	L->probs = xreallocarray(L->probs, L->nprobs + 1, sizeof *L->probs);
	p = &L->probs[L->nprobs];
	p->line = line;
	p->col = col;
	p->seq = L->nprobs++;
	va_start(ap, fmt);
	xvasprintf(&p->msg, fmt, ap);
	va_end(ap);
}

/* Report a problem at node N. */
#define problem_at(L, N, ...) problem_add((L), (N)->line, (N)->col, __VA_ARGS__)

static int
problem_cmp(const void *a, const void *b)
{
	const struct problem	*x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Move the problems, sorted by place, into ERRS as finished lines. */
static void
problems_flush(struct loader *L, struct config_errors *errs)
{
	struct problem	*p;
	size_t		 i, extra = L->truncated ? 1 : 0;

	if (L->nprobs > 1)
		qsort(L->probs, L->nprobs, sizeof *L->probs, problem_cmp);
	if (errs != NULL && L->nprobs + extra > 0)
		errs->msgs = xreallocarray(errs->msgs, errs->n + L->nprobs +
		    extra, sizeof *errs->msgs);
	for (i = 0; i < L->nprobs; i++) {
		p = &L->probs[i];
		if (errs != NULL) {
			if (p->line > 0)
				xasprintf(&errs->msgs[errs->n++],
				    "%s:%d:%d: %s", L->path, p->line, p->col,
				    p->msg);
			else
				xasprintf(&errs->msgs[errs->n++], "%s: %s",
				    L->path, p->msg);
		}
		free(p->msg);
	}
	if (errs != NULL && L->truncated)
		xasprintf(&errs->msgs[errs->n++], "%s: too many problems, only "
		    "the first %d are shown", L->path, CONFIG_MAX_ERRORS);
	free(L->probs);
	L->probs = NULL;
}

/*
 * Text from the file, made safe to show in a message: at most 48 bytes
 * (cut at a character boundary), control characters replaced by '?'.
 * Never used on a secret.
 */
static const char *
shown(const char *s, char out[64])
{
	size_t	i, n = strlen(s);
	bool	cut = false;

	if (n > 48) {
		n = 48;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
		cut = true;
	}
	for (i = 0; i < n; i++)
		out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ?
		    '?' : s[i];
	strcpy(out + n, cut ? "..." : "");
	return out;
}

static int
mark_int(size_t v)
{
	return v >= INT_MAX ? INT_MAX : (int)v + 1;
}

static void
ynode_free(struct ynode *n)
{
	size_t	i;

	if (n == NULL)
		return;
	for (i = 0; i < n->n; i++)
		ynode_free(n->kids[i]);
	free(n->kids);
	if (n->text != NULL) {
		/* Scalars may be secrets. */
		explicit_bzero(n->text, n->len);
		free(n->text);
	}
	free(n);
}

static struct ynode *
ynode_new(enum ykind kind, const yaml_mark_t *m)
{
	struct ynode	*n;

	n = xcalloc(1, sizeof *n);
	n->kind = kind;
	n->line = mark_int(m->line);
	n->col = mark_int(m->column);
	return n;
}

static void
ynode_add(struct ynode *parent, struct ynode *kid)
{
	parent->kids = xreallocarray(parent->kids, parent->n + 1,
	    sizeof *parent->kids);
	parent->kids[parent->n++] = kid;
}

static const char *
ykind_name(const struct ynode *n)
{
	if (n->null)
		return "no value";
	switch (n->kind) {
	case Y_SCALAR:
		return "a string";
	case Y_SEQ:
		return "a list";
	case Y_MAP:
		return "a mapping";
	case Y_ALIAS:
		return "an alias";
	}
	return "?";
}

/* Line and column of a byte offset in the file (for reader errors). */
static void
offset_place(const struct loader *L, size_t off, int *line, int *col)
{
	size_t	i;

	*line = *col = 1;
	for (i = 0; i < off && i < L->datalen; i++) {
		if (L->data[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)L->data[i] & 0xC0) != 0x80)
			(*col)++;
	}
}

static void
syntax_problem(struct loader *L)
{
	yaml_parser_t	*p = &L->parser;
	const char	*problem = p->problem ? p->problem : "unknown error";
	int		 line, col;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		fatalx("out of memory while parsing %s", L->path);
	case YAML_READER_ERROR:
		offset_place(L, p->problem_offset, &line, &col);
		problem_add(L, line, col, "cannot read as YAML: %s", problem);
		break;
	default:
		line = mark_int(p->problem_mark.line);
		col = mark_int(p->problem_mark.column);
		if (p->context != NULL)
			problem_add(L, line, col, "YAML syntax error: %s (%s "
			    "at line %d, column %d)", problem, p->context,
			    mark_int(p->context_mark.line),
			    mark_int(p->context_mark.column));
		else
			problem_add(L, line, col, "YAML syntax error: %s",
			    problem);
		break;
	}
}

static int
next_event(struct loader *L, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&L->parser, ev)) {
		syntax_problem(L);
		return -1;
	}
	return 0;
}

static bool
is_null_scalar(const yaml_event_t *ev)
{
	const char	*v = (const char *)ev->data.scalar.value;

	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
	    ev->data.scalar.tag != NULL)
		return false;
	return strcmp(v, "") == 0 || strcmp(v, "~") == 0 ||
	    strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
	    strcmp(v, "NULL") == 0;
}

/*
 * Build the node that starts with event EV (consumed).  NULL when parsing
 * cannot go on (a syntax error, too deep, too big): already reported.
 * TARGETS: this is the targets mapping (for the wording of duplicates).
 */
static struct ynode *
build_node(struct loader *L, yaml_event_t *ev, int depth, bool targets)
{
	struct ynode	*n, *kid, *key, *other;
	yaml_event_t	 next;
	size_t		 i;
	char		 tmp[64];
	bool		 map;

	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		n = ynode_new(Y_SCALAR, &ev->start_mark);
		n->len = ev->data.scalar.length;
		n->text = xmalloc(n->len + 1);
		memcpy(n->text, ev->data.scalar.value, n->len);
		n->text[n->len] = '\0';
		n->null = is_null_scalar(ev);
		explicit_bzero(ev->data.scalar.value, ev->data.scalar.length);
		yaml_event_delete(ev);
		return n;
	case YAML_ALIAS_EVENT:
		/* No aliases: nothing here needs them, and refusing them
		 * rules out exponential expansion ("billion laughs"). */
		n = ynode_new(Y_ALIAS, &ev->start_mark);
		n->null = true;
		n->text = xstrdup("");
		problem_at(L, n, "aliases (*%s) are not allowed",
		    shown((const char *)ev->data.alias.anchor, tmp));
		yaml_event_delete(ev);
		return n;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		break;
	default:
		problem_add(L, mark_int(ev->start_mark.line),
		    mark_int(ev->start_mark.column), "unexpected YAML event");
		yaml_event_delete(ev);
		return NULL;
	}

	map = ev->type == YAML_MAPPING_START_EVENT;
	n = ynode_new(map ? Y_MAP : Y_SEQ, &ev->start_mark);
	yaml_event_delete(ev);
	if (depth >= CONFIG_MAX_DEPTH) {
		problem_at(L, n, "nested too deeply (over %d levels)",
		    CONFIG_MAX_DEPTH);
		ynode_free(n);
		return NULL;
	}
	for (;;) {
		if (next_event(L, &next) == -1)
			goto fail;
		if (next.type == YAML_SEQUENCE_END_EVENT ||
		    next.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&next);
			return n;
		}
		if (map && n->n / 2 >= CONFIG_MAX_KEYS) {
			problem_at(L, n, "too many keys in one mapping (over "
			    "%d)", CONFIG_MAX_KEYS);
			yaml_event_delete(&next);
			goto fail;
		}
		if ((kid = build_node(L, &next, depth + 1, false)) == NULL)
			goto fail;
		ynode_add(n, kid);
		if (!map)
			continue;

		/* A key: it must be text, and appear once in its mapping. */
		key = kid;
		if (key->kind == Y_ALIAS)
			;			/* reported */
		else if (key->kind != Y_SCALAR)
			problem_at(L, key, "a key must be a string, not %s",
			    ykind_name(key));
		else {
			for (i = 0; i + 2 < n->n; i += 2) {
				other = n->kids[i];
				if (other->kind == Y_SCALAR &&
				    other->len == key->len &&
				    memcmp(other->text, key->text,
				    key->len) == 0) {
					problem_at(L, key, "duplicate %s "
					    "'%s' (first at line %d, column "
					    "%d)", targets ? "target" : "key",
					    shown(key->text, tmp),
					    other->line, other->col);
					break;
				}
			}
		}
		if (next_event(L, &next) == -1)
			goto fail;
		/* The names under the top-level "targets" are targets. */
		kid = build_node(L, &next, depth + 1, depth == 0 &&
		    key->kind == Y_SCALAR && strcmp(key->text, "targets") == 0);
		if (kid == NULL)
			goto fail;
		ynode_add(n, kid);
	}
fail:
	ynode_free(n);
	return NULL;
}

/*
 * Parse the file's text into a tree.  NULL when there is no usable tree
 * (the reason is reported).
 */
static struct ynode *
parse_tree(struct loader *L)
{
	struct ynode	*root = NULL;
	yaml_event_t	 ev;

	if (!yaml_parser_initialize(&L->parser))
		fatalx("out of memory");
	yaml_parser_set_input_string(&L->parser,
	    (const unsigned char *)L->data, L->datalen);

	if (next_event(L, &ev) == -1)		/* STREAM-START */
		goto out;
	yaml_event_delete(&ev);
	if (next_event(L, &ev) == -1)
		goto out;
	if (ev.type == YAML_STREAM_END_EVENT) {
		yaml_event_delete(&ev);
		problem_add(L, 1, 1, "the configuration is empty");
		goto out;
	}
	yaml_event_delete(&ev);			/* DOCUMENT-START */
	if (next_event(L, &ev) == -1)
		goto out;
	if ((root = build_node(L, &ev, 0, false)) == NULL)
		goto out;
	if (next_event(L, &ev) == -1)		/* DOCUMENT-END */
		goto fail;
	yaml_event_delete(&ev);
	if (next_event(L, &ev) == -1)
		goto fail;
	if (ev.type == YAML_DOCUMENT_START_EVENT) {
		problem_add(L, mark_int(ev.start_mark.line),
		    mark_int(ev.start_mark.column),
		    "only one YAML document is allowed");
		yaml_event_delete(&ev);
		goto fail;
	}
	yaml_event_delete(&ev);			/* STREAM-END */
	goto out;
fail:
	ynode_free(root);
	root = NULL;
out:
	yaml_parser_delete(&L->parser);
	return root;
}

/* ------------------------------------------------------ value helpers */

/*
 * Replace ${NAME} with the environment variable NAME.  "$${" stands for a
 * literal "${"; any other '$' is kept as it is.  An unset variable, a bad
 * name or an unterminated "${" is an error (reported at node N).
 */
static char *
expand_env(struct loader *L, const struct ynode *n, const char *key,
    const char *s)
{
	struct buf	 b;
	const char	*p = s, *name, *end, *v;
	char		*var, tmp[64];
	size_t		 i, len;
	bool		 bad = false, goodname;

	buf_init(&b);
	buf_add(&b, "", 0);		/* "" for an empty value */
	while (*p != '\0') {
		if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
			buf_add(&b, "${", 2);
			p += 3;
			continue;
		}
		if (p[0] != '$' || p[1] != '{') {
			buf_addc(&b, *p++);
			continue;
		}
		name = p + 2;
		if ((end = strchr(name, '}')) == NULL) {
			problem_at(L, n, "%s: unterminated '${' (write '$${' "
			    "for a literal '${')", key);
			bad = true;
			break;
		}
		len = (size_t)(end - name);
		goodname = len > 0 && !(name[0] >= '0' && name[0] <= '9');
		for (i = 0; i < len && goodname; i++)
			goodname = (name[i] >= 'A' && name[i] <= 'Z') ||
			    (name[i] >= 'a' && name[i] <= 'z') ||
			    (name[i] >= '0' && name[i] <= '9') ||
			    name[i] == '_';
		var = xstrndup(name, len);
		if (!goodname) {
			problem_at(L, n, "%s: '${%s}' is not a variable name "
			    "(letters, digits and '_'; write '$${' for a "
			    "literal '${')", key, shown(var, tmp));
			bad = true;
		} else if ((v = getenv(var)) == NULL) {
			problem_at(L, n, "%s: environment variable %s is not "
			    "set", key, var);
			bad = true;
		} else
			buf_addstr(&b, v);
		free(var);
		p = end + 1;
	}
	if (bad) {
		explicit_bzero(b.data, b.cap);
		buf_free(&b);
		return NULL;
	}
	return b.data;
}

/*
 * The text of value V of KEY, environment expanded (caller frees), or NULL
 * after reporting why.  V is known not to be null.
 */
static char *
value_str(struct loader *L, const char *key, const struct ynode *v)
{
	if (v->kind != Y_SCALAR) {
		problem_at(L, v, "%s: expected a string, found %s", key,
		    ykind_name(v));
		return NULL;
	}
	if (strlen(v->text) != v->len) {
		problem_at(L, v, "%s: contains a NUL character", key);
		return NULL;
	}
	return expand_env(L, v, key, v->text);
}

static void
free_secret(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static bool
has_space_or_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return true;
	return false;
}

static bool
has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static bool
is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

/* A Mattermost id: exactly 26 letters and digits. */
static bool
looks_like_id(const char *s)
{
	size_t	i;

	for (i = 0; s[i] != '\0'; i++)
		if (!is_alnum(s[i]))
			return false;
	return i == MMS_ID_LEN;
}

/* NULL if S is a usable http(s) URL, else why not.  Secret-safe. */
static const char *
url_problem(const char *s)
{
	const char	*host;

	if (strncasecmp(s, "https://", 8) == 0)
		host = s + 8;
	else if (strncasecmp(s, "http://", 7) == 0)
		host = s + 7;
	else
		return "must be an http:// or https:// URL";
	if (has_space_or_control(s))
		return "must not contain white space or control characters";
	if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
		return "has no host name";
	return NULL;
}

static const char *
duration_problem(const char *s, uint64_t *ms)
{
	uint64_t	 n = 0, mult, d;
	const char	*p = s;

	if (*p < '0' || *p > '9')
		return "a duration is a whole number and a unit: ms, s, m or "
		    "h (e.g. 250ms, 30s, 5m)";
	for (; *p >= '0' && *p <= '9'; p++) {
		d = (uint64_t)(*p - '0');
		if (n > (UINT64_MAX - d) / 10)
			return "too large";
		n = n * 10 + d;
	}
	if (*p == '\0') {
		if (n != 0)
			return "a unit is required: ms, s, m or h (only 0 "
			    "may stand alone)";
		*ms = 0;
		return NULL;
	}
	if (strcmp(p, "ms") == 0)
		mult = 1;
	else if (strcmp(p, "s") == 0)
		mult = 1000;
	else if (strcmp(p, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(p, "h") == 0)
		mult = 3600 * 1000;
	else
		return "a duration is a whole number and a unit: ms, s, m or "
		    "h (e.g. 250ms, 30s, 5m)";
	if (n > CONFIG_MAX_DURATION_MS / mult)
		return "too large (at most 596h)";
	*ms = n * mult;
	return NULL;
}

int
config_parse_duration(const char *s, uint64_t *ms)
{
	uint64_t	v;

	if (s == NULL || duration_problem(s, &v) != NULL)
		return -1;
	*ms = v;
	return 0;
}

/* Store duration V of KEY in *MS; ZERO_OK for "0 allowed". */
static void
get_duration(struct loader *L, const char *key, const struct ynode *v,
    uint64_t *ms, bool zero_ok)
{
	const char	*why;
	char		*s, tmp[64];
	uint64_t	 d;

	if ((s = value_str(L, key, v)) == NULL)
		return;
	if ((why = duration_problem(s, &d)) != NULL)
		problem_at(L, v, "%s: '%s' is not a duration: %s", key,
		    shown(s, tmp), why);
	else if (d == 0 && !zero_ok)
		problem_at(L, v, "%s: must be more than 0", key);
	else
		*ms = d;
	free(s);
}

/* An octal file mode, as chmod takes it: "0770", "2770", 770. */
static void
get_mode(struct loader *L, const char *key, const struct ynode *v,
    mode_t *mode)
{
	char		*s, tmp[64];
	const char	*p;
	unsigned	 m = 0;

	if ((s = value_str(L, key, v)) == NULL)
		return;
	p = s;
	if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
		p += 2;
	if (*p == '\0' || strlen(p) > 5 || strspn(p, "01234567") !=
	    strlen(p) || (m = (unsigned)strtoul(p, NULL, 8)) > 07777)
		problem_at(L, v, "%s: '%s' is not an octal file mode (e.g. "
		    "0770)", key, shown(s, tmp));
	else
		*mode = (mode_t)m;
	free(s);
}

/* A non-empty string without control characters. */
static char *
get_text(struct loader *L, const char *key, const struct ynode *v)
{
	char	*s;

	if ((s = value_str(L, key, v)) == NULL)
		return NULL;
	if (*s == '\0') {
		problem_at(L, v, "%s: must not be empty", key);
		free(s);
		return NULL;
	}
	if (has_control(s)) {
		problem_at(L, v, "%s: must not contain control characters",
		    key);
		free(s);
		return NULL;
	}
	return s;
}

/* A group name: resolved when the daemon starts, not here. */
static char *
get_group(struct loader *L, const char *key, const struct ynode *v)
{
	char	*s, tmp[64];

	if ((s = get_text(L, key, v)) == NULL)
		return NULL;
	if (strlen(s) > 64 || strpbrk(s, " \t:/,") != NULL) {
		problem_at(L, v, "%s: '%s' is not a group name", key,
		    shown(s, tmp));
		free(s);
		return NULL;
	}
	return s;
}

/* --------------------------------------------------------------- targets */

enum tkey {
	T_AUTH,
	T_SERVER_URL,
	T_TOKEN,
	T_TOKEN_FILE,
	T_WEBHOOK_URL,
	T_CHANNEL,
	T_USERNAME,
	T_ICON_URL,
	T_TEMPLATE,
	T_INTERVAL,
	T_TIMEOUT,
	T_CONNECT_TIMEOUT,
	T_BACKOFF_MIN,
	T_BACKOFF_MAX,
	T_BLOCKED_RETRY,
	T_CA_FILE,
	T_DIGEST_ROWS,
	T_DIGEST_HEADER,
	T_ATTACHMENT,
	T_MAX
};

#define FOR_ANY		0
#define FOR_TOKEN	1
#define FOR_WEBHOOK	2

static const struct {
	const char	*name;
	int		 only;
} target_keys[T_MAX] = {
	[T_AUTH] = { "auth", FOR_ANY },
	[T_SERVER_URL] = { "server_url", FOR_TOKEN },
	[T_TOKEN] = { "token", FOR_TOKEN },
	[T_TOKEN_FILE] = { "token_file", FOR_TOKEN },
	[T_WEBHOOK_URL] = { "webhook_url", FOR_WEBHOOK },
	[T_CHANNEL] = { "channel", FOR_ANY },
	[T_USERNAME] = { "username", FOR_WEBHOOK },
	[T_ICON_URL] = { "icon_url", FOR_WEBHOOK },
	[T_TEMPLATE] = { "template", FOR_ANY },
	[T_INTERVAL] = { "interval", FOR_ANY },
	[T_TIMEOUT] = { "timeout", FOR_ANY },
	[T_CONNECT_TIMEOUT] = { "connect_timeout", FOR_ANY },
	[T_BACKOFF_MIN] = { "backoff_min", FOR_ANY },
	[T_BACKOFF_MAX] = { "backoff_max", FOR_ANY },
	[T_BLOCKED_RETRY] = { "blocked_retry", FOR_ANY },
	[T_CA_FILE] = { "ca_file", FOR_ANY },
	[T_DIGEST_ROWS] = { "digest_rows", FOR_ANY },
	[T_DIGEST_HEADER] = { "digest_header", FOR_ANY },
	[T_ATTACHMENT] = { "attachment", FOR_ANY },
};

static bool
valid_target_name(const char *s, size_t len)
{
	size_t	i;

	if (len == 0 || len > MMS_MAX_TARGET_NAME || strlen(s) != len)
		return false;
	for (i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

/* Read the token from its file: the first non-blank line, trimmed. */
static char *
read_token_file(struct loader *L, const struct ynode *v, const char *path)
{
	char	*data, *p, *end, *tok, tmp[64];
	size_t	 len;

	if (file_read_small(path, TOKEN_FILE_MAX, &data, &len) == -1) {
		if (errno == EFBIG)
			problem_at(L, v, "token_file: %s is larger than 4 KiB; "
			    "it should hold only the token", shown(path, tmp));
		else if (errno == EINVAL)
			problem_at(L, v, "token_file: %s is not a regular file",
			    shown(path, tmp));
		else
			problem_at(L, v, "token_file: cannot read %s: %s",
			    shown(path, tmp), strerror(errno));
		return NULL;
	}
	p = data;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' ||
	    *p == '\v' || *p == '\f')
		p++;
	end = p + strcspn(p, "\r\n");
	while (end > p && (end[-1] == ' ' || end[-1] == '\t' ||
	    end[-1] == '\v' || end[-1] == '\f'))
		end--;
	tok = NULL;
	if (strlen(data) != len)
		problem_at(L, v, "token_file: %s contains a NUL byte",
		    shown(path, tmp));
	else if (end == p)
		problem_at(L, v, "token_file: %s is empty", shown(path, tmp));
	else {
		tok = xstrndup(p, (size_t)(end - p));
		if (has_space_or_control(tok)) {
			problem_at(L, v, "token_file: the token in %s contains "
			    "white space or control characters (it is not "
			    "shown)", shown(path, tmp));
			free_secret(tok);
			tok = NULL;
		}
	}
	explicit_bzero(data, len);
	free(data);
	return tok;
}

static void
check_ca_file(struct loader *L, const struct ynode *v, const char *path)
{
	struct stat	 st;
	char		 tmp[64];
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1) {
		problem_at(L, v, "ca_file: cannot read %s: %s",
		    shown(path, tmp), strerror(errno));
		return;
	}
	if (fstat(fd, &st) == -1)
		problem_at(L, v, "ca_file: cannot read %s: %s",
		    shown(path, tmp), strerror(errno));
	else if (!S_ISREG(st.st_mode))
		problem_at(L, v, "ca_file: %s is not a regular file",
		    shown(path, tmp));
	close(fd);
}

/*
 * A template value of KEY (WHAT names it in messages): not empty, compiled.
 * NULL after reporting why.  The source is kept in *SRC when SRC is not
 * NULL, else freed.
 */
static struct template *
get_template(struct loader *L, const char *what, const struct ynode *v,
    char **src)
{
	struct template	*t;
	char		*s, *cause = NULL;

	if ((s = value_str(L, what, v)) == NULL)
		return NULL;
	if (*s == '\0') {
		problem_at(L, v, "%s: must not be empty", what);
		free(s);
		return NULL;
	}
	if ((t = template_compile(s, &cause)) == NULL) {
		problem_at(L, v, "%s: %s", what,
		    cause != NULL ? cause : "cannot be compiled");
		free(cause);
		free(s);
		return NULL;
	}
	if (src != NULL)
		*src = s;
	else
		free(s);
	return t;
}

static void
attachment_free(struct attachment_conf *a)
{
	size_t	i;

	if (a == NULL)
		return;
	template_free(a->fallback);
	template_free(a->color);
	template_free(a->pretext);
	template_free(a->title);
	template_free(a->title_link);
	template_free(a->text);
	template_free(a->footer);
	for (i = 0; i < a->nfields; i++) {
		template_free(a->fields[i].title);
		template_free(a->fields[i].value);
	}
	free(a->fields);
	free(a);
}

/* YAML's true and false, as text. */
static int
parse_bool(const char *s, bool *b)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 ||
	    strcmp(s, "TRUE") == 0)
		*b = true;
	else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 ||
	    strcmp(s, "FALSE") == 0)
		*b = false;
	else
		return -1;
	return 0;
}

/* One item of attachment.fields (N is 1-based): false if it is bad. */
static bool
attachment_field_build(struct loader *L, size_t n, const struct ynode *v,
    struct attachment_field *f)
{
	const struct ynode	*k, *kv, *seen[3] = { NULL, NULL, NULL };
	char			 what[64], tmp[64], *s;
	size_t			 i;
	bool			 good = true;

	if (v->kind != Y_MAP || v->null) {
		problem_at(L, v, "attachment: field %zu: expected a mapping "
		    "of title, value and short, found %s", n, ykind_name(v));
		return false;
	}
	for (i = 0; i + 1 < v->n; i += 2) {
		k = v->kids[i];
		kv = v->kids[i + 1];
		if (k->kind != Y_SCALAR)
			continue;			/* reported */
		if (strcmp(k->text, "title") == 0) {
			if (seen[0] != NULL || kv->null)
				continue;
			seen[0] = k;
			snprintf(what, sizeof what, "attachment: field %zu: "
			    "title", n);
			if ((f->title = get_template(L, what, kv, NULL)) ==
			    NULL)
				good = false;
		} else if (strcmp(k->text, "value") == 0) {
			if (seen[1] != NULL || kv->null)
				continue;
			seen[1] = k;
			snprintf(what, sizeof what, "attachment: field %zu: "
			    "value", n);
			if ((f->value = get_template(L, what, kv, NULL)) ==
			    NULL)
				good = false;
		} else if (strcmp(k->text, "short") == 0) {
			if (seen[2] != NULL || kv->null)
				continue;
			seen[2] = k;
			snprintf(what, sizeof what, "attachment: field %zu: "
			    "short", n);
			if ((s = value_str(L, what, kv)) == NULL) {
				good = false;
				continue;
			}
			if (parse_bool(s, &f->is_short) == -1) {
				problem_at(L, kv, "%s: '%s' is neither true "
				    "nor false", what, shown(s, tmp));
				good = false;
			}
			free(s);
		} else {
			problem_at(L, k, "attachment: field %zu: unknown key "
			    "'%s' (a field has title, value and short)", n,
			    shown(k->text, tmp));
			good = false;
		}
	}
	if (seen[0] == NULL && seen[1] == NULL) {
		problem_at(L, v, "attachment: field %zu: needs a title or a "
		    "value", n);
		good = false;
	}
	return good;
}

/* The attachment's string keys, in the order they are sent. */
static const char *const attachment_keys[] = {
	"fallback", "color", "pretext", "title", "title_link", "text",
	"footer",
};
#define ATTACHMENT_NKEYS (sizeof attachment_keys / sizeof attachment_keys[0])

static struct template **
attachment_slot(struct attachment_conf *a, size_t i)
{
	struct template	**slots[ATTACHMENT_NKEYS] = {
		&a->fallback, &a->color, &a->pretext, &a->title,
		&a->title_link, &a->text, &a->footer,
	};

	return slots[i];
}

/* The value of "attachment:", known not to be null; NULL if unusable. */
static struct attachment_conf *
attachment_build(struct loader *L, const struct ynode *v)
{
	struct attachment_conf	*a;
	const struct ynode	*k, *kv, *seen[ATTACHMENT_NKEYS + 1] = { 0 };
	char			 what[64], tmp[64];
	size_t			 i, j, nkeys = 0;
	bool			 good = true;

	if (v->kind != Y_MAP) {
		problem_at(L, v, "attachment: expected a mapping (fallback, "
		    "color, pretext, title, title_link, text, footer, "
		    "fields), found %s", ykind_name(v));
		return NULL;
	}
	a = xcalloc(1, sizeof *a);
	for (i = 0; i + 1 < v->n; i += 2) {
		k = v->kids[i];
		kv = v->kids[i + 1];
		if (k->kind != Y_SCALAR)
			continue;			/* reported */
		for (j = 0; j < ATTACHMENT_NKEYS; j++)
			if (strcmp(k->text, attachment_keys[j]) == 0)
				break;
		if (j == ATTACHMENT_NKEYS && strcmp(k->text, "fields") != 0) {
			problem_at(L, k, "attachment: unknown key '%s' (one of "
			    "fallback, color, pretext, title, title_link, "
			    "text, footer, fields)", shown(k->text, tmp));
			good = false;
			continue;
		}
		if (seen[j] != NULL || kv->null)
			continue;	/* a duplicate (reported), or absent */
		seen[j] = k;
		nkeys++;
		if (j < ATTACHMENT_NKEYS) {
			snprintf(what, sizeof what, "attachment: %s",
			    attachment_keys[j]);
			if ((*attachment_slot(a, j) = get_template(L, what, kv,
			    NULL)) == NULL)
				good = false;
			continue;
		}
		if (kv->kind != Y_SEQ) {
			problem_at(L, kv, "attachment: fields: expected a list "
			    "of fields, found %s", ykind_name(kv));
			good = false;
			continue;
		}
		if (kv->n == 0) {
			problem_at(L, kv, "attachment: fields: the list is "
			    "empty");
			good = false;
			continue;
		}
		a->fields = xcalloc(kv->n, sizeof *a->fields);
		a->nfields = kv->n;
		for (j = 0; j < kv->n; j++)
			if (!attachment_field_build(L, j + 1, kv->kids[j],
			    &a->fields[j]))
				good = false;
	}
	if (nkeys == 0 && good) {
		problem_at(L, v, "attachment: give at least one of fallback, "
		    "color, pretext, title, title_link, text, footer, "
		    "fields");
		good = false;
	}
	if (!good) {
		attachment_free(a);
		return NULL;
	}
	return a;
}

/* "1" to "1000". */
static void
get_digest_rows(struct loader *L, const char *key, const struct ynode *v,
    unsigned *rows)
{
	char		*s, tmp[64];
	size_t		 len;
	unsigned long	 n;

	*rows = 0;		/* marks a bad value until it is known good */
	if ((s = value_str(L, key, v)) == NULL)
		return;
	len = strlen(s);
	if (len == 0 || len > 4 || strspn(s, "0123456789") != len ||
	    (n = strtoul(s, NULL, 10)) < 1 || n > DIGEST_ROWS_MAX)
		problem_at(L, v, "%s: '%s' is not a whole number from 1 to "
		    "%d", key, shown(s, tmp), DIGEST_ROWS_MAX);
	else
		*rows = (unsigned)n;
	free(s);
}

static void
target_free(struct target_conf *tc)
{
	if (tc == NULL)
		return;
	free(tc->name);
	free(tc->server_url);
	free_secret(tc->token);
	free(tc->token_file);
	free_secret(tc->webhook_url);
	free(tc->channel);
	free(tc->username);
	free(tc->icon_url);
	free(tc->template_src);
	template_free(tc->template);
	template_free(tc->channel_template);
	template_free(tc->digest_header);
	attachment_free(tc->attachment);
	free(tc->ca_file);
	free(tc);
}

/* The value of a target key, known to be given and not null. */
static void
target_value(struct loader *L, struct target_conf *tc, enum tkey id,
    const struct ynode *v, bool auth_known)
{
	const char	*name = target_keys[id].name, *why;
	char		*s, *cause, tmp[64];
	size_t		 len;

	switch (id) {
	case T_AUTH:
		break;		/* done before */
	case T_SERVER_URL:
		if ((s = value_str(L, name, v)) == NULL)
			return;
		len = strlen(s);
		while (len > 0 && s[len - 1] == '/')
			s[--len] = '\0';
		if ((why = url_problem(s)) != NULL)
			problem_at(L, v, "server_url: %s", why);
		else if (strpbrk(s, "?#") != NULL)
			problem_at(L, v, "server_url: must be the server's "
			    "address, without a query or fragment");
		else {
			tc->server_url = s;
			return;
		}
		free(s);
		break;
	case T_TOKEN:
		if ((s = value_str(L, name, v)) == NULL)
			return;
		if (*s == '\0')
			problem_at(L, v, "token: must not be empty");
		else if (has_space_or_control(s))
			problem_at(L, v, "token: contains white space or "
			    "control characters (the value is not shown)");
		else {
			tc->token = s;
			return;
		}
		free_secret(s);
		break;
	case T_TOKEN_FILE:
		if ((s = get_text(L, name, v)) == NULL)
			return;
		tc->token_file = s;
		/* Read only once it is known to be the one source. */
		break;
	case T_WEBHOOK_URL:
		if ((s = value_str(L, name, v)) == NULL)
			return;
		if ((why = url_problem(s)) != NULL) {
			/* The URL is a secret: not shown. */
			problem_at(L, v, "webhook_url: %s", why);
			free_secret(s);
		} else
			tc->webhook_url = s;
		break;
	case T_CHANNEL:
		if ((s = get_text(L, name, v)) == NULL)
			return;
		if (!auth_known) {
			free(s);
			return;
		}
		if (tc->auth == AUTH_TOKEN && strstr(s, "{{") != NULL) {
			/* Per-row channels: checked as each row renders. */
			cause = NULL;
			if ((tc->channel_template = template_compile(s,
			    &cause)) == NULL) {
				problem_at(L, v, "channel: %s", cause != NULL ?
				    cause : "cannot be compiled");
				free(cause);
				free(s);
				return;
			}
			tc->channel = s;
			return;
		}
		if (tc->auth == AUTH_TOKEN) {
			if (looks_like_id(s)) {
				tc->channel = s;
				return;
			}
			len = strlen(s);
			if (len != MMS_ID_LEN)
				problem_at(L, v, "channel: a token target "
				    "needs a channel id of %d letters and "
				    "digits; '%s' has %zu characters",
				    MMS_ID_LEN, shown(s, tmp), len);
			else
				problem_at(L, v, "channel: a token target "
				    "needs a channel id of %d letters and "
				    "digits; '%s' has other characters",
				    MMS_ID_LEN, shown(s, tmp));
		} else {
			if (strstr(s, "{{") != NULL)
				problem_at(L, v, "channel: '%s': a webhook "
				    "target takes one channel name, not a "
				    "template (per-row channels are for auth: "
				    "token targets)", shown(s, tmp));
			else if (looks_like_id(s[0] == '#' ? s + 1 : s))
				problem_at(L, v, "channel: '%s' looks like a "
				    "channel id; a webhook takes a channel "
				    "name (e.g. town-square) or @username",
				    shown(s, tmp));
			else if (strlen(s) > 65 ||
			    has_space_or_control(s))
				problem_at(L, v, "channel: '%s' is not a "
				    "channel name (e.g. town-square) or "
				    "@username", shown(s, tmp));
			else {
				tc->channel = s;
				return;
			}
		}
		free(s);
		break;
	case T_USERNAME:
		if ((s = get_text(L, name, v)) != NULL)
			tc->username = s;
		break;
	case T_ICON_URL:
		if ((s = value_str(L, name, v)) == NULL)
			return;
		if ((why = url_problem(s)) != NULL) {
			problem_at(L, v, "icon_url: %s", why);
			free(s);
		} else
			tc->icon_url = s;
		break;
	case T_TEMPLATE:
		tc->template = get_template(L, name, v, &tc->template_src);
		break;
	case T_DIGEST_ROWS:
		get_digest_rows(L, name, v, &tc->digest_rows);
		break;
	case T_DIGEST_HEADER:
		tc->digest_header = get_template(L, name, v, NULL);
		break;
	case T_ATTACHMENT:
		tc->attachment = attachment_build(L, v);
		break;
	case T_INTERVAL:
		get_duration(L, name, v, &tc->interval_ms, true);
		break;
	case T_TIMEOUT:
		get_duration(L, name, v, &tc->timeout_ms, false);
		break;
	case T_CONNECT_TIMEOUT:
		get_duration(L, name, v, &tc->connect_timeout_ms, false);
		break;
	case T_BACKOFF_MIN:
		get_duration(L, name, v, &tc->backoff_min_ms, false);
		break;
	case T_BACKOFF_MAX:
		get_duration(L, name, v, &tc->backoff_max_ms, false);
		break;
	case T_BLOCKED_RETRY:
		get_duration(L, name, v, &tc->blocked_retry_ms, false);
		break;
	case T_CA_FILE:
		if ((s = get_text(L, name, v)) == NULL)
			return;
		check_ca_file(L, v, s);
		tc->ca_file = s;
		break;
	case T_MAX:
		break;
	}
}

/* Check target KEY: VAL; a target_conf, or NULL when it is unusable. */
static struct target_conf *
target_build(struct loader *L, const struct ynode *key,
    const struct ynode *val)
{
	const struct ynode	*at[T_MAX] = { 0 };	/* keys given */
	const struct ynode	*atv[T_MAX] = { 0 };	/* their values */
	const struct ynode	*v, *k;
	struct target_conf	*tc;
	const char		*tname;
	char			*s, tmp[64];
	size_t			 i;
	int			 id, only;
	bool			 auth_known = false;

	tc = xcalloc(1, sizeof *tc);
	tc->line = key->line;
	tc->column = key->col;
	tc->interval_ms = DEFAULT_INTERVAL_MS;
	tc->timeout_ms = DEFAULT_TIMEOUT_MS;
	tc->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	tc->backoff_min_ms = DEFAULT_BACKOFF_MIN_MS;
	tc->backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
	tc->blocked_retry_ms = DEFAULT_BLOCKED_RETRY_MS;
	tc->digest_rows = 1;

	if (!valid_target_name(key->text, key->len)) {
		problem_at(L, key, "target name '%s' is not 1 to %d letters, "
		    "digits, '_' or '-'", shown(key->text, tmp),
		    MMS_MAX_TARGET_NAME);
		target_free(tc);
		return NULL;
	}
	tc->name = xstrdup(key->text);
	tname = tc->name;
	if (val->kind != Y_MAP || val->null) {
		problem_at(L, val->null ? key : val, "target '%s': expected a "
		    "mapping of settings, found %s", tname, ykind_name(val));
		target_free(tc);
		return NULL;
	}

	/* Which keys are here: a null value counts as absent. */
	for (i = 0; i + 1 < val->n; i += 2) {
		k = val->kids[i];
		v = val->kids[i + 1];
		if (k->kind != Y_SCALAR)
			continue;		/* reported */
		for (id = 0; id < T_MAX; id++)
			if (strcmp(k->text, target_keys[id].name) == 0)
				break;
		if (id == T_MAX) {
			problem_at(L, k, "target '%s': unknown key '%s'",
			    tname, shown(k->text, tmp));
			continue;
		}
		if (at[id] != NULL || v->null)
			continue;	/* a duplicate (reported), or absent */
		at[id] = k;
		atv[id] = v;
	}

	if (at[T_AUTH] != NULL) {
		v = atv[T_AUTH];
		if ((s = value_str(L, "auth", v)) != NULL) {
			if (strcmp(s, "token") == 0) {
				tc->auth = AUTH_TOKEN;
				auth_known = true;
			} else if (strcmp(s, "webhook") == 0) {
				tc->auth = AUTH_WEBHOOK;
				auth_known = true;
			} else
				problem_at(L, v, "auth: '%s' is neither "
				    "'token' nor 'webhook'", shown(s, tmp));
			free(s);
		}
	} else
		problem_at(L, key, "target '%s': missing required key 'auth' "
		    "(token or webhook)", tname);

	/* Every value, in file order. */
	for (i = 0; i + 1 < val->n; i += 2) {
		k = val->kids[i];
		for (id = 0; id < T_MAX; id++)
			if (at[id] == k)
				break;
		if (id == T_MAX)
			continue;
		only = target_keys[id].only;
		if (auth_known && only != FOR_ANY &&
		    (only == FOR_TOKEN) != (tc->auth == AUTH_TOKEN)) {
			problem_at(L, k, "target '%s': '%s' is only for "
			    "auth: %s targets", tname, target_keys[id].name,
			    only == FOR_TOKEN ? "token" : "webhook");
			continue;
		}
		target_value(L, tc, (enum tkey)id, val->kids[i + 1],
		    auth_known);
	}

	/* Keys that must be there, for the kind of target. */
	if (at[T_TEMPLATE] == NULL && at[T_ATTACHMENT] == NULL)
		problem_at(L, key, "target '%s': missing required key "
		    "'template' (or an 'attachment')", tname);
	if (tc->digest_rows == 0)
		tc->digest_rows = 1;		/* bad: reported */
	else if (at[T_DIGEST_HEADER] != NULL && tc->digest_rows == 1)
		problem_at(L, at[T_DIGEST_HEADER], "target '%s': "
		    "digest_header needs digest_rows > 1", tname);
	if (auth_known && tc->auth == AUTH_TOKEN) {
		if (at[T_SERVER_URL] == NULL)
			problem_at(L, key, "target '%s': missing required key "
			    "'server_url'", tname);
		if (at[T_CHANNEL] == NULL)
			problem_at(L, key, "target '%s': missing required key "
			    "'channel' (a token target posts to a channel "
			    "id)", tname);
		if (at[T_TOKEN] != NULL && at[T_TOKEN_FILE] != NULL) {
			k = at[T_TOKEN]->line > at[T_TOKEN_FILE]->line ?
			    at[T_TOKEN] : at[T_TOKEN_FILE];
			problem_at(L, k, "target '%s': both 'token' and "
			    "'token_file' are given; give one source of the "
			    "token", tname);
		} else if (at[T_TOKEN] == NULL && at[T_TOKEN_FILE] == NULL)
			problem_at(L, key, "target '%s': missing required key "
			    "'token' or 'token_file'", tname);
		else if (tc->token_file != NULL)
			tc->token = read_token_file(L, atv[T_TOKEN_FILE],
			    tc->token_file);
	}
	if (auth_known && tc->auth == AUTH_WEBHOOK &&
	    at[T_WEBHOOK_URL] == NULL)
		problem_at(L, key, "target '%s': missing required key "
		    "'webhook_url'", tname);
	if (tc->backoff_max_ms < tc->backoff_min_ms) {
		k = at[T_BACKOFF_MAX] != NULL ? at[T_BACKOFF_MAX] :
		    at[T_BACKOFF_MIN] != NULL ? at[T_BACKOFF_MIN] : key;
		problem_at(L, k, "target '%s': backoff_max is less than "
		    "backoff_min", tname);
	}
	return tc;
}

static void
targets_build(struct loader *L, struct config *conf, const struct ynode *v)
{
	struct target_conf	*tc;
	size_t			 i, j;
	const struct ynode	*k, *o;
	bool			 dup;

	if (v->kind != Y_MAP) {
		problem_at(L, v, "targets: expected a mapping of target names "
		    "to settings, found %s", ykind_name(v));
		return;
	}
	if (v->n == 0) {
		problem_at(L, v, "targets: no target is defined");
		return;
	}
	for (i = 0; i + 1 < v->n; i += 2) {
		k = v->kids[i];
		if (k->kind != Y_SCALAR)
			continue;		/* reported */
		/* A duplicate name was reported while parsing. */
		dup = false;
		for (j = 0; j < i && !dup; j += 2) {
			o = v->kids[j];
			dup = o->kind == Y_SCALAR && o->len == k->len &&
			    memcmp(o->text, k->text, k->len) == 0;
		}
		if (dup)
			continue;
		if ((tc = target_build(L, k, v->kids[i + 1])) == NULL)
			continue;
		conf->targets = xreallocarray(conf->targets,
		    conf->ntargets + 1, sizeof *conf->targets);
		conf->targets[conf->ntargets++] = tc;
	}
}

/* ------------------------------------------------------------ top level */

enum ckey {
	C_SPOOL_DIR,
	C_STATUS_SOCKET,
	C_LOG_LEVEL,
	C_SPOOL_MODE,
	C_SPOOL_GROUP,
	C_SOCKET_MODE,
	C_SOCKET_GROUP,
	C_TARGETS,
	C_MAX
};

static const char *const config_keys[C_MAX] = {
	[C_SPOOL_DIR] = "spool_dir",
	[C_STATUS_SOCKET] = "status_socket",
	[C_LOG_LEVEL] = "log_level",
	[C_SPOOL_MODE] = "spool_mode",
	[C_SPOOL_GROUP] = "spool_group",
	[C_SOCKET_MODE] = "socket_mode",
	[C_SOCKET_GROUP] = "socket_group",
	[C_TARGETS] = "targets",
};

static void
config_value(struct loader *L, struct config *conf, enum ckey id,
    const struct ynode *v)
{
	const char		*name = config_keys[id];
	char			*s, tmp[64];
	int			 level;
	struct sockaddr_un	 sun;

	switch (id) {
	case C_SPOOL_DIR:
		conf->spool_dir = get_text(L, name, v);
		break;
	case C_STATUS_SOCKET:
		if ((s = get_text(L, name, v)) == NULL)
			break;
		if (strlen(s) >= sizeof sun.sun_path) {
			problem_at(L, v, "status_socket: the path is too long "
			    "for a Unix socket (at most %zu bytes)",
			    sizeof sun.sun_path - 1);
			free(s);
		} else
			conf->status_socket = s;
		break;
	case C_LOG_LEVEL:
		if ((s = value_str(L, name, v)) == NULL)
			break;
		if ((level = log_level_parse(s)) == -1)
			problem_at(L, v, "log_level: '%s' is not one of error, "
			    "warning, info, debug", shown(s, tmp));
		else
			conf->log_level = (enum log_level)level;
		free(s);
		break;
	case C_SPOOL_MODE:
		get_mode(L, name, v, &conf->spool_mode);
		if ((conf->spool_mode & 0700) != 0700) {
			problem_at(L, v, "spool_mode: the owner (mmsyncd) "
			    "needs read, write and search (0700)");
			conf->spool_mode = DEFAULT_SPOOL_MODE;
		}
		break;
	case C_SPOOL_GROUP:
		conf->spool_group = get_group(L, name, v);
		break;
	case C_SOCKET_MODE:
		get_mode(L, name, v, &conf->socket_mode);
		if ((conf->socket_mode & 0600) != 0600) {
			problem_at(L, v, "socket_mode: the owner (mmsyncd) "
			    "needs read and write (0600)");
			conf->socket_mode = DEFAULT_SOCKET_MODE;
		}
		break;
	case C_SOCKET_GROUP:
		conf->socket_group = get_group(L, name, v);
		break;
	case C_TARGETS:
		targets_build(L, conf, v);
		break;
	case C_MAX:
		break;
	}
}

static struct config *
config_build(struct loader *L, const struct ynode *root)
{
	const struct ynode	*at[C_MAX] = { 0 }, *k, *v;
	struct config		*conf;
	char			 tmp[64];
	size_t			 i;
	int			 id;

	conf = xcalloc(1, sizeof *conf);
	conf->path = xstrdup(L->path);
	conf->log_level = LOG_LEVEL_INFO;
	conf->spool_mode = DEFAULT_SPOOL_MODE;
	conf->socket_mode = DEFAULT_SOCKET_MODE;

	if (root->null) {
		problem_at(L, root, "the configuration is empty");
		return conf;
	}
	if (root->kind != Y_MAP) {
		problem_at(L, root, "expected a mapping of settings at the top "
		    "level, found %s", ykind_name(root));
		return conf;
	}
	for (i = 0; i + 1 < root->n; i += 2) {
		k = root->kids[i];
		v = root->kids[i + 1];
		if (k->kind != Y_SCALAR)
			continue;		/* reported */
		for (id = 0; id < C_MAX; id++)
			if (strcmp(k->text, config_keys[id]) == 0)
				break;
		if (id == C_MAX) {
			problem_at(L, k, "unknown key '%s'",
			    shown(k->text, tmp));
			continue;
		}
		if (at[id] != NULL)
			continue;		/* a duplicate: reported */
		if (v->null) {
			/* Same as absent for optional keys. */
			if (id == C_SPOOL_DIR || id == C_STATUS_SOCKET ||
			    id == C_TARGETS) {
				problem_at(L, k, "%s: no value given",
				    config_keys[id]);
				at[id] = k;
			}
			continue;
		}
		at[id] = k;
		config_value(L, conf, (enum ckey)id, v);
	}
	if (at[C_SPOOL_DIR] == NULL)
		problem_at(L, root, "missing required key 'spool_dir'");
	if (at[C_STATUS_SOCKET] == NULL)
		problem_at(L, root, "missing required key 'status_socket'");
	if (at[C_TARGETS] == NULL)
		problem_at(L, root, "missing required key 'targets'");
	return conf;
}

/* ------------------------------------------------------------ interface */

struct config *
config_load(const char *path, struct config_errors *errs)
{
	struct loader	 L;
	struct ynode	*root;
	struct config	*conf = NULL;
	char		*data = NULL;
	size_t		 len = 0;

	memset(&L, 0, sizeof L);
	L.path = path;
	if (file_read_small(path, CONFIG_MAX_BYTES, &data, &len) == -1) {
		if (errno == EFBIG)
			problem_add(&L, 0, 0, "too large (a configuration is "
			    "at most 1 MiB)");
		else
			problem_add(&L, 0, 0, "cannot open: %s",
			    strerror(errno));
	} else {
		L.data = data;
		L.datalen = len;
		if ((root = parse_tree(&L)) != NULL) {
			conf = config_build(&L, root);
			ynode_free(root);
		}
		explicit_bzero(data, len);
		free(data);
	}
	if (L.nprobs > 0 || L.truncated) {
		config_free(conf);
		conf = NULL;
	}
	problems_flush(&L, errs);
	return conf;
}

void
config_free(struct config *conf)
{
	size_t	i;

	if (conf == NULL)
		return;
	for (i = 0; i < conf->ntargets; i++)
		target_free(conf->targets[i]);
	free(conf->targets);
	free(conf->path);
	free(conf->spool_dir);
	free(conf->status_socket);
	free(conf->spool_group);
	free(conf->socket_group);
	free(conf);
}

struct config *
config_copy_spool(const struct config *conf)
{
	struct config	*copy = xcalloc(1, sizeof *copy);

	copy->path = xstrdup(conf->path);
	copy->spool_dir = xstrdup(conf->spool_dir);
	copy->status_socket = xstrdup(conf->status_socket);
	copy->log_level = conf->log_level;
	copy->spool_mode = conf->spool_mode;
	copy->spool_group = conf->spool_group ?
	    xstrdup(conf->spool_group) : NULL;
	copy->socket_mode = conf->socket_mode;
	copy->socket_group = conf->socket_group ?
	    xstrdup(conf->socket_group) : NULL;
	return copy;
}

void
config_errors_free(struct config_errors *errs)
{
	size_t	i;

	if (errs == NULL)
		return;
	for (i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->n = 0;
}

const struct target_conf *
config_find_target(const struct config *conf, const char *name)
{
	size_t	i;

	if (conf == NULL || name == NULL)
		return NULL;
	for (i = 0; i < conf->ntargets; i++)
		if (strcmp(conf->targets[i]->name, name) == 0)
			return conf->targets[i];
	return NULL;
}
