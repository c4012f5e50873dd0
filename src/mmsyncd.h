/*
 * mmsyncd: deliver rows from spooled batch files to Mattermost, one message
 * per row.
 *
 * This header is the map of the program.  Data flows one way:
 *
 *   spool (incoming/ -> active/) -> batch (rows) -> template (text)
 *     -> engine (when) -> http (libcurl) -> outcome (verdict)
 *     -> engine -> spool (progress, failed/)
 *
 * Everything runs in one libevent loop in one thread.  Each file owns one
 * prefix; a section below lists what it offers to the others.
 */
#ifndef MMSYNCD_H
#define MMSYNCD_H

#include <sys/types.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <yajl/yajl_tree.h>

/* When the process started (monotonic ms), for uptime; set by main. */
extern uint64_t	 mms_start_ms;

#ifndef __has_attribute
#define __has_attribute(x) 0
#endif
#define MMS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define MMS_NORETURN __attribute__((noreturn))

/* Mattermost refuses longer messages (PostMessageMaxRunesV2). */
#define MMS_MAX_MESSAGE_RUNES 16383
/* A row larger than this is set aside unread: no message can need it. */
#define MMS_MAX_ROW_BYTES (16u * 1024 * 1024)
/* Longest target name; it is also a directory name. */
#define MMS_MAX_TARGET_NAME 64
/* A Mattermost id: 26 letters and digits. */
#define MMS_ID_LEN 26

struct event_base;
struct template;
struct batch_reader;
struct target;
struct engine;
struct http;
struct spool_target;

/* A growable byte buffer, always NUL-terminated once anything is added. */
struct buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
};

/* ---------------------------------------------------------------- util.c */
void		*xmalloc(size_t);
void		*xcalloc(size_t, size_t);
void		*xreallocarray(void *, size_t, size_t);
char		*xstrdup(const char *);
char		*xstrndup(const char *, size_t);
int		 xasprintf(char **, const char *, ...) MMS_PRINTF(2, 3);
int		 xvasprintf(char **, const char *, va_list) MMS_PRINTF(2, 0);

void		 buf_init(struct buf *);
void		 buf_free(struct buf *);
void		 buf_reset(struct buf *);
void		 buf_reserve(struct buf *, size_t);
void		 buf_add(struct buf *, const void *, size_t);
void		 buf_addstr(struct buf *, const char *);
void		 buf_addc(struct buf *, char);
void		 buf_printf(struct buf *, const char *, ...) MMS_PRINTF(2, 3);
/* Append S as a JSON string literal; invalid UTF-8 becomes U+FFFD. */
void		 buf_add_json_string(struct buf *, const char *, size_t);
/* Always a valid C string, "" for an empty buffer. */
const char	*buf_cstr(const struct buf *);

/* Milliseconds on CLOCK_MONOTONIC: for every "not before" decision. */
uint64_t	 now_ms(void);
/* The same rounded up: a start time from which an interval is counted
 * never ends that interval early. */
uint64_t	 now_ms_ceil(void);
/* Milliseconds since the epoch: for timestamps people read. */
uint64_t	 wall_ms(void);
/* RFC 3339 UTC with milliseconds, e.g. 2026-11-26T17:34:37.123Z. */
void		 format_rfc3339(uint64_t wall, char out[32]);

/* Code points of S as sent (an invalid byte counts as one U+FFFD). */
size_t		 utf8_runes(const char *, size_t);
/* Replace every byte that starts no valid UTF-8 sequence with '?'. */
void		 utf8_scrub(char *);
/* Fill with random bytes (getrandom); never fails. */
void		 random_bytes(void *, size_t);
/* Uniform random integer in [lo, hi]. */
uint64_t	 random_between(uint64_t, uint64_t);

/*
 * The only way files that must survive a crash are written: a temporary
 * file beside PATH, write, fsync, rename over PATH, fsync the directory.
 * Returns 0, or -1 with errno set (ENOSPC, EIO, EACCES...).
 */
int		 file_write_atomic(const char *path, const void *, size_t,
		    mode_t);
/* fsync a directory by path. */
int		 dir_sync(const char *);
/* mkdir -p with a mode; an existing directory is fine. */
int		 dir_make(const char *, mode_t);
/* Read a whole small file (at most MAX bytes) into a NUL-terminated
 * string; -1 with errno (EFBIG when larger). */
int		 file_read_small(const char *, size_t max, char **, size_t *);

/* ----------------------------------------------------------------- log.c */
enum log_level {
	LOG_LEVEL_ERROR = 3,	/* syslog priorities, for <N> prefixes */
	LOG_LEVEL_WARNING = 4,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};
void		 log_init(const char *progname);
void		 log_set_level(enum log_level);
/* Secrets registered here are replaced by "[redacted]" in every line. */
void		 log_add_secret(const char *);
void		 log_clear_secrets(void);
void		 log_error(const char *, ...) MMS_PRINTF(1, 2);
void		 log_warn(const char *, ...) MMS_PRINTF(1, 2);
void		 log_warnx(const char *, ...) MMS_PRINTF(1, 2);
void		 log_info(const char *, ...) MMS_PRINTF(1, 2);
void		 log_debug(const char *, ...) MMS_PRINTF(1, 2);
void		 fatalx(const char *, ...) MMS_PRINTF(1, 2) MMS_NORETURN;
/* Parse "error", "warning", "info", "debug"; -1 when unknown. */
int		 log_level_parse(const char *);
/* Copy a URL with its secret part (a webhook id, userinfo, the query)
 * replaced, for logs and status. */
void		 log_redact_url(const char *url, char *out, size_t outsz);

/* -------------------------------------------------------------- config.c */
enum auth_kind {
	AUTH_TOKEN,
	AUTH_WEBHOOK,
};

struct target_conf {
	char		*name;
	int		 line, column;		/* where it is defined */
	enum auth_kind	 auth;

	char		*server_url;		/* token: no trailing '/' */
	char		*token;			/* token: the secret itself */
	char		*token_file;		/* token: path it came from, or NULL */
	char		*webhook_url;		/* webhook: the secret URL */
	char		*channel;		/* token: id; webhook: name or NULL */
	char		*username;		/* webhook, optional */
	char		*icon_url;		/* webhook, optional */

	char		*template_src;		/* NULL when only an attachment */
	struct template	*template;
	struct template	*channel_template;	/* token: "{{field}}" channel */
	unsigned	 digest_rows;		/* rows per message, default 1 */
	struct template	*digest_header;		/* over {{count}}, or NULL */
	struct attachment_conf *attachment;	/* or NULL */

	char		*ca_file;		/* extra trusted CA, or NULL */
	uint64_t	 interval_ms;		/* spacing of request starts */
	uint64_t	 timeout_ms;		/* whole request */
	uint64_t	 connect_timeout_ms;
	uint64_t	 backoff_min_ms;	/* first transient-error wait */
	uint64_t	 backoff_max_ms;	/* cap of the exponential backoff */
	uint64_t	 blocked_retry_ms;	/* how often a blocked target retries */
};

/* A Mattermost message attachment whose strings are templates. */
struct attachment_field {
	struct template	*title;
	struct template	*value;
	bool		 is_short;
};

struct attachment_conf {
	struct template	*fallback, *color, *pretext, *title, *title_link;
	struct template	*text, *footer;		/* each may be NULL */
	struct attachment_field *fields;
	size_t		 nfields;
};

struct config {
	char		*path;
	char		*spool_dir;
	char		*status_socket;
	enum log_level	 log_level;
	mode_t		 spool_mode;		/* for incoming/ (producers write) */
	char		*spool_group;		/* group of incoming/, or NULL */
	mode_t		 socket_mode;
	char		*socket_group;		/* group of the socket, or NULL */

	struct target_conf **targets;		/* in file order */
	size_t		 ntargets;
};

/* Problems found in a configuration, each "FILE:LINE:COLUMN: message". */
struct config_errors {
	char		**msgs;
	size_t		 n;
};

/*
 * Load and validate PATH.  Returns the config, or NULL with every problem
 * found appended to ERRS (never stops at the first).  Contacts nothing.
 */
struct config	*config_load(const char *path, struct config_errors *errs);
void		 config_free(struct config *);
/* A config holding only the top-level (spool and socket) settings. */
struct config	*config_copy_spool(const struct config *);
void		 config_errors_free(struct config_errors *);
const struct target_conf *config_find_target(const struct config *,
		    const char *);
/* "250ms", "2s", "1m", "1h", "0": 0 and *ms set, or -1. */
int		 config_parse_duration(const char *, uint64_t *ms);

/* ------------------------------------------------------------ template.c */
/* Compile "{{field}}" placeholders once; NULL with *cause on error. */
struct template	*template_compile(const char *src, char **cause);
void		 template_free(struct template *);
/*
 * Append the rendering of ROW (a parsed JSON object) to OUT.  Never fails:
 * a placeholder naming no field stays as written.
 */
void		 template_render(const struct template *, yajl_val row,
		    struct buf *out);
/* Append a JSON value as compact JSON (numbers exactly as written). */
void		 json_append_compact(struct buf *, yajl_val);

/* --------------------------------------------------------------- batch.c */
enum batch_format {
	BATCH_NDJSON,		/* .ndjson, .jsonl: one object per line */
	BATCH_JSON,		/* .json: array, or {"mode", "rows"} envelope */
};

/* Where a reader stands: enough to resume after a restart. */
struct batch_pos {
	uint64_t	 offset;	/* byte offset of the next row's text */
	uint64_t	 line;		/* 1-based line at offset */
	uint64_t	 row;		/* rows returned so far */
};

enum batch_item_kind {
	BATCH_ROW,		/* a good row: value is a JSON object */
	BATCH_BAD_ROW,		/* a row to set aside: reason says why */
};

struct batch_item {
	enum batch_item_kind kind;
	yajl_val	 value;		/* BATCH_ROW: owned by the reader */
	uint64_t	 offset;	/* the row's bytes in the file... */
	uint64_t	 length;	/* ...as they were */
	uint64_t	 line;		/* 1-based line where the row starts */
	uint64_t	 row;		/* 1-based row number */
	char		 reason[256];	/* BATCH_BAD_ROW */
};

/* Format from the file name, -1 if the name is not a batch file. */
int		 batch_format_of(const char *name);
/*
 * Check a whole .json file before anything is sent from it: valid JSON,
 * an array or an {"mode": insert|add, "rows": [...]} envelope.  Streams;
 * memory does not grow with the file.  Returns 0 and the number of rows,
 * or -1 with the reason (the batch is set aside whole).
 */
int		 batch_validate_json(int fd, uint64_t *rows, char *reason,
		    size_t reasonsz);
/*
 * Open a reader on FD (not closed by the reader) at POS (zero for the
 * start).  NULL with *cause on error.
 */
struct batch_reader *batch_open(int fd, enum batch_format,
		    const struct batch_pos *, char **cause);
/* 1: an item, 0: end of batch, -1: I/O error (*cause). */
int		 batch_next(struct batch_reader *, struct batch_item *,
		    char **cause);
/* The position just after the last item returned. */
void		 batch_position(const struct batch_reader *, struct batch_pos *);
void		 batch_close(struct batch_reader *);

/* ------------------------------------------------------------- outcome.c */
/* What came back from one request, as http.c saw it. */
struct response {
	int		 curl_code;	/* CURLcode; 0 when an answer came */
	const char	*curl_error;	/* curl's error buffer, or NULL */
	long		 status;	/* HTTP status, 0 if none */
	const char	*retry_after;	/* raw header values, or NULL */
	const char	*ratelimit_reset;
	const char	*ratelimit_remaining;
	const char	*content_type;
	const char	*body;		/* NUL-terminated, possibly cut short */
	size_t		 body_len;
	bool		 body_cut;	/* more came than was kept */
	uint64_t	 sent_ms;	/* monotonic: when it went out, or 0 */
};

enum verdict {
	VERDICT_DELIVERED,	/* the row is done */
	VERDICT_RATE_LIMITED,	/* resend the same row after wait_ms */
	VERDICT_BACKOFF,	/* transient: resend after a backoff */
	VERDICT_BLOCK,		/* the target cannot send: stop, report */
	VERDICT_SET_ASIDE,	/* the row is bad: to failed/, go on */
};

struct outcome {
	enum verdict	 verdict;
	bool		 has_wait;	/* wait_ms was given by the server */
	uint64_t	 wait_ms;	/* RATE_LIMITED or DELIVERED hold */
	long		 status;	/* HTTP status, 0 if none */
	char		 error_id[128];	/* Mattermost AppError id, or "" */
	char		 reason[512];	/* for logs, status and .errors */
};

/* Limits applied to what a server asks us to wait. */
#define OUTCOME_MAX_WAIT_MS	(3600u * 1000)

/* Pure: classify a response; NOW_WALL_MS resolves HTTP-date Retry-After. */
void		 outcome_classify(const struct response *, enum auth_kind,
		    uint64_t now_wall_ms, struct outcome *);
/* Parse Retry-After (seconds or HTTP date) into ms; -1 if unusable. */
int		 outcome_parse_retry_after(const char *, uint64_t now_wall_ms,
		    uint64_t *ms);
/* Full-jitter exponential backoff for the Nth consecutive failure (1..):
 * uniform in [min, min(max, min * 2^(n-1))]. */
uint64_t	 backoff_delay(unsigned n, uint64_t min_ms, uint64_t max_ms);
/* Pure pacing: the earliest start of the next request. */
uint64_t	 pace_next_start(uint64_t last_start_ms, uint64_t interval_ms,
		    uint64_t answered_ms);

/* ------------------------------------------------------------- message.c */
/*
 * One post, built from one row or (digest_rows > 1) several consecutive
 * rows: the rendered text, the attachments, the channel, and the JSON
 * body for REST or a webhook.  Pure: no I/O.
 */
struct message {
	const struct target_conf *conf;
	size_t		 nrows;
	size_t		 runes;		/* text + attachment strings so far */
	struct buf	 text;		/* rendered rows joined by newlines */
	struct buf	 attachments;	/* JSON objects joined by commas */
	char		 channel[MMS_ID_LEN + 1];	/* token: the id */
	struct buf	 scratch;
};

enum message_add {
	MESSAGE_ADDED,		/* the row is in */
	MESSAGE_FULL,		/* send what there is, then add it again */
	MESSAGE_BAD_ROW,	/* the row cannot be sent: reason says why */
};

void		 message_init(struct message *, const struct target_conf *);
void		 message_reset(struct message *);
void		 message_free(struct message *);
/*
 * Add ROW.  MESSAGE_FULL when it would take the message over digest_rows
 * or MMS_MAX_MESSAGE_RUNES, or it goes to another channel; a row that
 * alone is too long, or renders a channel that is not an id, is
 * MESSAGE_BAD_ROW.
 */
enum message_add message_add(struct message *, yajl_val row, char *reason,
		    size_t reasonsz);
/* The JSON body: REST carries pending_post_id and props.mmsyncd_row =
 * ROW_ID; a webhook neither. */
void		 message_body(const struct message *, const char *row_id,
		    struct buf *out);

/* ---------------------------------------------------------------- http.c */
/* One request, owned by the caller until the done callback runs. */
typedef void	(*http_done_cb)(void *arg, const struct response *);

struct http	*http_new(struct event_base *);
void		 http_free(struct http *);
/*
 * Start a POST of BODY (JSON) for target TC; DONE runs from the loop when
 * it ends, whatever the result.  Returns a handle for http_cancel.
 */
struct http_request *http_post(struct http *, const struct target_conf *,
		    const char *body, size_t len, http_done_cb, void *arg);
/* GET PATH (from "/api/v4/...") of a token target's server, keeping at
 * most BODY_MAX bytes of the answer. */
struct http_request *http_get(struct http *, const struct target_conf *,
		    const char *path, size_t body_max, http_done_cb, void *arg);
/* Abandon a request; its callback will not run. */
void		 http_cancel(struct http *, struct http_request *);

/* --------------------------------------------------------------- spool.c */
/*
 * Per target, under spool_dir/<target>/:
 *   incoming/  producers rename batch files in
 *   active/    the batch being delivered (<seq>.batch) and its progress
 *              (<seq>.state), rows set aside so far (<seq>.failed,
 *              <seq>.errors); at most one batch at a time
 *   failed/    what could not be delivered, and why
 */
struct spool;

/* A batch taken out of incoming/, and how far it has got. */
struct batch {
	char		*name;		/* its name in incoming/ */
	char		 id[17];	/* random hex: makes row ids unique */
	enum batch_format format;
	uint64_t	 seq;		/* active/<seq>.* */
	int		 fd;
	struct batch_pos pos;		/* durable: the next row to handle */
	uint64_t	 rows_total;	/* known for .json, else 0 */
	bool		 rows_known;
	uint64_t	 failed_len;	/* durable lengths of <seq>.failed */
	uint64_t	 errors_len;	/* and of <seq>.errors */
	uint64_t	 nfailed;	/* rows set aside from it so far */
	uint64_t	 written_at;	/* wall ms of the last state write read */
	bool		 whole;		/* set aside as a whole */
	char		*finish_stem;	/* set while moving to failed/ */
};

/* Why a row or batch is set aside; status 0 and error_id "" mean none. */
struct set_aside {
	long		 status;
	const char	*error_id;
	const char	*reason;
};

struct spool	*spool_open(const struct config *, const char *target,
		    char **cause);
void		 spool_close(struct spool *);
const char	*spool_incoming_dir(const struct spool *);
/* The queue of names waiting in incoming/, smallest first. */
void		 spool_rescan(struct spool *);
void		 spool_queue_add(struct spool *, const char *name);
void		 spool_queue_remove(struct spool *, const char *name);
size_t		 spool_queued(const struct spool *);
/*
 * The batch left in active/ by an earlier run (1), none (0), or -1 with
 * *cause when active/ cannot be read (retried later).
 */
int		 spool_resume(struct spool *, struct batch **, char **cause);
/* Take the next batch out of incoming/: 1, 0 when none waits, -1. */
int		 spool_take(struct spool *, struct batch **, char **cause);
/* Make POS the durable position of B. */
int		 spool_commit(struct spool *, struct batch *,
		    const struct batch_pos *);
/* Set N rows aside (kept until the batch ends) and commit AFTER. */
int		 spool_set_aside_rows(struct spool *, struct batch *,
		    const struct batch_item *, size_t n,
		    const struct set_aside *, const struct batch_pos *after);
/* Move the whole batch to failed/ with the reason; frees B on success. */
int		 spool_set_aside_batch(struct spool *, struct batch *,
		    const struct set_aside *, uint64_t line);
/* The batch is done: its set-aside rows go to failed/; frees B. */
int		 spool_finish(struct spool *, struct batch *);
void		 spool_batch_free(struct batch *);
/* Move the .ndjson files of failed/ back to incoming/ (mmsyncctl
 * retry); the number moved, or -1 with *cause. */
int		 spool_retry_failed(struct spool *, char **cause);

/* -------------------------------------------------------------- engine.c */
enum target_state {
	TARGET_IDLE,		/* nothing to send */
	TARGET_SENDING,		/* a request is in flight */
	TARGET_WAITING,		/* pacing: the next row waits its turn */
	TARGET_RATE_LIMITED,	/* the server said 429: waiting */
	TARGET_BACKOFF,		/* transient failure: waiting */
	TARGET_BLOCKED,		/* cannot send until fixed */
	TARGET_PAUSED,		/* an operator said so */
};

struct target_stats {
	enum target_state state;
	uint64_t	 queued_batches;
	uint64_t	 queued_rows;
	bool		 queued_rows_known;
	uint64_t	 sent, failed, retries, rate_limited;
	uint64_t	 last_success_wall_ms;	/* 0: never */
	uint64_t	 next_send_wall_ms;	/* 0: not scheduled */
	const char	*last_error;		/* or NULL */
};

struct engine	*engine_new(struct event_base *, const struct config *,
		    char **cause);
/* Swap in a new configuration (reload); the old one may then be freed. */
int		 engine_reconfigure(struct engine *, const struct config *,
		    char **cause);
/* Stop starting requests; abandon the one in flight after GRACE_MS;
 * DONE runs once nothing is in flight. */
void		 engine_stop(struct engine *, uint64_t grace_ms,
		    void (*done)(void *), void *arg);
void		 engine_free(struct engine *);
const char	*engine_state_name(enum target_state);
size_t		 engine_ntargets(const struct engine *);
/* The Nth target's name and figures, in configuration order. */
const char	*engine_target_stats(const struct engine *, size_t,
		    struct target_stats *);
/* Operator commands: 0 (retry: the number of batches moved back), or -1
 * with *cause. */
int		 engine_pause(struct engine *, const char *, char **cause);
int		 engine_resume(struct engine *, const char *, char **cause);
int		 engine_retry(struct engine *, const char *, char **cause);

/* ------------------------------------------------------------- control.c */
/*
 * The status socket: one command line in, one answer out, from the same
 * loop.  Clients are capped and timed out; none can hold up delivery.
 */
struct control;

struct control	*control_new(struct event_base *, struct engine *,
		    const struct config *, char **cause);
/* The engine is created after the socket, so that a second daemon is
 * refused before it touches the spool. */
void		 control_set_engine(struct control *, struct engine *);
void		 control_free(struct control *);
/* Answer one command line (without its newline) into OUT; pure enough
 * to test and fuzz without a socket. */
void		 control_answer(struct engine *, const char *line, size_t len,
		    struct buf *out);

/* -------------------------------------------------------------- notify.c */
/* systemd's notification protocol; all of it does nothing without
 * NOTIFY_SOCKET. */
void		 notify_init(struct event_base *, struct engine *);
void		 notify_ready(void);
void		 notify_reloading(void);
void		 notify_stopping(void);
/* Refresh STATUS= from the engine's figures. */
void		 notify_status(void);
void		 notify_free(void);

#endif /* MMSYNCD_H */
