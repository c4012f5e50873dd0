/*
 * fuzz_message: rows into posts (message.c): rendering, digests,
 * attachments, per-row channels and the JSON body, as the engine drives
 * them.
 *
 * Input: one byte choosing one of the targets below, then rows, one JSON
 * object per line (as in a .ndjson batch; lines that are not objects
 * no deeper than 64 are skipped, as the reader would set them aside).
 * Each row is freed right after message_add(), as the reader does, so a
 * message that kept a pointer into a row is caught.
 *
 * Checked: MESSAGE_FULL never comes for an empty message (the engine adds
 * the row again to an empty one); a bad row has a reason that is a valid
 * UTF-8 C string; every body is valid UTF-8 and parses as a JSON object;
 * what a person reads in it (the message text, every attachment string)
 * is at most MMS_MAX_MESSAGE_RUNES code points as Mattermost decodes
 * them; a token body has a 26-character channel id and the row id in
 * pending_post_id and props; a digest holds at most digest_rows rows, one
 * attachment per row.
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
#define ROW_ID		"0f1e2d3c4b5a6978-42"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void	fail(const char *, ...) MMS_PRINTF(1, 2) MMS_NORETURN;

static const char config_yaml[] =
    "spool_dir: /nonexistent/spool\n"
    "status_socket: /nonexistent/mmsyncd.sock\n"
    "targets:\n"
    /* Per-row channels, digests with a header, an attachment. */
    "  digest:\n"
    "    auth: token\n"
    "    server_url: http://127.0.0.1:9\n"
    "    token: t\n"
    "    channel: \"{{ch}}\"\n"
    "    template: \"{{name}}: {{text}}\"\n"
    "    digest_rows: 5\n"
    "    digest_header: \"**{{count}} new rows** {{name}}\"\n"
    "    attachment:\n"
    "      fallback: \"{{name}}\"\n"
    "      color: \"#2eb886\"\n"
    "      pretext: \"{{a.b}}\"\n"
    "      title: \"{{title}}\"\n"
    "      title_link: \"https://crm.example.com/{{id}}\"\n"
    "      text: \"{{text}}\"\n"
    "      footer: \"{{footer}}\"\n"
    "      fields:\n"
    "        - title: Amount\n"
    "          value: \"{{amount}} {{currency}}\"\n"
    "          short: true\n"
    "        - value: \"{{text}}\"\n"
    "        - title: \"{{title}}\"\n"
    /* One post per row, every webhook override. */
    "  hook:\n"
    "    auth: webhook\n"
    "    webhook_url: http://127.0.0.1:9/hooks/xxxxxxxxxxxxxxxxxxxxxxxxxx\n"
    "    channel: town-square\n"
    "    username: \"bot\\\"\\u00e9\"\n"
    "    icon_url: https://example.com/i.png\n"
    "    template: \"{{text}}\"\n"
    /* No template: only attachments, and a digest without a header. */
    "  cards:\n"
    "    auth: webhook\n"
    "    webhook_url: http://127.0.0.1:9/hooks/yyyyyyyyyyyyyyyyyyyyyyyyyy\n"
    "    digest_rows: 3\n"
    "    attachment:\n"
    "      text: \"{{text}}\"\n"
    "      fields:\n"
    "        - title: \"{{name}}\"\n"
    "          value: \"{{text}}\"\n"
    /* Big digests under one fixed channel, a header of the count alone. */
    "  big:\n"
    "    auth: token\n"
    "    server_url: http://127.0.0.1:9\n"
    "    token: t\n"
    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n"
    "    template: \"{{text}}\"\n"
    "    digest_rows: 1000\n"
    "    digest_header: \"{{count}}\"\n"
    /* A header without a template. */
    "  header:\n"
    "    auth: webhook\n"
    "    webhook_url: http://127.0.0.1:9/hooks/zzzzzzzzzzzzzzzzzzzzzzzzzz\n"
    "    digest_rows: 4\n"
    "    digest_header: \"{{count}} rows \\u00e9{{text}}\"\n"
    "    attachment:\n"
    "      title: \"{{text}}\"\n";

static struct config	*conf;
static const uint8_t	*cur;
static size_t		 cursize;

static void
fail(const char *fmt, ...)
{
	va_list	ap;

	fprintf(stderr, "fuzz_message: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  input: %zu bytes\n", cursize);
	abort();
}

/* Code points of a decoded (valid UTF-8) string. */
static size_t
runes(const char *s)
{
	size_t	n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

static yajl_val
get(yajl_val o, const char *key)
{
	size_t	i;

	if (o == NULL || !YAJL_IS_OBJECT(o))
		return NULL;
	for (i = 0; i < o->u.object.len; i++)
		if (strcmp(o->u.object.keys[i], key) == 0)
			return o->u.object.values[i];
	return NULL;
}

/* The code points a person reads in one attachment. */
static size_t
attachment_runes(yajl_val a)
{
	static const char *const keys[] = { "fallback", "color", "pretext",
	    "title", "title_link", "text", "footer" };
	yajl_val	v, fields, f;
	size_t		i, n = 0;

	if (!YAJL_IS_OBJECT(a))
		fail("an attachment is not an object");
	for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if ((v = get(a, keys[i])) != NULL) {
			if (!YAJL_IS_STRING(v))
				fail("attachment %s is not a string", keys[i]);
			n += runes(v->u.string);
		}
	if ((fields = get(a, "fields")) != NULL) {
		if (!YAJL_IS_ARRAY(fields))
			fail("attachment fields is not an array");
		for (i = 0; i < fields->u.array.len; i++) {
			f = fields->u.array.values[i];
			if ((v = get(f, "title")) != NULL)
				n += runes(YAJL_GET_STRING(v));
			if ((v = get(f, "value")) != NULL)
				n += runes(YAJL_GET_STRING(v));
			if ((v = get(f, "short")) == NULL ||
			    !(YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)))
				fail("attachment field without short");
		}
	}
	return n;
}

static void
check_body(const struct message *m, const struct target_conf *tc)
{
	struct buf	 body;
	yajl_val	 root, text, atts, v;
	char		 err[256];
	size_t		 n, i;

	if (m->nrows == 0)
		fail("a body for no rows");
	if (m->nrows > tc->digest_rows)
		fail("%zu rows in a digest of at most %u", m->nrows,
		    tc->digest_rows);
	buf_init(&body);
	buf_addstr(&body, "stale");	/* message_body starts afresh */
	message_body(m, ROW_ID, &body);
	if (body.data == NULL || body.data[body.len] != '\0' ||
	    strlen(body.data) != body.len)
		fail("the body is not a C string");
	if (!utf8_ok((const unsigned char *)body.data, body.len))
		fail("the body is not valid UTF-8: %s", body.data);
	if ((root = yajl_tree_parse(body.data, err, sizeof err)) == NULL ||
	    !YAJL_IS_OBJECT(root))
		fail("the body is not a JSON object (%s): %s", err, body.data);

	text = get(root, tc->auth == AUTH_TOKEN ? "message" : "text");
	if (text == NULL || !YAJL_IS_STRING(text))
		fail("the body has no message text: %s", body.data);
	n = runes(text->u.string);
	if (tc->auth == AUTH_TOKEN) {
		v = get(root, "channel_id");
		if (v == NULL || !YAJL_IS_STRING(v) ||
		    strlen(v->u.string) != MMS_ID_LEN ||
		    strspn(v->u.string, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != MMS_ID_LEN)
			fail("bad channel_id: %s", body.data);
		v = get(root, "pending_post_id");
		if (v == NULL || !YAJL_IS_STRING(v) ||
		    strcmp(v->u.string, ROW_ID) != 0)
			fail("bad pending_post_id: %s", body.data);
		v = get(get(root, "props"), "mmsyncd_row");
		if (v == NULL || !YAJL_IS_STRING(v) ||
		    strcmp(v->u.string, ROW_ID) != 0)
			fail("bad props.mmsyncd_row: %s", body.data);
		atts = get(get(root, "props"), "attachments");
	} else
		atts = get(root, "attachments");
	if (tc->attachment != NULL) {
		if (atts == NULL || !YAJL_IS_ARRAY(atts) ||
		    atts->u.array.len != m->nrows)
			fail("%zu rows but not as many attachments: %s",
			    m->nrows, body.data);
		for (i = 0; i < atts->u.array.len; i++)
			n += attachment_runes(atts->u.array.values[i]);
	} else if (atts != NULL)
		fail("attachments without an attachment: %s", body.data);
	if (n > MMS_MAX_MESSAGE_RUNES)
		fail("%zu code points in a post (at most %d), %zu rows",
		    n, MMS_MAX_MESSAGE_RUNES, m->nrows);
	yajl_tree_free(root);
	buf_free(&body);
}

static void
check_reason(const char *r, size_t size)
{
	size_t	len = strnlen(r, size);

	if (len == size || len == 0)
		fail("a bad row's reason is empty or not terminated");
	if (!utf8_ok((const unsigned char *)r, len))
		fail("a bad row's reason is not valid UTF-8: %s", r);
}

static int
depth_ok(const char *s, size_t len)
{
	size_t	i;
	int	depth = 0, instr = 0, esc = 0;

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
		else if (s[i] == '/' || s[i] == '\0')
			return 0;	/* no comments, no NUL: a bad row */
		else if ((s[i] == '{' || s[i] == '[') &&
		    ++depth > ROW_MAX_DEPTH)
			return 0;
		else if (s[i] == '}' || s[i] == ']')
			depth--;
	}
	return 1;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct config_errors	 errs = { NULL, 0 };
	char			 path[64];
	size_t			 i;
	int			 fd;

	(void)argc;
	(void)argv;
	log_init("fuzz_message");
	log_set_level(LOG_LEVEL_ERROR);
	if ((fd = memfd_create("fuzz_message", MFD_CLOEXEC)) == -1 ||
	    write(fd, config_yaml, sizeof config_yaml - 1) !=
	    (ssize_t)(sizeof config_yaml - 1)) {
		perror("memfd");
		abort();
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	if ((conf = config_load(path, &errs)) == NULL) {
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		abort();
	}
	config_errors_free(&errs);
	close(fd);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct target_conf *tc;
	struct message	 m;
	const char	*p, *end, *nl;
	char		*text, reason[512], err[128];
	size_t		 len;
	yajl_val	 row;
	enum message_add r;

	if (size == 0)
		return 0;
	cur = data;
	cursize = size;
	tc = conf->targets[data[0] % conf->ntargets];
	message_init(&m, tc);
	p = (const char *)data + 1;
	end = (const char *)data + size;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)((nl != NULL ? nl : end) - p);
		row = NULL;
		if (depth_ok(p, len)) {
			text = xstrndup(p, len);
			row = yajl_tree_parse(text, err, sizeof err);
			free(text);
			if (row != NULL && !YAJL_IS_OBJECT(row)) {
				yajl_tree_free(row);
				row = NULL;
			}
		}
		if (row != NULL) {
			memset(reason, 0, sizeof reason);
			r = message_add(&m, row, reason, sizeof reason);
			if (r == MESSAGE_FULL) {
				if (m.nrows == 0)
					fail("MESSAGE_FULL for an empty "
					    "message");
				check_body(&m, tc);
				message_reset(&m);
				r = message_add(&m, row, reason,
				    sizeof reason);
				if (r == MESSAGE_FULL)
					fail("MESSAGE_FULL right after a "
					    "reset");
			}
			if (r == MESSAGE_BAD_ROW)
				check_reason(reason, sizeof reason);
			else if (r != MESSAGE_ADDED && r != MESSAGE_FULL)
				fail("message_add returned %d", (int)r);
			yajl_tree_free(row);	/* the reader's next row */
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	if (m.nrows > 0)
		check_body(&m, tc);
	message_free(&m);
	return 0;
}
