/*
 * control.c: the status socket.
 *
 * A Unix stream socket served from the daemon's one loop (evconnlistener
 * and bufferevents, all non-blocking).  A client writes one command line
 * ending in "\n", reads the answer, and the daemon closes.  No client can
 * hold up delivery:
 *
 *   - at most CONTROL_MAX_CLIENTS at once; past that a client is accepted,
 *     told so without blocking, and closed, so nobody waits in the backlog;
 *   - a client has CONTROL_READ_MS to send a complete line, then
 *     CONTROL_WRITE_MS to take its answer (deadlines, not idle timeouts:
 *     trickling one byte at a time buys nothing);
 *   - a line longer than CONTROL_MAX_LINE is answered with an error;
 *   - when accept() runs out of descriptors the listener pauses for a
 *     second instead of spinning (tmux server_accept).
 *
 * At start the path is probed with connect() first (OpenSMTPD control.c):
 * a daemon that answers means another mmsyncd runs there; a socket nobody
 * answers on is stale and replaced; anything that is not a socket is left
 * alone and the start fails.
 *
 * control_answer() is the whole command language, free of sockets, so it
 * can be tested and fuzzed on its own.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "mmsyncd.h"

#define CONTROL_BACKLOG		128
#define CONTROL_MAX_CLIENTS	64
#define CONTROL_MAX_LINE	1024	/* bytes, without the newline */
#define CONTROL_READ_MS		5000	/* to send a complete line */
#define CONTROL_WRITE_MS	10000	/* to take the answer */
#define CONTROL_ACCEPT_PAUSE_MS	1000	/* after EMFILE/ENFILE */
#define CONTROL_DEFAULT_MODE	0660
/* How much of a bad command line an error quotes. */
#define CONTROL_QUOTE_MAX	64

struct control;

struct client {
	struct control		*control;
	struct bufferevent	*bev;
	struct event		*deadline;
	bool			 answered;	/* now only writing */
	LIST_ENTRY(client)	 entry;
};

struct control {
	struct event_base	*base;
	struct engine		*engine;
	struct evconnlistener	*listener;
	struct event		*resume;	/* re-enables the listener */
	bool			 accept_failing;	/* warned already */
	char			*path;
	dev_t			 dev;		/* of the socket we bound, to */
	ino_t			 ino;		/* unlink only our own */
	LIST_HEAD(, client)	 clients;
	size_t			 nclients;
};

static void	client_free(struct client *);

/* ------------------------------------------------------------ answers */

static bool
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
	    c == '\f';
}

static void
add_error(struct buf *out, const char *msg, size_t len)
{
	buf_addstr(out, "{\"ok\": false, \"error\": ");
	buf_add_json_string(out, msg, len);
	buf_addstr(out, "}\n");
}

/* Append 'S' to MSG, cut after CONTROL_QUOTE_MAX bytes (on a UTF-8
 * boundary) with "..." to show it; the JSON encoder escapes the rest. */
static void
add_quoted(struct buf *msg, const char *s, size_t len)
{
	size_t	n = len;

	if (n > CONTROL_QUOTE_MAX) {
		n = CONTROL_QUOTE_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	buf_addc(msg, '\'');
	buf_add(msg, s, n);
	buf_addstr(msg, n < len ? "'..." : "'");
}

/* {"ok": false, "error": "unknown command: 'LINE'[ (usage: U)]"} */
static void
add_unknown(struct buf *out, const char *line, size_t len,
    const char *usage)
{
	struct buf	msg;

	buf_init(&msg);
	buf_addstr(&msg, "unknown command: ");
	add_quoted(&msg, line, len);
	if (usage != NULL)
		buf_printf(&msg, " (usage: %s)", usage);
	add_error(out, msg.data, msg.len);
	buf_free(&msg);
}

/* Target names are [A-Za-z0-9_-]+; anything else cannot name one. */
static bool
valid_target_name(const char *s, size_t len)
{
	size_t	i;

	if (len == 0 || len > MMS_MAX_TARGET_NAME)
		return false;
	for (i = 0; i < len; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return false;
	}
	return true;
}

static uint64_t
uptime_s(void)
{
	uint64_t	now = now_ms();

	return now > mms_start_ms ? (now - mms_start_ms) / 1000 : 0;
}

static void
add_time_or_null(struct buf *out, uint64_t wall)
{
	char	stamp[32];

	if (wall == 0) {
		buf_addstr(out, "null");
		return;
	}
	format_rfc3339(wall, stamp);
	buf_add_json_string(out, stamp, strlen(stamp));
}

static void
answer_status(struct engine *e, struct buf *out)
{
	struct target_stats	 st;
	const char		*name, *state;
	size_t			 i, n = engine_ntargets(e);

	buf_addstr(out, "{\"version\": ");
	buf_add_json_string(out, PACKAGE_VERSION, strlen(PACKAGE_VERSION));
	buf_printf(out, ", \"pid\": %ld, \"uptime_s\": %" PRIu64
	    ", \"targets\": {", (long)getpid(), uptime_s());
	for (i = 0; i < n; i++) {
		name = engine_target_stats(e, i, &st);
		state = engine_state_name(st.state);
		if (i > 0)
			buf_addstr(out, ", ");
		buf_add_json_string(out, name, strlen(name));
		buf_addstr(out, ": {\"state\": ");
		buf_add_json_string(out, state, strlen(state));
		buf_printf(out, ", \"queued_batches\": %" PRIu64
		    ", \"queued_rows\": ", st.queued_batches);
		if (st.queued_rows_known)
			buf_printf(out, "%" PRIu64, st.queued_rows);
		else
			buf_addstr(out, "null");
		buf_printf(out, ", \"sent\": %" PRIu64 ", \"failed\": %" PRIu64
		    ", \"retries\": %" PRIu64 ", \"rate_limited\": %" PRIu64
		    ", \"last_error\": ", st.sent, st.failed, st.retries,
		    st.rate_limited);
		if (st.last_error != NULL)
			buf_add_json_string(out, st.last_error,
			    strlen(st.last_error));
		else
			buf_addstr(out, "null");
		buf_addstr(out, ", \"next_send\": ");
		add_time_or_null(out, st.next_send_wall_ms);
		buf_addstr(out, ", \"last_success\": ");
		add_time_or_null(out, st.last_success_wall_ms);
		buf_addc(out, '}');
	}
	buf_addstr(out, "}}\n");
}

/* A label value per the text exposition format: \\, \" and \n. */
static void
add_label_value(struct buf *out, const char *s)
{
	buf_addc(out, '"');
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '\\':
			buf_addstr(out, "\\\\");
			break;
		case '"':
			buf_addstr(out, "\\\"");
			break;
		case '\n':
			buf_addstr(out, "\\n");
			break;
		default:
			buf_addc(out, *s);
		}
	}
	buf_addc(out, '"');
}

enum metric_field {
	M_SENT,
	M_FAILED,
	M_RETRIES,
	M_RATE_LIMITED,
	M_QUEUED_BATCHES,
	M_QUEUED_ROWS,
	M_BLOCKED,
	M_PAUSED,
	M_LAST_SUCCESS,
};

static const struct metric {
	const char		*name;
	const char		*type;
	const char		*help;
	enum metric_field	 field;
} metrics[] = {
	{ "mmsyncd_rows_sent_total", "counter",
	  "Rows delivered since mmsyncd started.", M_SENT },
	{ "mmsyncd_rows_failed_total", "counter",
	  "Rows set aside in failed/ since mmsyncd started.", M_FAILED },
	{ "mmsyncd_retries_total", "counter",
	  "Requests sent again after a transient failure.", M_RETRIES },
	{ "mmsyncd_rate_limited_total", "counter",
	  "Answers that asked mmsyncd to slow down (429).", M_RATE_LIMITED },
	{ "mmsyncd_queued_batches", "gauge",
	  "Batches waiting or being delivered.", M_QUEUED_BATCHES },
	{ "mmsyncd_queued_rows", "gauge",
	  "Rows waiting, for targets where the number is known.",
	  M_QUEUED_ROWS },
	{ "mmsyncd_target_blocked", "gauge",
	  "1 when the target cannot send until its problem is fixed.",
	  M_BLOCKED },
	{ "mmsyncd_target_paused", "gauge",
	  "1 when an operator paused the target.", M_PAUSED },
	{ "mmsyncd_last_success_timestamp_seconds", "gauge",
	  "When a row was last delivered (Unix time), 0 if never.",
	  M_LAST_SUCCESS },
};

static void
answer_metrics(struct engine *e, struct buf *out)
{
	const struct metric	*m;
	struct target_stats	*st;
	const char		**names;
	size_t			 i, j, n = engine_ntargets(e);
	uint64_t		 v;

	st = xcalloc(n, sizeof *st);
	names = xcalloc(n, sizeof *names);
	for (i = 0; i < n; i++)
		names[i] = engine_target_stats(e, i, &st[i]);

	buf_addstr(out, "# HELP mmsyncd_up Whether mmsyncd is running.\n"
	    "# TYPE mmsyncd_up gauge\nmmsyncd_up 1\n");
	buf_printf(out, "# HELP mmsyncd_uptime_seconds Seconds since mmsyncd "
	    "started.\n# TYPE mmsyncd_uptime_seconds gauge\n"
	    "mmsyncd_uptime_seconds %" PRIu64 "\n", uptime_s());
	buf_addstr(out, "# HELP mmsyncd_build_info The running version.\n"
	    "# TYPE mmsyncd_build_info gauge\nmmsyncd_build_info{version=");
	add_label_value(out, PACKAGE_VERSION);
	buf_addstr(out, "} 1\n");

	for (m = metrics; m < metrics + sizeof metrics / sizeof metrics[0];
	    m++) {
		buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help,
		    m->name, m->type);
		for (j = 0; j < n; j++) {
			switch (m->field) {
			case M_SENT:
				v = st[j].sent;
				break;
			case M_FAILED:
				v = st[j].failed;
				break;
			case M_RETRIES:
				v = st[j].retries;
				break;
			case M_RATE_LIMITED:
				v = st[j].rate_limited;
				break;
			case M_QUEUED_BATCHES:
				v = st[j].queued_batches;
				break;
			case M_QUEUED_ROWS:
				if (!st[j].queued_rows_known)
					continue;
				v = st[j].queued_rows;
				break;
			case M_BLOCKED:
				v = st[j].state == TARGET_BLOCKED;
				break;
			case M_PAUSED:
				v = st[j].state == TARGET_PAUSED;
				break;
			case M_LAST_SUCCESS:
				v = st[j].last_success_wall_ms / 1000;
				break;
			default:
				continue;
			}
			buf_printf(out, "%s{target=", m->name);
			add_label_value(out, names[j]);
			buf_printf(out, "} %" PRIu64 "\n", v);
		}
	}
	free(names);
	free(st);
}

typedef int	(*target_cmd_fn)(struct engine *, const char *, char **);

static void
answer_target_cmd(struct engine *e, target_cmd_fn fn, bool moved,
    const char *arg, size_t arglen, struct buf *out)
{
	struct buf	 msg;
	char		*name, *cause = NULL;
	int		 n;

	if (!valid_target_name(arg, arglen)) {
		buf_init(&msg);
		buf_addstr(&msg, "no target named ");
		add_quoted(&msg, arg, arglen);
		add_error(out, msg.data, msg.len);
		buf_free(&msg);
		return;
	}
	name = xstrndup(arg, arglen);
	if ((n = fn(e, name, &cause)) == -1) {
		if (cause == NULL)
			cause = xstrdup("failed");
		add_error(out, cause, strlen(cause));
	} else if (moved)
		buf_printf(out, "{\"ok\": true, \"moved\": %d}\n", n);
	else
		buf_addstr(out, "{\"ok\": true}\n");
	free(cause);
	free(name);
}

static const struct command {
	const char	*name;
	bool		 takes_target;
	target_cmd_fn	 fn;
	bool		 moved;
	const char	*usage;
} commands[] = {
	{ "status", false, NULL, false, "status" },
	{ "metrics", false, NULL, false, "metrics" },
	{ "pause", true, engine_pause, false, "pause TARGET" },
	{ "resume", true, engine_resume, false, "resume TARGET" },
	{ "retry", true, engine_retry, true, "retry TARGET" },
};

void
control_answer(struct engine *e, const char *line, size_t len,
    struct buf *out)
{
	const struct command	*c;
	const char		*word[3];
	size_t			 wlen[3], nwords = 0, i = 0, start;

	/* Surrounding white space (a trailing '\r' included) is dropped;
	 * words are separated by runs of it.  Other bytes, NUL and invalid
	 * UTF-8 included, are just bytes of a word that matches nothing. */
	while (len > 0 && is_space((unsigned char)line[len - 1]))
		len--;
	while (i < len && is_space((unsigned char)line[i]))
		i++;
	line += i;
	len -= i;
	for (i = 0; i < len && nwords < 3; ) {
		start = i;
		while (i < len && !is_space((unsigned char)line[i]))
			i++;
		word[nwords] = line + start;
		wlen[nwords++] = i - start;
		while (i < len && is_space((unsigned char)line[i]))
			i++;
	}
	if (nwords == 0) {
		add_unknown(out, line, len, NULL);
		return;
	}
	for (c = commands; c < commands + sizeof commands / sizeof commands[0];
	    c++) {
		if (strlen(c->name) == wlen[0] &&
		    memcmp(c->name, word[0], wlen[0]) == 0)
			break;
	}
	if (c == commands + sizeof commands / sizeof commands[0]) {
		add_unknown(out, line, len, NULL);
		return;
	}
	if (nwords != (c->takes_target ? 2u : 1u)) {
		add_unknown(out, line, len, c->usage);
		return;
	}
	if (c->takes_target)
		answer_target_cmd(e, c->fn, c->moved, word[1], wlen[1], out);
	else if (strcmp(c->name, "status") == 0)
		answer_status(e, out);
	else
		answer_metrics(e, out);
}

/* ------------------------------------------------------------ clients */

static void
client_free(struct client *cl)
{
	struct control	*c = cl->control;
	evutil_socket_t	 fd = bufferevent_getfd(cl->bev);
	char		 junk[4096];
	int		 i;

	/* Closing a Unix socket with unread input makes the peer's read
	 * fail with ECONNRESET, perhaps before it has read our answer:
	 * swallow what it sent after its line (a bounded, non-blocking
	 * drain). */
	for (i = 0; fd != -1 && i < 16; i++) {
		if (recv(fd, junk, sizeof junk, MSG_DONTWAIT) <= 0)
			break;
	}
	LIST_REMOVE(cl, entry);
	c->nclients--;
	event_free(cl->deadline);
	bufferevent_free(cl->bev);
	free(cl);
}

static void
client_set_deadline(struct client *cl, uint64_t ms)
{
	struct timeval	tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	evtimer_add(cl->deadline, &tv);
}

static void
client_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct client	*cl = arg;

	(void)fd;
	(void)what;
	log_debug("control: client dropped: %s", cl->answered ?
	    "did not read its answer" : "sent no command");
	client_free(cl);
}

static void
client_answer(struct client *cl, const char *line, size_t len)
{
	struct buf	out;

	buf_init(&out);
	control_answer(cl->control->engine, line, len, &out);
	cl->answered = true;
	bufferevent_disable(cl->bev, EV_READ);
	client_set_deadline(cl, CONTROL_WRITE_MS);
	if (bufferevent_write(cl->bev, out.data, out.len) == -1) {
		buf_free(&out);
		client_free(cl);
		return;
	}
	buf_free(&out);
	/* The write callback closes once the answer is out. */
}

static void
client_too_long(struct client *cl)
{
	static const char	msg[] =
	    "{\"ok\": false, \"error\": \"command too long\"}\n";

	log_debug("control: client refused: command over %d bytes",
	    CONTROL_MAX_LINE);
	evbuffer_drain(bufferevent_get_input(cl->bev),
	    evbuffer_get_length(bufferevent_get_input(cl->bev)));
	cl->answered = true;
	bufferevent_disable(cl->bev, EV_READ);
	client_set_deadline(cl, CONTROL_WRITE_MS);
	if (bufferevent_write(cl->bev, msg, sizeof msg - 1) == -1)
		client_free(cl);
}

/* Look for a complete line; AT_EOF takes what there is as the line. */
static void
client_try_line(struct client *cl, bool at_eof)
{
	struct evbuffer		*in = bufferevent_get_input(cl->bev);
	struct evbuffer_ptr	 p;
	size_t			 len;
	char			*line;

	p = evbuffer_search(in, "\n", 1, NULL);
	if (p.pos == -1) {
		len = evbuffer_get_length(in);
		if (len > CONTROL_MAX_LINE) {
			client_too_long(cl);
			return;
		}
		if (!at_eof)
			return;
		if (len == 0) {
			/* Gone without a word. */
			client_free(cl);
			return;
		}
	} else
		len = (size_t)p.pos;
	if (len > CONTROL_MAX_LINE) {
		client_too_long(cl);
		return;
	}
	line = xmalloc(len + 1);
	evbuffer_remove(in, line, len);
	line[len] = '\0';
	evbuffer_drain(in, evbuffer_get_length(in));
	client_answer(cl, line, len);
	free(line);
}

static void
client_on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	client_try_line(arg, false);
}

static void
client_on_write(struct bufferevent *bev, void *arg)
{
	struct client	*cl = arg;

	if (cl->answered && evbuffer_get_length(bufferevent_get_output(bev))
	    == 0)
		client_free(cl);
}

static void
client_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct client	*cl = arg;

	(void)bev;
	if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) &&
	    !cl->answered) {
		/* Half-closed after a last line without "\n": answer it. */
		client_try_line(cl, true);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		log_debug("control: client dropped: %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	client_free(cl);
}

static void
control_refuse(evutil_socket_t fd)
{
	static const char	msg[] =
	    "{\"ok\": false, \"error\": \"too many clients\"}\n";
	char			junk[4096];
	ssize_t			n;

	/* Never blocks: what fits is sent, the rest is lost. */
	if (recv(fd, junk, sizeof junk, MSG_DONTWAIT) < 0)
		errno = 0;
	n = send(fd, msg, sizeof msg - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)n;
	evutil_closesocket(fd);
}

static void
control_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct control	*c = arg;
	struct client	*cl;

	(void)l;
	(void)sa;
	(void)salen;
	if (c->accept_failing) {
		log_info("control: accepting clients again");
		c->accept_failing = false;
	}
	if (c->nclients >= CONTROL_MAX_CLIENTS) {
		log_debug("control: client refused: %d connected",
		    CONTROL_MAX_CLIENTS);
		control_refuse(fd);
		return;
	}
	/* The listener made it non-blocking and close-on-exec. */
	cl = xcalloc(1, sizeof *cl);
	cl->control = c;
	cl->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	cl->deadline = evtimer_new(c->base, client_on_deadline, cl);
	if (cl->bev == NULL || cl->deadline == NULL) {
		log_warnx("control: cannot set up a client");
		if (cl->bev != NULL)
			bufferevent_free(cl->bev);
		else
			evutil_closesocket(fd);
		if (cl->deadline != NULL)
			event_free(cl->deadline);
		free(cl);
		return;
	}
	LIST_INSERT_HEAD(&c->clients, cl, entry);
	c->nclients++;
	bufferevent_setcb(cl->bev, client_on_read, client_on_write,
	    client_on_event, cl);
	/* Input never holds more than the longest line and its "\n". */
	bufferevent_setwatermark(cl->bev, EV_READ, 0, CONTROL_MAX_LINE + 1);
	client_set_deadline(cl, CONTROL_READ_MS);
	bufferevent_enable(cl->bev, EV_READ | EV_WRITE);
}

static void
control_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct control	*c = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(c->listener);
}

static void
control_on_accept_error(struct evconnlistener *l, void *arg)
{
	struct control	*c = arg;
	struct timeval	 tv = { CONTROL_ACCEPT_PAUSE_MS / 1000,
			    (CONTROL_ACCEPT_PAUSE_MS % 1000) * 1000 };
	int		 err = EVUTIL_SOCKET_ERROR();

	/* libevent already ignores EAGAIN, EINTR and ECONNABORTED.  Whatever
	 * else it is (EMFILE, ENFILE, ENOBUFS...), trying again at once would
	 * spin: stop accepting for a moment. */
	errno = err;
	if (!c->accept_failing)
		log_warn("control: accept failed; pausing for %d ms at a time "
		    "until it works again", CONTROL_ACCEPT_PAUSE_MS);
	else
		log_debug("control: accept failed again: %s", strerror(err));
	c->accept_failing = true;
	evconnlistener_disable(l);
	evtimer_add(c->resume, &tv);
}

/* ------------------------------------------------------------ set up */

/*
 * Is someone serving PATH?  1: yes; 0: no (nothing there, or a stale
 * socket, which is removed); -1 with *cause.
 */
static int
control_probe(const char *path, const struct sockaddr_un *sun, char **cause)
{
	struct stat	st;
	int		fd, err;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		xasprintf(cause, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0) {
		close(fd);
		return 1;
	}
	err = errno;
	close(fd);
	/* A full backlog (EAGAIN) still means somebody listens. */
	if (err == EAGAIN || err == EINPROGRESS)
		return 1;
	if (lstat(path, &st) == -1) {
		if (errno == ENOENT)
			return 0;
		xasprintf(cause, "cannot check %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		xasprintf(cause, "%s exists and is not a socket; not replacing "
		    "it", path);
		return -1;
	}
	if (err != ECONNREFUSED) {
		xasprintf(cause, "cannot connect to %s to check for a running "
		    "mmsyncd: %s", path, strerror(err));
		return -1;
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		xasprintf(cause, "cannot remove the stale socket %s: %s", path,
		    strerror(errno));
		return -1;
	}
	log_info("removed the stale socket %s", path);
	return 0;
}

static int
control_parent_dir(const char *path, char **cause)
{
	char		*dir, *slash;
	struct stat	 st;
	int		 rc = 0;

	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir) {
		free(dir);
		return 0;
	}
	*slash = '\0';
	if (stat(dir, &st) == -1) {
		if (errno != ENOENT || dir_make(dir, 0755) == -1) {
			xasprintf(cause, "cannot create %s: %s", dir,
			    strerror(errno));
			rc = -1;
		}
	} else if (!S_ISDIR(st.st_mode)) {
		xasprintf(cause, "%s is not a directory", dir);
		rc = -1;
	}
	free(dir);
	return rc;
}

static void
control_set_group(const char *path, const char *group)
{
	struct group	*gr;
	char		*end;
	unsigned long	 n;
	gid_t		 gid;

	errno = 0;
	if ((gr = getgrnam(group)) != NULL)
		gid = gr->gr_gid;
	else {
		errno = 0;
		n = strtoul(group, &end, 10);
		if (*group == '\0' || *end != '\0' || errno != 0 ||
		    n > (unsigned long)INT_MAX) {
			log_warnx("socket_group %s: no such group; %s keeps "
			    "its group", group, path);
			return;
		}
		gid = (gid_t)n;
	}
	if (chown(path, (uid_t)-1, gid) == -1)
		log_warn("socket_group %s: cannot change the group of %s",
		    group, path);
}

struct control *
control_new(struct event_base *base, struct engine *engine,
    const struct config *config, char **cause)
{
	struct control		*c;
	struct sockaddr_un	 sun;
	struct stat		 st;
	const char		*path = config->status_socket;
	mode_t			 old, mode;
	int			 fd;

	if (path == NULL || *path == '\0') {
		xasprintf(cause, "no status_socket configured");
		return NULL;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		xasprintf(cause, "status socket path too long (%zu bytes, at "
		    "most %zu): %s", strlen(path), sizeof sun.sun_path - 1,
		    path);
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path));

	switch (control_probe(path, &sun, cause)) {
	case 1:
		xasprintf(cause, "another mmsyncd is running on %s", path);
		return NULL;
	case -1:
		return NULL;
	}
	if (control_parent_dir(path, cause) == -1)
		return NULL;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1) {
		xasprintf(cause, "socket: %s", strerror(errno));
		return NULL;
	}
	/* Nobody may connect before the mode and group are right. */
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		umask(old);
		xasprintf(cause, "cannot bind %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	umask(old);
	if (stat(path, &st) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	mode = config->socket_mode != 0 ? config->socket_mode :
	    CONTROL_DEFAULT_MODE;
	if (config->socket_group != NULL)
		control_set_group(path, config->socket_group);
	if (chmod(path, mode & 07777) == -1) {
		xasprintf(cause, "cannot chmod %s: %s", path, strerror(errno));
		unlink(path);
		close(fd);
		return NULL;
	}
	if (listen(fd, CONTROL_BACKLOG) == -1) {
		xasprintf(cause, "cannot listen on %s: %s", path,
		    strerror(errno));
		unlink(path);
		close(fd);
		return NULL;
	}

	c = xcalloc(1, sizeof *c);
	c->base = base;
	c->engine = engine;
	c->path = xstrdup(path);
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	LIST_INIT(&c->clients);
	/* Backlog 0: the socket is listening already. */
	c->listener = evconnlistener_new(base, control_on_accept, c,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	c->resume = evtimer_new(base, control_on_resume, c);
	if (c->listener == NULL || c->resume == NULL) {
		xasprintf(cause, "cannot serve %s", path);
		if (c->listener == NULL)
			close(fd);
		control_free(c);	/* unlinks PATH */
		return NULL;
	}
	evconnlistener_set_error_cb(c->listener, control_on_accept_error);
	log_debug("control: listening on %s (mode %04o)", path,
	    (unsigned)(mode & 07777));
	return c;
}

void
control_set_engine(struct control *c, struct engine *engine)
{
	c->engine = engine;
}

void
control_free(struct control *c)
{
	struct stat	st;

	if (c == NULL)
		return;
	while (!LIST_EMPTY(&c->clients))
		client_free(LIST_FIRST(&c->clients));
	/* Remove the path only while it is still the socket we bound: a
	 * second daemon may have replaced it. */
	if (stat(c->path, &st) == 0 &&
	    S_ISSOCK(st.st_mode) && st.st_dev == c->dev && st.st_ino == c->ino)
		unlink(c->path);
	if (c->listener != NULL)
		evconnlistener_free(c->listener);
	if (c->resume != NULL)
		event_free(c->resume);
	free(c->path);
	free(c);
}
