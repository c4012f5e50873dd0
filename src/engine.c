/*
 * engine.c: when each target sends what.
 *
 * Every target is a small state machine with one timer.  Pacing, a 429's
 * Retry-After, a backoff after a 5xx and the wait of a blocked target are
 * all the same thing: "not before next_send".  One request at most is in
 * flight per target, and a target never waits for another.
 *
 * What goes out is a unit: one row, or up to digest_rows consecutive
 * rows in one message.  A unit's outcome is made durable (spool_commit or
 * spool_set_aside_rows) before the next unit is read: after a crash at
 * most the unit that was in flight goes out again, and for REST targets
 * not even that: a resumed batch first asks the server whether the post
 * carrying the unit's id (props.mmsyncd_row) already exists.  When the
 * disk refuses, the outcome stays pending and is retried; nothing goes
 * out meanwhile.
 */
#include <sys/inotify.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "mmsyncd.h"

/* Rows handled per turn before letting other events in. */
#define TURN_BUDGET		256
#define ROW_ID_MAX		64
/* The lookup after a crash looks this far before the last progress
 * write, for clocks that differ between us and the server. */
#define LOOKUP_MARGIN_MS	(120 * 1000)
/* ...and keeps at most this much of the answer; more means "unknown". */
#define LOOKUP_MAX_BODY		(16u * 1024 * 1024)

enum pending {
	PENDING_NONE,
	PENDING_DELIVERED,	/* commit the position after the unit */
	PENDING_SET_ASIDE,	/* write the unit's rows to failed, commit */
};

struct target {
	struct engine		*engine;
	char			*name;
	const struct target_conf *conf;
	struct spool		*spool;
	int			 wd;		/* inotify watch, or -1 */

	struct batch		*batch;
	struct batch_reader	*reader;

	/* The unit in hand: rows read, rendered, maybe sent. */
	bool			 have_row;
	struct batch_item	*items;		/* values are not kept */
	size_t			 nitems;
	size_t			 capitems;
	struct batch_pos	 after;		/* after the unit's last row */
	char			 row_id[ROW_ID_MAX];
	struct message		 message;
	struct buf		 body;
	/* A row read that did not fit the unit: the next unit starts with
	 * it (its value stays valid: the reader has not moved on). */
	bool			 have_carry;
	struct batch_item	 carry;
	struct batch_pos	 carry_after;
	/* Resumed after a stop: ask the server before sending again. */
	bool			 verify;
	uint64_t		 verify_since;	/* wall ms */

	enum pending		 pending;
	struct outcome		 why;		/* for PENDING_SET_ASIDE */

	enum target_state	 state;
	bool			 paused;
	bool			 blocked;
	bool			 storage_wait;	/* the disk said no: wait */
	unsigned		 storage_failures;
	uint64_t		 next_send;	/* monotonic ms: not before */
	uint64_t		 last_start;
	bool			 started;	/* last_start is set */
	unsigned		 failures;	/* consecutive transient ones */
	struct event		*timer;
	struct http_request	*inflight;

	uint64_t		 sent, failed, retries, rate_limited;
	uint64_t		 last_success_wall;
	char			*last_error;
};

struct engine {
	struct event_base	*base;
	/* The spool settings of the start: they change only at a restart,
	 * so targets added by a reload live beside the others. */
	const struct config	*spool_config;
	struct http		*http;
	struct target		**targets;
	size_t			 ntargets;

	int			 inotify_fd;
	struct event		*inotify_ev;

	bool			 stopping;
	struct event		*stop_timer;
	void			(*stop_done)(void *);
	void			*stop_arg;
};

static void	target_run(struct target *);
static void	target_schedule(struct target *, uint64_t at);
static void	engine_check_stopped(struct engine *);

const char *
engine_state_name(enum target_state s)
{
	static const char *const names[] = {
		[TARGET_IDLE] = "idle", [TARGET_SENDING] = "sending",
		[TARGET_WAITING] = "waiting",
		[TARGET_RATE_LIMITED] = "rate_limited",
		[TARGET_BACKOFF] = "backoff", [TARGET_BLOCKED] = "blocked",
		[TARGET_PAUSED] = "paused",
	};

	return names[s];
}

static void MMS_PRINTF(2, 3)
set_error(struct target *t, const char *fmt, ...)
{
	va_list	ap;

	free(t->last_error);
	va_start(ap, fmt);
	xvasprintf(&t->last_error, fmt, ap);
	va_end(ap);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	target_run(arg);
}

/* Run the target at monotonic time AT (now if in the past). */
static void
target_schedule(struct target *t, uint64_t at)
{
	uint64_t	now = now_ms(), d = at > now ? at - now : 0;
	struct timeval	tv = { (time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000 };

	evtimer_add(t->timer, &tv);
}

static void
close_reader(struct target *t)
{
	batch_close(t->reader);
	t->reader = NULL;
	t->have_row = false;
	t->have_carry = false;
}

/* Wait before touching the disk again, backing off like for a 5xx. */
static void
wait_for_disk(struct target *t)
{
	t->state = TARGET_BACKOFF;
	t->next_send = now_ms() + backoff_delay(++t->storage_failures,
	    t->conf->backoff_min_ms, t->conf->backoff_max_ms);
	t->storage_wait = true;
}

/* The disk refused: log it, keep the outcome, try again a bit later. */
static void
storage_trouble(struct target *t, const char *what)
{
	set_error(t, "%s: %s", what, strerror(errno));
	log_warnx("%s: %s: %s (retrying)", t->name, what, strerror(errno));
	wait_for_disk(t);
}

static int
commit_pending(struct target *t)
{
	struct set_aside	why;

	switch (t->pending) {
	case PENDING_NONE:
		return 0;
	case PENDING_DELIVERED:
		if (spool_commit(t->spool, t->batch, &t->after) == -1) {
			storage_trouble(t, "cannot save progress");
			return -1;
		}
		break;
	case PENDING_SET_ASIDE:
		why.status = t->why.status;
		why.error_id = t->why.error_id;
		why.reason = t->why.reason;
		if (spool_set_aside_rows(t->spool, t->batch, t->items,
		    t->nitems, &why, &t->after) == -1) {
			storage_trouble(t, "cannot set a row aside");
			return -1;
		}
		t->failed += t->nitems;
		log_warnx("%s: %s row %" PRIu64 " (line %" PRIu64 ")%s set "
		    "aside: %s", t->name, t->batch->name, t->items[0].row,
		    t->items[0].line, t->nitems > 1 ? " and the rest of its "
		    "digest" : "", t->why.reason);
		break;
	}
	t->pending = PENDING_NONE;
	t->have_row = false;
	t->storage_failures = 0;
	return 0;
}

/* Set the unit in hand aside for REASON (no HTTP status). */
static void
reject_unit(struct target *t, const char *reason)
{
	memset(&t->why, 0, sizeof t->why);
	snprintf(t->why.reason, sizeof t->why.reason, "%s", reason);
	t->pending = PENDING_SET_ASIDE;
	t->have_row = true;
}

static void
unit_push(struct target *t, const struct batch_item *item,
    const struct batch_pos *after)
{
	if (t->nitems == t->capitems) {
		t->capitems = t->capitems ? t->capitems * 2 : 8;
		t->items = xreallocarray(t->items, t->capitems,
		    sizeof *t->items);
	}
	t->items[t->nitems] = *item;
	t->items[t->nitems].value = NULL;
	t->nitems++;
	t->after = *after;
}

/* Keep a row read ahead for the next unit. */
static void
unit_carry(struct target *t, const struct batch_item *item,
    const struct batch_pos *after)
{
	t->carry = *item;
	t->carry_after = *after;
	t->have_carry = true;
}

/* Start on a batch: a .json file is checked whole before any row goes. */
static int
open_batch(struct target *t)
{
	struct batch	*b = t->batch;
	char		 reason[256];
	char		*cause = NULL;
	uint64_t	 rows;

	if (b->format == BATCH_JSON && !b->rows_known) {
		if (batch_validate_json(b->fd, &rows, reason,
		    sizeof reason) == -1) {
			log_warnx("%s: %s set aside: %s", t->name, b->name,
			    reason);
			t->batch = NULL;
			if (spool_set_aside_batch(t->spool, b, &(struct
			    set_aside){ 0, "", reason }, 0) == -1) {
				t->batch = b;
				storage_trouble(t, "cannot set a batch aside");
				return -1;
			}
			t->failed++;	/* b is gone: counted once it is safe */
			return 0;
		}
		b->rows_total = rows;
		b->rows_known = true;
	}
	if ((t->reader = batch_open(b->fd, b->format, &b->pos,
	    &cause)) == NULL) {
		set_error(t, "%s: %s", b->name, cause);
		log_warnx("%s: %s: %s (retrying)", t->name, b->name, cause);
		free(cause);
		wait_for_disk(t);
		return -1;
	}
	return 0;
}

/* The batch could not be read to its end: set it aside whole. */
static int
batch_broken(struct target *t, char *cause)
{
	struct batch	*b = t->batch;
	char		 reason[512];

	snprintf(reason, sizeof reason, "%s (rows 1 to %" PRIu64 " were "
	    "handled)", cause, b->pos.row);
	free(cause);
	close_reader(t);
	log_warnx("%s: %s set aside: %s", t->name, b->name, reason);
	t->batch = NULL;
	if (spool_set_aside_batch(t->spool, b, &(struct set_aside){
	    0, "", reason }, b->pos.line) == -1) {
		t->batch = b;
		storage_trouble(t, "cannot set a batch aside");
		return -1;
	}
	return 2;
}

/*
 * Get the next unit to send into hand: one row, or a digest of several.
 * 1: a unit is ready; 0: nothing to send; 2: progress was made (a bad row
 * set aside, a batch finished), call again; -1: trouble, next_send says
 * when to retry.
 */
static int
next_unit(struct target *t)
{
	struct batch_item	 item;
	struct batch_pos	 after;
	enum message_add	 added;
	char			 reason[256], *cause = NULL;
	int			 r;

	if (t->batch == NULL) {
		r = spool_resume(t->spool, &t->batch, &cause);
		if (r == 1) {
			/* Whether its next unit went out is not known. */
			t->verify = t->conf->auth == AUTH_TOKEN;
			t->verify_since = t->batch->written_at;
		} else if (r == 0)
			r = spool_take(t->spool, &t->batch, &cause);
		if (r == -1) {
			set_error(t, "%s", cause);
			log_warnx("%s: %s (retrying)", t->name, cause);
			free(cause);
			wait_for_disk(t);
			return -1;
		}
		if (r == 0)
			return 0;
		return open_batch(t) == -1 ? -1 : 2;
	}
	if (t->reader == NULL)
		return open_batch(t) == -1 ? -1 : 2;

	t->nitems = 0;
	message_reset(&t->message);
	t->message.conf = t->conf;
	for (;;) {
		if (t->have_carry) {
			item = t->carry;
			after = t->carry_after;
			t->have_carry = false;
		} else {
			r = batch_next(t->reader, &item, &cause);
			if (r == -1 && t->nitems == 0)
				return batch_broken(t, cause);
			if (r == -1) {
				/* Send what was read; the error comes back. */
				free(cause);
				break;
			}
			if (r == 0 && t->nitems > 0)
				break;
			if (r == 0) {
				close_reader(t);
				if (spool_finish(t->spool, t->batch) == -1) {
					storage_trouble(t, "cannot finish a "
					    "batch");
					return -1;
				}
				t->batch = NULL;
				return 2;
			}
			batch_position(t->reader, &after);
		}
		if (item.kind == BATCH_BAD_ROW) {
			if (t->nitems > 0) {
				unit_carry(t, &item, &after);
				break;
			}
			unit_push(t, &item, &after);
			reject_unit(t, item.reason);
			return 2;
		}
		added = message_add(&t->message, item.value, reason,
		    sizeof reason);
		if (added != MESSAGE_ADDED && t->nitems > 0) {
			unit_carry(t, &item, &after);
			break;
		}
		unit_push(t, &item, &after);
		if (added != MESSAGE_ADDED) {
			reject_unit(t, reason);
			return 2;
		}
		if (t->nitems >= t->conf->digest_rows)
			break;		/* full: no need to read ahead */
	}

	/* Stable across resends and restarts, unique across batches. */
	if (t->nitems == 1)
		snprintf(t->row_id, sizeof t->row_id, "mms-%s-%" PRIu64,
		    t->batch->id, t->items[0].row);
	else
		snprintf(t->row_id, sizeof t->row_id, "mms-%s-%" PRIu64
		    "+%zu", t->batch->id, t->items[0].row, t->nitems);
	message_body(&t->message, t->row_id, &t->body);
	t->have_row = true;
	return 1;
}

static void
on_response(void *arg, const struct response *resp)
{
	struct target	*t = arg;
	struct outcome	 o;
	uint64_t	 now = now_ms(), wait;

	t->inflight = NULL;
	/* Pacing counts from when the request really went out. */
	if (resp->sent_ms > t->last_start)
		t->last_start = resp->sent_ms;
	outcome_classify(resp, t->conf->auth, wall_ms(), &o);
	/* Whatever happened, the next start keeps the pace. */
	t->next_send = pace_next_start(t->last_start, t->conf->interval_ms,
	    now);

	switch (o.verdict) {
	case VERDICT_DELIVERED:
		t->sent += t->nitems;
		t->failures = 0;
		t->last_success_wall = wall_ms();
		if (t->blocked) {
			log_info("%s: delivering again", t->name);
			t->blocked = false;
		}
		t->pending = PENDING_DELIVERED;
		if (o.has_wait) {
			log_info("%s: %s", t->name, o.reason);
			if (now + o.wait_ms > t->next_send)
				t->next_send = now + o.wait_ms;
		}
		log_debug("%s: %s row %" PRIu64 "%s delivered", t->name,
		    t->batch->name, t->items[0].row, t->nitems > 1 ?
		    " and the rest of its digest" : "");
		break;
	case VERDICT_SET_ASIDE:
		t->failures = 0;
		t->blocked = false;
		t->why = o;
		t->pending = PENDING_SET_ASIDE;
		set_error(t, "%s", o.reason);
		break;
	case VERDICT_RATE_LIMITED:
		t->rate_limited++;
		t->retries++;
		/* "Retry now" (0, a date past) repeated would spin: back off
		 * then, as for a 429 that says nothing. */
		wait = o.has_wait && o.wait_ms > 0 ? o.wait_ms :
		    backoff_delay(++t->failures, t->conf->backoff_min_ms,
		    t->conf->backoff_max_ms);
		if (now + wait > t->next_send)
			t->next_send = now + wait;
		t->state = TARGET_RATE_LIMITED;
		set_error(t, "%s", o.reason);
		log_info("%s: %s; waiting %" PRIu64 " ms", t->name, o.reason,
		    wait);
		break;
	case VERDICT_BACKOFF:
		t->retries++;
		wait = backoff_delay(++t->failures, t->conf->backoff_min_ms,
		    t->conf->backoff_max_ms);
		/* A 503 may say how long: never sooner than that. */
		if (o.has_wait && o.wait_ms > wait)
			wait = o.wait_ms;
		if (now + wait > t->next_send)
			t->next_send = now + wait;
		t->state = TARGET_BACKOFF;
		set_error(t, "%s", o.reason);
		log_warnx("%s: %s; resending row %" PRIu64 " in %" PRIu64
		    " ms", t->name, o.reason, t->items[0].row, wait);
		break;
	case VERDICT_BLOCK:
		if (!t->blocked || t->last_error == NULL ||
		    strcmp(t->last_error, o.reason) != 0)
			log_error("%s: blocked: %s", t->name, o.reason);
		t->blocked = true;
		t->state = TARGET_BLOCKED;
		t->next_send = now + t->conf->blocked_retry_ms;
		set_error(t, "%s", o.reason);
		break;
	}
	target_run(t);
	if (t->engine->stopping)
		engine_check_stopped(t->engine);
}

/* Does a PostList answer hold a post carrying ROW_ID?  1, 0, or -1 when
 * the answer cannot be read. */
static int
lookup_finds(const struct response *resp, const char *row_id)
{
	static const char	*posts_path[] = { "posts", NULL };
	static const char	*row_path[] = { "props", "mmsyncd_row", NULL };
	yajl_val		 root, posts, id;
	size_t			 i;
	int			 found = 0;

	if (resp->status != 200 || resp->body_cut ||
	    (root = yajl_tree_parse(resp->body, NULL, 0)) == NULL)
		return -1;
	posts = yajl_tree_get(root, posts_path, yajl_t_object);
	if (posts == NULL)
		found = -1;
	for (i = 0; posts != NULL && i < posts->u.object.len; i++) {
		id = yajl_tree_get(posts->u.object.values[i], row_path,
		    yajl_t_string);
		if (id != NULL && strcmp(id->u.string, row_id) == 0) {
			found = 1;
			break;
		}
	}
	yajl_tree_free(root);
	return found;
}

static void
on_lookup(void *arg, const struct response *resp)
{
	struct target	*t = arg;

	t->inflight = NULL;
	t->next_send = pace_next_start(t->last_start, t->conf->interval_ms,
	    now_ms());
	switch (lookup_finds(resp, t->row_id)) {
	case 1:
		log_info("%s: %s row %" PRIu64 " was delivered before the "
		    "restart: not sending it again", t->name, t->batch->name,
		    t->items[0].row);
		t->pending = PENDING_DELIVERED;
		break;
	case 0:
		log_info("%s: %s row %" PRIu64 " not found on the server: "
		    "sending it", t->name, t->batch->name, t->items[0].row);
		break;
	default:
		/* At least once is never given up for exactly once. */
		log_warnx("%s: cannot tell whether %s row %" PRIu64 " was "
		    "delivered (%s%ld): sending it again", t->name,
		    t->batch->name, t->items[0].row, resp->curl_code ?
		    "no answer, status " : "status ", resp->status);
		break;
	}
	target_run(t);
	if (t->engine->stopping)
		engine_check_stopped(t->engine);
}

static void
send_unit(struct target *t)
{
	char	path[256];

	t->last_start = now_ms_ceil();
	t->started = true;
	t->state = TARGET_SENDING;
	if (t->verify) {
		/* After a stop the unit in flight may have been posted:
		 * ask, from a little before the last progress write. */
		t->verify = false;
		snprintf(path, sizeof path, "/api/v4/channels/%s/posts?since="
		    "%" PRIu64, t->message.channel, t->verify_since >
		    LOOKUP_MARGIN_MS ? t->verify_since - LOOKUP_MARGIN_MS : 0);
		t->inflight = http_get(t->engine->http, t->conf, path,
		    LOOKUP_MAX_BODY, on_lookup, t);
		return;
	}
	t->inflight = http_post(t->engine->http, t->conf, t->body.data,
	    t->body.len, on_response, t);
}

/* Do what can be done now; arm the timer for what must wait. */
static void
target_run(struct target *t)
{
	int	budget, r;

	if (t->inflight != NULL)
		return;
	for (budget = TURN_BUDGET; budget > 0; budget--) {
		if (t->storage_wait && now_ms() < t->next_send)
			break;
		t->storage_wait = false;
		if (commit_pending(t) == -1)
			break;
		if (t->engine->stopping)
			return;
		if (t->paused) {
			t->state = TARGET_PAUSED;
			return;
		}
		if (!t->have_row) {
			r = next_unit(t);
			if (r == -1)
				break;
			if (r == 0) {
				t->state = TARGET_IDLE;
				return;
			}
			if (r == 2)
				continue;
		}
		if (now_ms() < t->next_send) {
			if (t->state != TARGET_BACKOFF &&
			    t->state != TARGET_RATE_LIMITED &&
			    t->state != TARGET_BLOCKED)
				t->state = TARGET_WAITING;
			break;
		}
		send_unit(t);
		return;
	}
	if (budget == 0)
		t->next_send = now_ms();	/* yield, then go on */
	target_schedule(t, t->next_send);
}

/* Something new may be waiting: run unless busy or waiting on a timer. */
static void
target_kick(struct target *t)
{
	if (t->inflight == NULL && (t->state == TARGET_IDLE ||
	    t->state == TARGET_WAITING))
		target_schedule(t, t->next_send);
}

/* --------------------------------------------------------------- inotify */

static struct target *
target_by_wd(struct engine *e, int wd)
{
	size_t	i;

	for (i = 0; i < e->ntargets; i++)
		if (e->targets[i]->wd == wd)
			return e->targets[i];
	return NULL;
}

static void
rescan_all(struct engine *e)
{
	size_t	i;

	for (i = 0; i < e->ntargets; i++) {
		spool_rescan(e->targets[i]->spool);
		target_kick(e->targets[i]);
	}
}

static void
on_inotify(evutil_socket_t fd, short what, void *arg)
{
	struct engine			*e = arg;
	char				 buf[64 * 1024]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event	*ev;
	struct target			*t;
	ssize_t				 n;
	char				*p;

	(void)what;
	for (;;) {
		n = read(fd, buf, sizeof buf);
		if (n == -1) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("inotify read");
			return;
		}
		if (n <= 0)
			return;
		for (p = buf; p < buf + n; p += sizeof *ev + ev->len) {
			ev = (const struct inotify_event *)p;
			if (ev->mask & IN_Q_OVERFLOW) {
				log_info("spool events overflowed: rescanning");
				rescan_all(e);
				continue;
			}
			if ((t = target_by_wd(e, ev->wd)) == NULL ||
			    ev->len == 0)
				continue;
			if (ev->mask & (IN_MOVED_TO | IN_CLOSE_WRITE)) {
				spool_queue_add(t->spool, ev->name);
				target_kick(t);
			} else if (ev->mask & (IN_MOVED_FROM | IN_DELETE))
				spool_queue_remove(t->spool, ev->name);
		}
	}
}

/* ---------------------------------------------------------------- targets */

static struct target *
target_new(struct engine *e, const struct target_conf *tc, char **cause)
{
	struct target	*t = xcalloc(1, sizeof *t);

	t->engine = e;
	t->name = xstrdup(tc->name);
	t->conf = tc;
	t->wd = -1;
	message_init(&t->message, tc);
	buf_init(&t->body);
	t->timer = evtimer_new(e->base, on_timer, t);
	if ((t->spool = spool_open(e->spool_config, tc->name, cause)) == NULL) {
		event_free(t->timer);
		free(t->name);
		free(t);
		return NULL;
	}
	t->wd = inotify_add_watch(e->inotify_fd, spool_incoming_dir(t->spool),
	    IN_MOVED_TO | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_DELETE |
	    IN_ONLYDIR);
	if (t->wd == -1)
		log_warn("%s: cannot watch %s; new batches are seen at the "
		    "next rescan only", tc->name,
		    spool_incoming_dir(t->spool));
	/* Watch first, then scan: nothing dropped in between is missed. */
	spool_rescan(t->spool);
	target_schedule(t, 0);
	return t;
}

static void
target_free(struct target *t)
{
	if (t->inflight != NULL)
		http_cancel(t->engine->http, t->inflight);
	if (t->wd != -1)
		inotify_rm_watch(t->engine->inotify_fd, t->wd);
	batch_close(t->reader);
	spool_batch_free(t->batch);
	spool_close(t->spool);
	event_free(t->timer);
	message_free(&t->message);
	buf_free(&t->body);
	free(t->items);
	free(t->last_error);
	free(t->name);
	free(t);
}

struct engine *
engine_new(struct event_base *base, const struct config *cf, char **cause)
{
	struct engine	*e = xcalloc(1, sizeof *e);
	size_t		 i;

	e->base = base;
	e->spool_config = config_copy_spool(cf);
	e->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (e->inotify_fd == -1) {
		xasprintf(cause, "inotify: %s", strerror(errno));
		config_free((struct config *)e->spool_config);
		free(e);
		return NULL;
	}
	e->inotify_ev = event_new(base, e->inotify_fd, EV_READ | EV_PERSIST,
	    on_inotify, e);
	event_add(e->inotify_ev, NULL);
	e->http = http_new(base);
	e->stop_timer = evtimer_new(base, NULL, NULL);
	e->targets = xcalloc(cf->ntargets, sizeof *e->targets);
	for (i = 0; i < cf->ntargets; i++) {
		e->targets[i] = target_new(e, cf->targets[i], cause);
		if (e->targets[i] == NULL) {
			e->ntargets = i;
			engine_free(e);
			return NULL;
		}
		e->ntargets++;
	}
	return e;
}

void
engine_free(struct engine *e)
{
	size_t	i;

	if (e == NULL)
		return;
	for (i = 0; i < e->ntargets; i++)
		target_free(e->targets[i]);
	free(e->targets);
	http_free(e->http);
	event_free(e->inotify_ev);
	event_free(e->stop_timer);
	close(e->inotify_fd);
	config_free((struct config *)e->spool_config);
	free(e);
}

static struct target *
find_target(struct engine *e, const char *name)
{
	size_t	i;

	for (i = 0; i < e->ntargets; i++)
		if (strcmp(e->targets[i]->name, name) == 0)
			return e->targets[i];
	return NULL;
}

int
engine_reconfigure(struct engine *e, const struct config *cf, char **cause)
{
	struct target	**next, *t;
	size_t		  i, j;

	next = xcalloc(cf->ntargets, sizeof *next);
	for (i = 0; i < cf->ntargets; i++) {
		if ((t = find_target(e, cf->targets[i]->name)) != NULL) {
			t->conf = cf->targets[i];
			/* Re-render the row in hand with the new settings. */
			if (t->inflight == NULL && t->pending == PENDING_NONE &&
			    t->have_row)
				close_reader(t);
			if (t->blocked || t->state == TARGET_BACKOFF) {
				/* A reload is the operator saying "try now"
				 * (but a 429's Retry-After still holds). */
				t->next_send = now_ms();
				t->failures = 0;
			}
			if (t->inflight == NULL)
				target_schedule(t, t->next_send);
		} else if ((t = target_new(e, cf->targets[i], cause)) == NULL) {
			/* Undo: the old targets keep the old config. */
			for (j = 0; j < i; j++)
				if (find_target(e, next[j]->name) == NULL)
					target_free(next[j]);
			free(next);
			return -1;
		} else
			log_info("%s: new target", t->name);
		next[i] = t;
	}
	for (i = 0; i < e->ntargets; i++) {
		t = e->targets[i];
		for (j = 0; j < cf->ntargets; j++)
			if (next[j] == t)
				break;
		if (j == cf->ntargets) {
			log_info("%s: target removed; its spool is kept",
			    t->name);
			target_free(t);
		}
	}
	free(e->targets);
	e->targets = next;
	e->ntargets = cf->ntargets;
	return 0;
}

static void
engine_check_stopped(struct engine *e)
{
	size_t	i;
	void	(*done)(void *) = e->stop_done;

	for (i = 0; i < e->ntargets; i++)
		if (e->targets[i]->inflight != NULL)
			return;
	if (done == NULL)
		return;
	e->stop_done = NULL;
	evtimer_del(e->stop_timer);
	done(e->stop_arg);
}

static void
on_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct engine	*e = arg;
	struct target	*t;
	size_t		 i;

	(void)fd;
	(void)what;
	for (i = 0; i < e->ntargets; i++) {
		t = e->targets[i];
		if (t->inflight == NULL)
			continue;
		/* The row was not confirmed: it is sent again next time. */
		log_info("%s: abandoning the request in flight", t->name);
		http_cancel(e->http, t->inflight);
		t->inflight = NULL;
	}
	engine_check_stopped(e);
}

void
engine_stop(struct engine *e, uint64_t grace_ms, void (*done)(void *),
    void *arg)
{
	struct timeval	tv = { (time_t)(grace_ms / 1000),
	    (suseconds_t)(grace_ms % 1000) * 1000 };
	size_t		i;

	e->stopping = true;
	e->stop_done = done;
	e->stop_arg = arg;
	for (i = 0; i < e->ntargets; i++) {
		evtimer_del(e->targets[i]->timer);
		/* One last try to save an outcome the disk refused. */
		if (e->targets[i]->inflight == NULL)
			(void)commit_pending(e->targets[i]);
	}
	evtimer_assign(e->stop_timer, e->base, on_stop_timeout, e);
	evtimer_add(e->stop_timer, &tv);
	engine_check_stopped(e);
}

size_t
engine_ntargets(const struct engine *e)
{
	return e->ntargets;
}

const char *
engine_target_stats(const struct engine *e, size_t i, struct target_stats *st)
{
	const struct target	*t = e->targets[i];
	uint64_t		 now = now_ms(), wall = wall_ms();
	size_t			 queued = spool_queued(t->spool);

	memset(st, 0, sizeof *st);
	st->state = t->paused && t->inflight == NULL ? TARGET_PAUSED :
	    t->state;
	st->queued_batches = queued + (t->batch != NULL);
	if (t->batch == NULL && queued == 0)
		st->queued_rows_known = true;
	else if (t->batch != NULL && t->batch->rows_known && queued == 0) {
		st->queued_rows_known = true;
		st->queued_rows = t->batch->rows_total - t->batch->pos.row;
	}
	st->sent = t->sent;
	st->failed = t->failed;
	st->retries = t->retries;
	st->rate_limited = t->rate_limited;
	st->last_success_wall_ms = t->last_success_wall;
	if (t->inflight == NULL && st->state != TARGET_IDLE &&
	    st->state != TARGET_PAUSED)
		st->next_send_wall_ms = wall + (t->next_send > now ?
		    t->next_send - now : 0);
	st->last_error = t->last_error;
	return t->name;
}

int
engine_pause(struct engine *e, const char *name, char **cause)
{
	struct target	*t;

	if ((t = find_target(e, name)) == NULL) {
		xasprintf(cause, "no target named %s", name);
		return -1;
	}
	if (!t->paused)
		log_info("%s: paused", name);
	t->paused = true;
	if (t->inflight == NULL) {
		evtimer_del(t->timer);
		t->state = TARGET_PAUSED;
	}
	return 0;
}

int
engine_resume(struct engine *e, const char *name, char **cause)
{
	struct target	*t;

	if ((t = find_target(e, name)) == NULL) {
		xasprintf(cause, "no target named %s", name);
		return -1;
	}
	if (t->paused)
		log_info("%s: resumed", name);
	t->paused = false;
	/* Try now, except that a 429's Retry-After still holds. */
	if (t->blocked || t->state == TARGET_BACKOFF) {
		t->next_send = now_ms();
		t->failures = 0;
	}
	if (t->state == TARGET_PAUSED)
		t->state = TARGET_IDLE;
	if (t->inflight == NULL)
		target_schedule(t, t->next_send);
	return 0;
}

int
engine_retry(struct engine *e, const char *name, char **cause)
{
	struct target	*t;
	int		 n;

	if ((t = find_target(e, name)) == NULL) {
		xasprintf(cause, "no target named %s", name);
		return -1;
	}
	if ((n = spool_retry_failed(t->spool, cause)) == -1)
		return -1;
	log_info("%s: %d failed batch%s moved back to incoming/", name, n,
	    n == 1 ? "" : "es");
	target_kick(t);
	return n;
}
