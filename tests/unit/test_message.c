/*
 * test_message.c: messages of one row or a digest of rows, their length
 * rules and their JSON bodies.  Each target is loaded from YAML by
 * config_load, as the daemon loads it.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mmsyncd.h"
#include "tap.h"

#define CH1	"4xp9fdt77pncbef59f4k1qe83o"
#define CH2	"9kq4xb1c7jf3dmyo5ru8sa2wte"

static char		 dir[PATH_MAX - 64];
static struct config	*C;
static struct message	 M;
static struct buf	 body;
static char		 reason[256];

/* Load one target (YAML lines under "targets:"); bail out on problems. */
static const struct target_conf *
target(const char *yaml)
{
	struct config_errors	 errs = { NULL, 0 };
	char			 path[PATH_MAX];
	FILE			*f;
	size_t			 i;

	config_free(C);
	snprintf(path, sizeof path, "%s/mmsyncd.yaml", dir);
	if ((f = fopen(path, "w")) == NULL ||
	    fprintf(f, "spool_dir: /tmp/spool\nstatus_socket: /tmp/s.sock\n"
	    "targets:\n  t:\n%s", yaml) < 0 || fclose(f) != 0) {
		printf("Bail out! cannot write %s: %s\n", path,
		    strerror(errno));
		exit(1);
	}
	if ((C = config_load(path, &errs)) == NULL) {
		for (i = 0; i < errs.n; i++)
			printf("# %s\n", errs.msgs[i]);
		printf("Bail out! test configuration refused\n");
		exit(1);
	}
	config_errors_free(&errs);
	return C->targets[0];
}

#define TOKEN	"    auth: token\n    server_url: https://h\n" \
		"    token: abcdef\n"
#define HOOK	"    auth: webhook\n    webhook_url: https://h/hooks/x\n"

/* Start a fresh message for TC. */
static void
begin(const struct target_conf *tc)
{
	message_free(&M);
	message_init(&M, tc);
}

static yajl_val
parse(const char *json)
{
	yajl_val	v;
	char		err[256];

	if ((v = yajl_tree_parse(json, err, sizeof err)) == NULL) {
		printf("Bail out! bad test JSON: %s: %.200s\n", err, json);
		exit(1);
	}
	return v;
}

/* Add the row JSON to M; the result, with the reason in `reason`. */
static enum message_add
add(const char *json)
{
	yajl_val		v = parse(json);
	enum message_add	r;

	reason[0] = '\0';
	r = message_add(&M, v, reason, sizeof reason);
	yajl_tree_free(v);
	return r;
}

/* A row {"KEY": "<N copies of UNIT>"} (caller frees). */
static char *
row_of(const char *key, const char *unit, size_t n)
{
	struct buf	b;
	size_t		i;

	buf_init(&b);
	buf_printf(&b, "{\"%s\":\"", key);
	for (i = 0; i < n; i++)
		buf_addstr(&b, unit);
	buf_addstr(&b, "\"}");
	return b.data;
}

/* Add a row {"KEY": "<N copies of UNIT>"}. */
static enum message_add
add_of(const char *key, const char *unit, size_t n)
{
	char			*json = row_of(key, unit, n);
	enum message_add	 r = add(json);

	free(json);
	return r;
}

/* The body of M for ROW_ID; checked to be valid JSON. */
static const char *
build(const char *row_id)
{
	yajl_val	v;
	char		err[256];

	message_body(&M, row_id, &body);
	if ((v = yajl_tree_parse(buf_cstr(&body), err, sizeof err)) == NULL)
		printf("# body is not JSON: %s\n", err);
	else
		yajl_tree_free(v);
	return buf_cstr(&body);
}

/* The "message" (or "text") of the body, parsed back. */
static char *
body_text(const char *key)
{
	const char	*path[] = { key, NULL };
	yajl_val	 v, s;
	char		*out = NULL;

	v = parse(buf_cstr(&body));
	if ((s = yajl_tree_get(v, path, yajl_t_string)) != NULL)
		out = xstrdup(s->u.string);
	yajl_tree_free(v);
	return out;
}

static void
test_single(void)
{
	const struct target_conf *tc;

	tc = target(TOKEN "    channel: " CH1 "\n"
	    "    template: \"New lead: {{name}} {{n}}\"\n");
	begin(tc);
	is_int(add("{\"name\":\"Ada \\\"A\\\"\\n\\u00e9\",\"n\":1.50}"),
	    MESSAGE_ADDED, "REST: one row added");
	is_int(M.nrows, 1, "one row");
	is_int(M.runes, 24, "runes of the text (the e-acute is one)");
	is_str(M.channel, CH1, "the configured channel");
	is_str(build("mms-0123456789abcdef-1"),
	    "{\"channel_id\":\"" CH1 "\",\"message\":\"New lead: Ada "
	    "\\\"A\\\"\\n\xc3\xa9 1.50\",\"pending_post_id\":"
	    "\"mms-0123456789abcdef-1\",\"props\":{\"mmsyncd_row\":"
	    "\"mms-0123456789abcdef-1\"}}",
	    "REST body: channel_id, message, pending_post_id, "
	    "props.mmsyncd_row");
	is_int(add("{\"name\":\"Bob\"}"), MESSAGE_FULL,
	    "digest_rows 1: a second row is FULL");
	is_int(M.nrows, 1, "FULL changed nothing");
	message_reset(&M);
	is_int(add("{\"name\":\"Bob\"}"), MESSAGE_ADDED,
	    "after a reset the row goes in");
	is_str(build("r2"), "{\"channel_id\":\"" CH1 "\",\"message\":"
	    "\"New lead: Bob {{n}}\",\"pending_post_id\":\"r2\",\"props\":"
	    "{\"mmsyncd_row\":\"r2\"}}", "REST body after reset");

	tc = target(HOOK "    template: \"{{a}}\"\n");
	begin(tc);
	is_int(add("{\"a\":\"x\\ty\"}"), MESSAGE_ADDED, "webhook: added");
	is_str(build("r1"), "{\"text\":\"x\\ty\"}",
	    "webhook body: text only, no row id");

	tc = target(HOOK "    channel: \"@ada\"\n    username: zeotap\n"
	    "    icon_url: https://example.com/i.png\n"
	    "    template: \"{{a}}\"\n");
	begin(tc);
	is_int(add("{\"a\":\"hi\"}"), MESSAGE_ADDED, "webhook: added");
	is_str(build("r1"), "{\"text\":\"hi\",\"channel\":\"@ada\","
	    "\"username\":\"zeotap\",\"icon_url\":\"https://example.com/"
	    "i.png\"}", "webhook body: channel, username, icon_url");

	tc = target(HOOK "    template: \"{{nothing}}{{e}}\"\n");
	begin(tc);
	is_int(add("{\"nothing\":null,\"e\":\"\"}"), MESSAGE_ADDED,
	    "empty text: added");
	is_str(build("r1"), "{\"text\":\"\"}", "empty text is sent as is");
}

static void
test_channels(void)
{
	const struct target_conf *tc;
	char			 want[256];

	tc = target(TOKEN "    channel: \"{{team.channel}}\"\n"
	    "    template: \"{{m}}\"\n    digest_rows: 10\n");
	ok(tc->channel_template != NULL &&
	    strcmp(tc->channel, "{{team.channel}}") == 0,
	    "channel template compiled, source kept");
	begin(tc);
	is_int(add("{\"team\":{\"channel\":\"" CH2 "\"},\"m\":\"a\"}"),
	    MESSAGE_ADDED, "channel template: a good id");
	is_str(M.channel, CH2, "the rendered channel");
	is_str(build("r"), "{\"channel_id\":\"" CH2 "\",\"message\":\"a\","
	    "\"pending_post_id\":\"r\",\"props\":{\"mmsyncd_row\":\"r\"}}",
	    "body goes to the rendered channel");

	is_int(add("{\"team\":{\"channel\":\"town-square\"},\"m\":\"b\"}"),
	    MESSAGE_BAD_ROW, "a channel name is a bad row");
	is_str(reason, "channel \"town-square\" is not a 26-character "
	    "channel id", "reason names the channel");
	ok(M.nrows == 1 && strcmp(buf_cstr(&M.text), "a") == 0 &&
	    strcmp(M.channel, CH2) == 0,
	    "a bad row leaves the message unchanged");
	is_int(add("{\"m\":\"c\"}"), MESSAGE_BAD_ROW,
	    "a row without the channel field is a bad row");
	is_str(reason, "channel \"{{team.channel}}\" is not a 26-character "
	    "channel id", "the placeholder is shown as written");
	is_int(add("{\"team\":{\"channel\":\"" CH2 "x\"}}"), MESSAGE_BAD_ROW,
	    "27 characters: a bad row");
	is_int(add("{\"team\":{\"channel\":\"4xp9fdt77pncbef59f4k1qe8-o\"}}"),
	    MESSAGE_BAD_ROW, "26 characters with a '-': a bad row");
	is_int(add("{\"team\":{\"channel\":\"ab\\ncd\"}}"), MESSAGE_BAD_ROW,
	    "control character: a bad row");
	is_str(reason, "channel \"ab?cd\" is not a 26-character channel id",
	    "control characters shown as '?'");

	{
		struct buf	 j;
		int		 i;

		buf_init(&j);
		buf_addstr(&j, "{\"team\":{\"channel\":\"a");
		for (i = 0; i < 40; i++)
			buf_addstr(&j, "\xc3\xa9");
		buf_addstr(&j, "\"}}");
		is_int(add(j.data), MESSAGE_BAD_ROW, "long channel: bad row");
		/* 64 bytes would cut an e-acute in two: 63 are shown. */
		snprintf(want, sizeof want, "channel \"a%s...\" is not a "
		    "26-character channel id",
		    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		    "\xc3\xa9\xc3\xa9\xc3\xa9");
		is_str(reason, want, "long channel cut to 64 bytes at a "
		    "character");
		buf_free(&j);
	}
	message_free(&M);
	message_init(&M, tc);
	is_int(add("{\"team\":{\"channel\":\"xyz\"}}"), MESSAGE_BAD_ROW,
	    "bad channel on an empty message");
	is_int(M.nrows, 0, "still empty");

	/* A channel change closes a digest. */
	begin(tc);
	is_int(add("{\"team\":{\"channel\":\"" CH1 "\"},\"m\":\"1\"}"),
	    MESSAGE_ADDED, "digest: first row to CH1");
	is_int(add("{\"team\":{\"channel\":\"" CH1 "\"},\"m\":\"2\"}"),
	    MESSAGE_ADDED, "digest: second row to CH1");
	is_int(add("{\"team\":{\"channel\":\"" CH2 "\"},\"m\":\"3\"}"),
	    MESSAGE_FULL, "a row to CH2 closes the digest");
	is_str(build("r"), "{\"channel_id\":\"" CH1 "\",\"message\":\"1\\n2\","
	    "\"pending_post_id\":\"r\",\"props\":{\"mmsyncd_row\":\"r\"}}",
	    "the closed digest: two rows to CH1");
	message_reset(&M);
	is_int(add("{\"team\":{\"channel\":\"" CH2 "\"},\"m\":\"3\"}"),
	    MESSAGE_ADDED, "the row to CH2 starts the next digest");
	is_str(M.channel, CH2, "next digest goes to CH2");
}

static void
test_digest(void)
{
	const struct target_conf *tc;
	char			*text;

	tc = target(TOKEN "    channel: " CH1 "\n"
	    "    template: \"- {{name}}\"\n    digest_rows: 5\n"
	    "    digest_header: \"**{{count}} new leads** \\\"x\\\"\"\n");
	is_int(tc->digest_rows, 5, "digest_rows 5");
	begin(tc);
	is_int(add("{\"name\":\"Ada\"}"), MESSAGE_ADDED, "digest row 1");
	is_int(add("{\"name\":\"Bob\"}"), MESSAGE_ADDED, "digest row 2");
	is_int(add("{\"name\":\"Cy\"}"), MESSAGE_ADDED, "digest row 3");
	is_int(M.nrows, 3, "three rows");
	is_str(buf_cstr(&M.text), "- Ada\n- Bob\n- Cy",
	    "rows joined by newlines");
	is_str(build("mms-b-1"), "{\"channel_id\":\"" CH1 "\",\"message\":"
	    "\"**3 new leads** \\\"x\\\"\\n- Ada\\n- Bob\\n- Cy\","
	    "\"pending_post_id\":\"mms-b-1\",\"props\":{\"mmsyncd_row\":"
	    "\"mms-b-1\"}}", "digest body: header with the count, rows");
	text = body_text("message");
	is_str(text, "**3 new leads** \"x\"\n- Ada\n- Bob\n- Cy",
	    "the message parses back");
	free(text);

	/* Closing at digest_rows. */
	tc = target(HOOK "    template: \"{{n}}\"\n    digest_rows: 2\n");
	begin(tc);
	ok(add("{\"n\":1}") == MESSAGE_ADDED && add("{\"n\":2}") ==
	    MESSAGE_ADDED, "digest_rows 2: two rows added");
	is_int(add("{\"n\":3}"), MESSAGE_FULL, "the third is FULL");
	is_str(build("r"), "{\"text\":\"1\\n2\"}",
	    "webhook digest without a header");
	message_reset(&M);
	is_int(add("{\"n\":3}"), MESSAGE_ADDED, "the third starts anew");
	is_str(build("r"), "{\"text\":\"3\"}", "one row in it");

	/* A header over a digest of one row still counts. */
	tc = target(HOOK "    template: \"{{n}}\"\n    digest_rows: 3\n"
	    "    digest_header: \"{{count}} rows:\"\n");
	begin(tc);
	is_int(add("{\"n\":7}"), MESSAGE_ADDED, "one row");
	is_str(build("r"), "{\"text\":\"1 rows:\\n7\"}",
	    "header with count 1");

	/* A huge header is escaped in place in the body. */
	{
		struct buf	 h;
		char		*hdr, *want;
		int		 i;

		buf_init(&h);
		buf_addstr(&h, HOOK "    template: \"{{n}}\"\n"
		    "    digest_rows: 2\n    digest_header: \"");
		for (i = 0; i < 3000; i++)
			buf_addstr(&h, "\\\"\\t");
		buf_addstr(&h, "{{count}}\"\n");
		tc = target(h.data);
		begin(tc);
		is_int(add("{\"n\":1}"), MESSAGE_ADDED, "big header: row");
		is_int(add("{\"n\":2}"), MESSAGE_ADDED, "big header: row 2");
		build("r");
		text = body_text("text");
		hdr = xmalloc(6002);
		for (i = 0; i < 3000; i++)
			memcpy(hdr + 2 * i, "\"\t", 2);
		hdr[6000] = '\0';
		xasprintf(&want, "%s2\n1\n2", hdr);
		is_str(text, want, "big header escaped and parsed back");
		free(want);
		free(hdr);
		free(text);
		buf_free(&h);
	}
}

static void
test_lengths(void)
{
	const struct target_conf *tc;
	char			*text;

	/* A row alone: exactly the limit, one more. */
	tc = target(HOOK "    template: \"{{t}}\"\n");
	begin(tc);
	is_int(add_of("t", "a", 16383), MESSAGE_ADDED,
	    "16383 characters: added");
	begin(tc);
	is_int(add_of("t", "a", 16384), MESSAGE_BAD_ROW,
	    "16384 characters: bad row");
	is_str(reason, "message too long: 16384 characters (Mattermost "
	    "allows 16383)", "the engine's wording");
	is_int(M.nrows, 0, "nothing added");
	is_int(M.text.len, 0, "text cut back");

	/* UTF-8: code points, not bytes. */
	begin(tc);
	is_int(add_of("t", "\xc3\xa9", 16383), MESSAGE_ADDED,
	    "16383 two-byte characters: added");
	is_int(M.runes, 16383, "counted as 16383");
	begin(tc);
	is_int(add_of("t", "\xe2\x82\xac", 16384), MESSAGE_BAD_ROW,
	    "16384 three-byte characters: bad row");
	is_str(reason, "message too long: 16384 characters (Mattermost "
	    "allows 16383)", "counted in characters");
	begin(tc);
	is_int(add_of("t", "\xf0\x9f\x98\x80", 16383), MESSAGE_ADDED,
	    "16383 four-byte characters: added");
	begin(tc);
	is_int(add_of("t", "\\ud83d\\ude00", 16383), MESSAGE_ADDED,
	    "16383 escaped surrogate pairs: one character each, added");
	begin(tc);
	is_int(add_of("t", "\\ud83d\\ude00", 16384), MESSAGE_BAD_ROW,
	    "16384 escaped surrogate pairs: bad row");

	/* A digest closes early at the limit; rows of about 6000. */
	tc = target(TOKEN "    channel: " CH1 "\n    template: \"{{t}}\"\n"
	    "    digest_rows: 10\n");
	begin(tc);
	is_int(add_of("t", "x", 6000), MESSAGE_ADDED, "6000: added");
	is_int(add_of("t", "y", 6000), MESSAGE_ADDED, "12001: added");
	is_int(add_of("t", "z", 6000), MESSAGE_FULL,
	    "18002 would be over: FULL");
	ok(M.nrows == 2 && M.runes == 12001 && M.text.len == 12001,
	    "FULL changed nothing (2 rows, 12001)");
	build("r");
	text = body_text("message");
	ok(text != NULL && strlen(text) == 12001 && text[6000] == '\n' &&
	    text[6001] == 'y' && text[12000] == 'y',
	    "the digest's text: two rows and a newline");
	free(text);
	message_reset(&M);
	is_int(add_of("t", "z", 6000), MESSAGE_ADDED,
	    "the row starts the next digest");

	/* With a header: the exact bound, count included. */
	tc = target(TOKEN "    channel: " CH1 "\n    template: \"{{t}}\"\n"
	    "    digest_rows: 10\n    digest_header: \"H{{count}}\"\n");
	begin(tc);
	is_int(add_of("t", "a", 8000), MESSAGE_ADDED, "8000 + header");
	/* "H2" + "\n" + 8000 + "\n" + 8379 = 16383 */
	is_int(add_of("t", "b", 8379), MESSAGE_ADDED,
	    "exactly 16383 with the header for 2: added");
	build("r");
	text = body_text("message");
	ok(text != NULL && utf8_runes(text, strlen(text)) == 16383 &&
	    strncmp(text, "H2\naaa", 6) == 0, "the message is 16383 "
	    "characters, header first");
	free(text);
	begin(tc);
	is_int(add_of("t", "a", 8000), MESSAGE_ADDED, "8000 + header");
	is_int(add_of("t", "b", 8380), MESSAGE_FULL,
	    "16384 with the header: FULL");
	is_int(M.nrows, 1, "one row stays");
	begin(tc);
	is_int(add_of("t", "a", 16380), MESSAGE_ADDED,
	    "alone with the header (H1 + newline): 16383, added");
	begin(tc);
	is_int(add_of("t", "a", 16381), MESSAGE_BAD_ROW,
	    "alone with the header: 16384, bad row");
	is_str(reason, "message too long: 16384 characters (Mattermost "
	    "allows 16383)", "the header counts in the reason");

	/* The count's digits count: 9 rows -> "H9", 10 rows -> "H10". */
	tc = target(HOOK "    template: \"{{t}}\"\n    digest_rows: 20\n"
	    "    digest_header: \"H{{count}}\"\n");
	begin(tc);
	{
		int	 i;
		bool	 all = true;

		for (i = 0; i < 9; i++)
			all = all && add_of("t", "a", 100) == MESSAGE_ADDED;
		ok(all, "nine rows of 100");
		/* Now 3 + 9 * 100 + 8 = 911; a tenth row of N gives
		 * 4 + 908 + 1 + N. */
		is_int(add_of("t", "b", 16383 - 913 + 1), MESSAGE_FULL,
		    "the tenth row would be 1 over with \"H10\": FULL");
		is_int(add_of("t", "b", 16383 - 913), MESSAGE_ADDED,
		    "exactly 16383 with \"H10\": added");
		build("r");
		text = body_text("text");
		ok(text != NULL && utf8_runes(text, strlen(text)) == 16383 &&
		    strncmp(text, "H10\n", 4) == 0, "10 rows, 16383");
		free(text);
	}

	/* A bad row mid-digest leaves the digest as it was. */
	begin(tc);
	is_int(add_of("t", "a", 10), MESSAGE_ADDED, "a small row");
	is_int(add_of("t", "b", 16381), MESSAGE_BAD_ROW,
	    "a row too long even alone: bad row, not FULL");
	ok(M.nrows == 1 && M.runes == 10 && M.text.len == 10,
	    "the digest is unchanged");
}

static void
test_attachments(void)
{
	const struct target_conf *tc;
	char			*text;

	tc = target(TOKEN "    channel: " CH1 "\n"
	    "    template: \"Order {{id}}\"\n"
	    "    attachment:\n"
	    "      fallback: \"Order {{id}} by {{who}}\"\n"
	    "      color: \"{{color}}\"\n"
	    "      pretext: \"pre \\\"{{id}}\\\"\"\n"
	    "      title: \"{{who}}\"\n"
	    "      title_link: \"https://x/{{id}}\"\n"
	    "      text: \"line1\\n{{note}}\"\n"
	    "      footer: \"mmsyncd\"\n"
	    "      fields:\n"
	    "        - title: Total\n"
	    "          value: \"{{total}}\"\n"
	    "          short: true\n"
	    "        - title: \"Tags\"\n"
	    "          value: \"{{tags}}\"\n"
	    "        - value: \"only {{id}}\"\n"
	    "          short: false\n");
	ok(tc->attachment != NULL && tc->attachment->nfields == 3,
	    "attachment loaded with three fields");
	begin(tc);
	is_int(add("{\"id\":7,\"who\":\"Ada \\\\ L\",\"color\":\"#ff0000\","
	    "\"note\":\"a\\u0001b\",\"total\":1.50,\"tags\":[\"x\",\"y\"]}"),
	    MESSAGE_ADDED, "row with an attachment added");
	is_str(build("mms-x-1"), "{\"channel_id\":\"" CH1 "\",\"message\":"
	    "\"Order 7\",\"pending_post_id\":\"mms-x-1\",\"props\":"
	    "{\"mmsyncd_row\":\"mms-x-1\",\"attachments\":[{"
	    "\"fallback\":\"Order 7 by Ada \\\\ L\","
	    "\"color\":\"#ff0000\","
	    "\"pretext\":\"pre \\\"7\\\"\","
	    "\"title\":\"Ada \\\\ L\","
	    "\"title_link\":\"https://x/7\","
	    "\"text\":\"line1\\na\\u0001b\","
	    "\"footer\":\"mmsyncd\","
	    "\"fields\":["
	    "{\"title\":\"Total\",\"value\":\"1.50\",\"short\":true},"
	    "{\"title\":\"Tags\",\"value\":\"[\\\"x\\\",\\\"y\\\"]\","
	    "\"short\":false},"
	    "{\"value\":\"only 7\",\"short\":false}]}]}}",
	    "REST: props.attachments, every key rendered and escaped");
	/* text, fallback, color, pretext, title, title_link, text, footer,
	 * and the fields' titles and values. */
	is_int(M.runes, 7 + 18 + 7 + 7 + 7 + 11 + 9 + 7 + 5 + 4 + 4 + 9 + 6,
	    "runes: text and every attachment string");

	/* Webhook, attachment only, digest of two. */
	tc = target(HOOK "    username: bot\n    digest_rows: 2\n"
	    "    attachment:\n      title: \"{{t}}\"\n"
	    "      fields:\n        - title: n\n          value: \"{{n}}\"\n");
	ok(tc->template == NULL && tc->template_src == NULL,
	    "no template with an attachment");
	begin(tc);
	is_int(add("{\"t\":\"one\",\"n\":1}"), MESSAGE_ADDED,
	    "attachment-only row 1");
	is_int(add("{\"t\":\"two\",\"n\":2}"), MESSAGE_ADDED,
	    "attachment-only row 2");
	is_int(M.runes, 3 + 1 + 1 + 3 + 1 + 1, "runes: attachment strings "
	    "only, no newline between rows");
	is_str(build("r"), "{\"text\":\"\",\"username\":\"bot\","
	    "\"attachments\":[{\"title\":\"one\",\"fields\":[{\"title\":"
	    "\"n\",\"value\":\"1\",\"short\":false}]},{\"title\":\"two\","
	    "\"fields\":[{\"title\":\"n\",\"value\":\"2\",\"short\":"
	    "false}]}]}", "webhook: attachments joined, empty text");
	is_int(add("{\"t\":\"three\"}"), MESSAGE_FULL, "third: FULL");
	message_reset(&M);
	ok(M.attachments.len == 0 && M.text.len == 0 && M.runes == 0,
	    "reset empties the attachments");

	/* Attachment only, with a header: the header is the message. */
	tc = target(TOKEN "    channel: " CH1 "\n    digest_rows: 3\n"
	    "    digest_header: \"{{count}} cards\"\n"
	    "    attachment:\n      text: \"{{t}}\"\n");
	begin(tc);
	ok(add("{\"t\":\"a\"}") == MESSAGE_ADDED &&
	    add("{\"t\":\"b\"}") == MESSAGE_ADDED, "two cards");
	is_str(build("r"), "{\"channel_id\":\"" CH1 "\",\"message\":"
	    "\"2 cards\",\"pending_post_id\":\"r\",\"props\":{\"mmsyncd_row\":"
	    "\"r\",\"attachments\":[{\"text\":\"a\"},{\"text\":\"b\"}]}}",
	    "header alone as the message, no newline");

	/* The limit applies to the text and the attachment together. */
	tc = target(HOOK "    template: \"{{t}}\"\n"
	    "    attachment:\n      title: \"{{u}}\"\n");
	begin(tc);
	{
		char	*t = row_of("t", "a", 16000), *json;

		t[strlen(t) - 1] = '\0';		/* drop the '}' */
		xasprintf(&json, "%s,\"u\":\"%s\"}", t,
		    "\xc3\xa9\xc3\xa9\xc3\xa9");
		is_int(add(json), MESSAGE_ADDED, "16000 + 3 in the title");
		free(json);
		begin(tc);
		text = row_of("u", "\xc3\xa9", 383);
		text[0] = ',';
		xasprintf(&json, "%s%s", t, text);
		is_int(add(json), MESSAGE_ADDED,
		    "16000 text + 383 title: 16383, added");
		free(json);
		free(text);
		begin(tc);
		text = row_of("u", "\xc3\xa9", 384);
		text[0] = ',';
		xasprintf(&json, "%s%s", t, text);
		is_int(add(json), MESSAGE_BAD_ROW,
		    "16000 text + 384 title: bad row");
		is_str(reason, "message too long: 16384 characters "
		    "(Mattermost allows 16383)", "attachment strings count");
		ok(M.attachments.len == 0 && M.text.len == 0,
		    "both buffers cut back");
		free(json);
		free(text);
		free(t);
	}

	/* A digest closes when an attachment would take it over. */
	tc = target(HOOK "    template: \"{{t}}\"\n    digest_rows: 5\n"
	    "    attachment:\n      text: \"{{u}}\"\n");
	begin(tc);
	is_int(add("{\"t\":\"a\",\"u\":\"b\"}"), MESSAGE_ADDED, "small row");
	{
		char	*u = row_of("u", "c", 16381);

		xasprintf(&text, "{\"t\":\"d\",%s", u + 1);
		free(u);
	}
	is_int(add(text), MESSAGE_FULL, "2 + newline + 1 + 16381: over, "
	    "but alone 16382: FULL");
	ok(M.nrows == 1 && strcmp(buf_cstr(&M.attachments),
	    "{\"text\":\"b\"}") == 0, "attachments cut back after FULL");
	free(text);
}

static void
test_many(void)
{
	const struct target_conf *tc;
	char			 id[32];
	int			 i, n = 0, full = 0;
	bool			 good = true;

	/* Many digests through one message: buffers reused. */
	tc = target(TOKEN "    channel: " CH1 "\n    template: \"row {{i}} "
	    "{{s}}\"\n    digest_rows: 50\n    digest_header: \"{{count}}\"\n"
	    "    attachment:\n      title: \"{{i}}\"\n");
	begin(tc);
	for (i = 0; i < 5000; i++) {
		char	*json;

		xasprintf(&json, "{\"i\":%d,\"s\":\"%s\"}", i,
		    i % 7 == 0 ? "\xe2\x82\xac\\\"" : "x");
		switch (add(json)) {
		case MESSAGE_ADDED:
			n++;
			break;
		case MESSAGE_FULL:
			full++;
			snprintf(id, sizeof id, "r%d", i);
			build(id);
			good = good && body.len > 0 && M.nrows == 50;
			message_reset(&M);
			good = good && add(json) == MESSAGE_ADDED;
			n++;
			break;
		case MESSAGE_BAD_ROW:
			good = false;
			break;
		}
		free(json);
	}
	ok(good && n == 5000 && full == 99,
	    "5000 rows: 99 full digests of 50, and one open");
}

int
main(void)
{
	const char	*tmp = getenv("TMPDIR");
	char		 cmd[PATH_MAX + 16];

	snprintf(dir, sizeof dir, "%s/test_message.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	buf_init(&body);

	test_single();
	test_channels();
	test_digest();
	test_lengths();
	test_attachments();
	test_many();

	message_free(&M);
	buf_free(&body);
	config_free(C);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
	return tap_done();
}
