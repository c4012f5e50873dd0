/*
 * message.c: one post, built from one row or (digest_rows > 1) several
 * consecutive rows, and its JSON body.  Pure: no I/O.
 *
 * A row is rendered straight onto the end of the message's buffers (the
 * text, the attachments) and taken back off if it does not fit, so adding
 * a row costs no allocation beyond the buffers growing.
 *
 * Lengths are counted as Mattermost counts them, in code points, over
 * everything a person reads: the digest header, the rows' text and the
 * newlines between them, and every string of the attachments.  The
 * header's {{count}} is the number of rows in the message; each row is
 * checked with the header it would have once added, so the bound of
 * MMS_MAX_MESSAGE_RUNES is exact.
 */
#include <stdlib.h>
#include <string.h>

#include "mmsyncd.h"

/* Longest part of a bad channel quoted in a reason. */
#define CHANNEL_SHOWN	64

/* The value {"count": N}, built in place for the digest header. */
struct count_row {
	struct yajl_val_s	 object, number;
	const char		*keys[1];
	yajl_val		 values[1];
	char			 digits[24];
};

static yajl_val
count_row(struct count_row *c, size_t n)
{
	memset(c, 0, sizeof *c);
	snprintf(c->digits, sizeof c->digits, "%zu", n);
	c->number.type = yajl_t_number;
	c->number.u.number.i = (long long)n;
	c->number.u.number.d = (double)n;
	c->number.u.number.r = c->digits;
	c->number.u.number.flags = YAJL_NUMBER_INT_VALID |
	    YAJL_NUMBER_DOUBLE_VALID;
	c->keys[0] = "count";
	c->values[0] = &c->number;
	c->object.type = yajl_t_object;
	c->object.u.object.keys = c->keys;
	c->object.u.object.values = c->values;
	c->object.u.object.len = 1;
	return &c->object;
}

static bool
has_header(const struct target_conf *tc)
{
	return tc->digest_header != NULL && tc->digest_rows > 1;
}

/*
 * The code points the header adds to a message of N rows: the header
 * and, when there is text, the newline after it.
 */
static size_t
header_runes(struct message *m, size_t n)
{
	const struct target_conf *tc = m->conf;
	struct count_row	 c;

	if (!has_header(tc))
		return 0;
	buf_reset(&m->scratch);
	template_render(tc->digest_header, count_row(&c, n), &m->scratch);
	return utf8_runes(m->scratch.data, m->scratch.len) +
	    (tc->template != NULL ? 1 : 0);
}

/* Cut B back to LEN bytes. */
static void
buf_cut(struct buf *b, size_t len)
{
	b->len = len;
	if (b->data != NULL)
		b->data[len] = '\0';
}

/* Append "KEY": and the rendering of T as a JSON string; its runes. */
static size_t
add_rendered(struct message *m, struct buf *out, const char *key,
    const struct template *t, yajl_val row)
{
	buf_addc(out, '"');
	buf_addstr(out, key);
	buf_add(out, "\":", 2);
	buf_reset(&m->scratch);
	template_render(t, row, &m->scratch);
	buf_add_json_string(out, m->scratch.data, m->scratch.len);
	return utf8_runes(m->scratch.data, m->scratch.len);
}

/* Append the attachment for ROW to m->attachments; its runes. */
static size_t
add_attachment(struct message *m, const struct attachment_conf *a,
    yajl_val row)
{
	const struct {
		const char		*key;
		const struct template	*t;
	} keys[] = {
		{ "fallback", a->fallback }, { "color", a->color },
		{ "pretext", a->pretext }, { "title", a->title },
		{ "title_link", a->title_link }, { "text", a->text },
		{ "footer", a->footer },
	};
	const struct attachment_field *f;
	struct buf	*out = &m->attachments;
	size_t		 i, runes = 0;
	bool		 first = true;

	if (out->len > 0)
		buf_addc(out, ',');
	buf_addc(out, '{');
	for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		if (keys[i].t == NULL)
			continue;
		if (!first)
			buf_addc(out, ',');
		first = false;
		runes += add_rendered(m, out, keys[i].key, keys[i].t, row);
	}
	if (a->nfields > 0) {
		if (!first)
			buf_addc(out, ',');
		buf_addstr(out, "\"fields\":[");
		for (i = 0; i < a->nfields; i++) {
			f = &a->fields[i];
			if (i > 0)
				buf_addc(out, ',');
			buf_addc(out, '{');
			if (f->title != NULL) {
				runes += add_rendered(m, out, "title",
				    f->title, row);
				buf_addc(out, ',');
			}
			if (f->value != NULL) {
				runes += add_rendered(m, out, "value",
				    f->value, row);
				buf_addc(out, ',');
			}
			buf_addstr(out, f->is_short ? "\"short\":true}" :
			    "\"short\":false}");
		}
		buf_addc(out, ']');
	}
	buf_addc(out, '}');
	return runes;
}

static bool
is_channel_id(const char *s, size_t len)
{
	size_t	i;

	if (len != MMS_ID_LEN)
		return false;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

/* The reason for a channel that is not an id: at most CHANNEL_SHOWN
 * bytes of it, cut at a character, control characters as '?'. */
static void
bad_channel(const char *s, size_t len, char *reason, size_t reasonsz)
{
	char	shown[CHANNEL_SHOWN + 4];
	size_t	i, n = len;

	if (n > CHANNEL_SHOWN) {
		n = CHANNEL_SHOWN;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	for (i = 0; i < n; i++)
		shown[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ?
		    '?' : s[i];
	strcpy(shown + n, n < len ? "..." : "");
	snprintf(reason, reasonsz, "channel \"%s\" is not a %d-character "
	    "channel id", shown, MMS_ID_LEN);
	utf8_scrub(reason);
}

static void
too_long(size_t runes, char *reason, size_t reasonsz)
{
	snprintf(reason, reasonsz, "message too long: %zu characters "
	    "(Mattermost allows %d)", runes, MMS_MAX_MESSAGE_RUNES);
}

void
message_init(struct message *m, const struct target_conf *tc)
{
	memset(m, 0, sizeof *m);
	m->conf = tc;
	buf_init(&m->text);
	buf_init(&m->attachments);
	buf_init(&m->scratch);
}

void
message_reset(struct message *m)
{
	m->nrows = 0;
	m->runes = 0;
	buf_reset(&m->text);
	buf_reset(&m->attachments);
	buf_reset(&m->scratch);
	m->channel[0] = '\0';
}

void
message_free(struct message *m)
{
	buf_free(&m->text);
	buf_free(&m->attachments);
	buf_free(&m->scratch);
	m->nrows = 0;
	m->runes = 0;
	m->channel[0] = '\0';
}

enum message_add
message_add(struct message *m, yajl_val row, char *reason, size_t reasonsz)
{
	const struct target_conf *tc = m->conf;
	char		 channel[MMS_ID_LEN + 1] = "";
	size_t		 text_len, att_len, sep, runes, hdr, alone;

	/* The channel first: it may close the message. */
	if (tc->auth == AUTH_TOKEN) {
		if (tc->channel_template != NULL) {
			buf_reset(&m->scratch);
			template_render(tc->channel_template, row,
			    &m->scratch);
			if (!is_channel_id(m->scratch.data, m->scratch.len)) {
				bad_channel(m->scratch.data, m->scratch.len,
				    reason, reasonsz);
				return MESSAGE_BAD_ROW;
			}
			memcpy(channel, m->scratch.data, MMS_ID_LEN + 1);
		} else if (tc->channel != NULL)
			snprintf(channel, sizeof channel, "%s", tc->channel);
	}
	if (m->nrows > 0 && (m->nrows >= tc->digest_rows ||
	    strcmp(channel, m->channel) != 0))
		return MESSAGE_FULL;

	/* Render onto the ends of the buffers; cut back if it fails. */
	text_len = m->text.len;
	att_len = m->attachments.len;
	sep = 0;
	runes = 0;
	if (tc->template != NULL) {
		if (m->nrows > 0) {
			buf_addc(&m->text, '\n');
			sep = 1;
		}
		template_render(tc->template, row, &m->text);
		runes = utf8_runes(m->text.data + text_len + sep,
		    m->text.len - text_len - sep);
	}
	if (tc->attachment != NULL)
		runes += add_attachment(m, tc->attachment, row);

	hdr = header_runes(m, m->nrows + 1);
	if (hdr + m->runes + sep + runes > MMS_MAX_MESSAGE_RUNES) {
		buf_cut(&m->text, text_len);
		buf_cut(&m->attachments, att_len);
		/* The header grows with the count: alone, it is shortest. */
		alone = (m->nrows > 0 ? header_runes(m, 1) : hdr) + runes;
		if (m->nrows > 0 && alone <= MMS_MAX_MESSAGE_RUNES)
			return MESSAGE_FULL;
		too_long(alone, reason, reasonsz);
		return MESSAGE_BAD_ROW;
	}

	m->nrows++;
	m->runes += sep + runes;
	memcpy(m->channel, channel, sizeof m->channel);
	return MESSAGE_ADDED;
}

/*
 * Append the header for N rows as JSON string content (no quotes) to
 * OUT: rendered onto the end of OUT, escaped after it, moved back.
 */
static void
add_header_escaped(const struct target_conf *tc, size_t n, struct buf *out)
{
	struct count_row	 c;
	size_t			 start = out->len, len, esc;

	template_render(tc->digest_header, count_row(&c, n), out);
	len = out->len - start;
	/* Room for the worst escaping (6 bytes a byte), so that the source
	 * does not move while it is read. */
	buf_reserve(out, 6 * len + 2);
	buf_add_json_string(out, out->data + start, len);
	esc = out->len - start - len - 2;	/* without the quotes */
	memmove(out->data + start, out->data + start + len + 1, esc);
	buf_cut(out, start + esc);
}

/* Append the "message"/"text" value: header, newline, text. */
static void
add_message_text(const struct message *m, struct buf *out)
{
	const struct target_conf *tc = m->conf;
	size_t			 start;

	if (!has_header(tc)) {
		buf_add_json_string(out, buf_cstr(&m->text), m->text.len);
		return;
	}
	buf_addc(out, '"');
	add_header_escaped(tc, m->nrows, out);
	if (tc->template != NULL) {
		buf_add(out, "\\n", 2);
		start = out->len;
		buf_add_json_string(out, buf_cstr(&m->text), m->text.len);
		/* Drop the opening quote; the closing one ends the value. */
		memmove(out->data + start, out->data + start + 1,
		    out->len - start - 1);
		buf_cut(out, out->len - 1);
	} else
		buf_addc(out, '"');
}

static void
add_attachments(const struct message *m, struct buf *out)
{
	buf_addstr(out, "\"attachments\":[");
	buf_add(out, m->attachments.data, m->attachments.len);
	buf_addc(out, ']');
}

void
message_body(const struct message *m, const char *row_id, struct buf *out)
{
	const struct target_conf *tc = m->conf;

	buf_reset(out);
	if (tc->auth == AUTH_TOKEN) {
		buf_addstr(out, "{\"channel_id\":");
		buf_add_json_string(out, m->channel, strlen(m->channel));
		buf_addstr(out, ",\"message\":");
		add_message_text(m, out);
		buf_addstr(out, ",\"pending_post_id\":");
		buf_add_json_string(out, row_id, strlen(row_id));
		buf_addstr(out, ",\"props\":{\"mmsyncd_row\":");
		buf_add_json_string(out, row_id, strlen(row_id));
		if (m->attachments.len > 0) {
			buf_addc(out, ',');
			add_attachments(m, out);
		}
		buf_add(out, "}}", 2);
		return;
	}
	buf_addstr(out, "{\"text\":");
	add_message_text(m, out);
	if (tc->channel != NULL) {
		buf_addstr(out, ",\"channel\":");
		buf_add_json_string(out, tc->channel, strlen(tc->channel));
	}
	if (tc->username != NULL) {
		buf_addstr(out, ",\"username\":");
		buf_add_json_string(out, tc->username, strlen(tc->username));
	}
	if (tc->icon_url != NULL) {
		buf_addstr(out, ",\"icon_url\":");
		buf_add_json_string(out, tc->icon_url, strlen(tc->icon_url));
	}
	if (m->attachments.len > 0) {
		buf_addc(out, ',');
		add_attachments(m, out);
	}
	buf_addc(out, '}');
}
