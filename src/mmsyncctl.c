/*
 * mmsyncctl: talk to mmsyncd over its status socket.
 *
 *   mmsyncctl [-s SOCKET | -c CONFIG] [--json] COMMAND [ARG]
 *
 * One command per connection: send the line, read the answer until the
 * daemon closes (smtpctl.c keeps its commands in a table; so does this).
 * Exit 0 on success, 1 on failure with one line on stderr, 2 on usage
 * errors.
 *
 * The socket comes from -s, else from the status_socket of the
 * configuration (-c, or the default one).  Only that one key is read
 * from the YAML: an operator who may use the socket need not be able to
 * read token files or know the daemon's environment.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <yajl/yajl_tree.h>
#include <yaml.h>

#include "mmsyncd.h"

#define DEFAULT_CONFIG		SYSCONFDIR "/mmsyncd/mmsyncd.yaml"
#define FALLBACK_SOCKET		"/run/mmsyncd/mmsyncd.sock"
#define CTL_TIMEOUT_MS		10000
#define CTL_MAX_ANSWER		(16u * 1024 * 1024)
#define CTL_CONFIG_MAX		(1024 * 1024)
#define TABLE_WIDTH		120

enum exit_code {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
};

struct ctl;
typedef int	(*ctl_fn)(struct ctl *, const char *answer, size_t len);

struct ctl {
	const char	*socket;
	const char	*command;
	const char	*arg;
	bool		 json;
};

static int	show_status(struct ctl *, const char *, size_t);
static int	show_raw(struct ctl *, const char *, size_t);
static int	show_ok(struct ctl *, const char *, size_t);

static const struct ctl_command {
	const char	*name;
	bool		 takes_target;
	bool		 json_ok;	/* --json makes sense */
	ctl_fn		 show;
	const char	*done;		/* "TARGET: <done>" on success */
} ctl_commands[] = {
	{ "status", false, true, show_status, NULL },
	{ "metrics", false, false, show_raw, NULL },
	{ "pause", true, true, show_ok, "paused" },
	{ "resume", true, true, show_ok, "resumed" },
	{ "retry", true, true, show_ok, NULL },
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: mmsyncctl [-s SOCKET | -c CONFIG] COMMAND [ARG]\n"
	    "commands:\n"
	    "  status [--json]   targets, queues and counters (--json: as "
	    "sent by mmsyncd)\n"
	    "  metrics           Prometheus text exposition\n"
	    "  pause TARGET      stop sending to TARGET\n"
	    "  resume TARGET     start sending again (also retries a blocked "
	    "target now)\n"
	    "  retry TARGET      move TARGET's failed batches back to "
	    "incoming/\n"
	    "options:\n"
	    "  -s, --socket SOCKET  the status socket\n"
	    "  -c, --config FILE    take status_socket from FILE (default "
	    "%s)\n"
	    "  -j, --json           print the daemon's JSON answer as is\n"
	    "  -h, --help           print this help and exit\n"
	    "  -V, --version        print the version and exit\n",
	    DEFAULT_CONFIG);
}

static void MMS_PRINTF(1, 2)
fail(const char *fmt, ...)
{
	va_list	ap;

	fputs("mmsyncctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* --------------------------------------------------- finding the socket */

/* Expand ${NAME} like the daemon does; NULL if a variable is unset. */
static char *
expand_env(const char *s)
{
	struct buf	 b;
	const char	*end, *v;
	char		*name;

	buf_init(&b);
	buf_addstr(&b, "");
	while (*s != '\0') {
		if (s[0] == '$' && s[1] == '{' &&
		    (end = strchr(s + 2, '}')) != NULL) {
			name = xstrndup(s + 2, (size_t)(end - s - 2));
			v = getenv(name);
			free(name);
			if (v == NULL) {
				buf_free(&b);
				return NULL;
			}
			buf_addstr(&b, v);
			s = end + 1;
		} else
			buf_addc(&b, *s++);
	}
	return b.data;
}

/*
 * The top-level status_socket of the YAML file PATH.  0 and *out, or -1
 * with *cause.
 */
static int
config_socket(const char *path, char **out, char **cause)
{
	yaml_parser_t	 parser;
	yaml_event_t	 ev;
	char		*data = NULL, *value = NULL;
	size_t		 len;
	int		 depth = 0, rc = -1;
	bool		 key = true, want = false, done = false;

	*out = NULL;
	if (file_read_small(path, CTL_CONFIG_MAX, &data, &len) == -1) {
		xasprintf(cause, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_string(&parser, (const unsigned char *)data,
	    len);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			xasprintf(cause, "%s:%zu:%zu: %s", path,
			    parser.problem_mark.line + 1,
			    parser.problem_mark.column + 1,
			    parser.problem != NULL ? parser.problem :
			    "invalid YAML");
			goto out;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
		case YAML_DOCUMENT_END_EVENT:
			done = true;
			break;
		case YAML_MAPPING_START_EVENT:
		case YAML_SEQUENCE_START_EVENT:
			if (depth == 1)
				key = true, want = false;	/* a value */
			depth++;
			break;
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT:
			depth--;
			if (depth == 0)
				done = true;
			break;
		case YAML_ALIAS_EVENT:
			if (depth == 1)
				key = !key, want = false;
			break;
		case YAML_SCALAR_EVENT:
			if (depth != 1)
				break;
			if (key) {
				want = strcmp((const char *)ev.data.scalar.value,
				    "status_socket") == 0;
				key = false;
				break;
			}
			if (want && value == NULL)
				value = xstrdup(
				    (const char *)ev.data.scalar.value);
			key = true;
			want = false;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	if (value == NULL || *value == '\0') {
		xasprintf(cause, "%s: no status_socket", path);
		goto out;
	}
	if ((*out = expand_env(value)) == NULL) {
		xasprintf(cause, "%s: status_socket uses an unset environment "
		    "variable", path);
		goto out;
	}
	rc = 0;
out:
	yaml_parser_delete(&parser);
	free(value);
	free(data);
	return rc;
}

/* ------------------------------------------------------------ talking */

static int
deadline_left(uint64_t deadline)
{
	uint64_t	now = now_ms();

	return now >= deadline ? 0 : (int)(deadline - now);
}

/* A hint for a failed connect. */
static const char *
connect_hint(const char *path, int err, char *buf, size_t size)
{
	struct stat	 st;
	struct group	*gr;

	switch (err) {
	case ENOENT:
	case ECONNREFUSED:
		return " (is mmsyncd running?)";
	case EACCES:
	case EPERM:
		if (stat(path, &st) == 0 &&
		    (gr = getgrgid(st.st_gid)) != NULL) {
			snprintf(buf, size, " (the socket belongs to group "
			    "%s: are you a member of it?)", gr->gr_name);
			return buf;
		}
		return " (are you in the socket's group?)";
	default:
		return "";
	}
}

/* Send LINE, read the whole answer.  0, or -1 after saying why. */
static int
exchange(const char *path, const char *line, struct buf *answer)
{
	struct sockaddr_un	 sun;
	struct timeval		 tv = { CTL_TIMEOUT_MS / 1000, 0 };
	struct pollfd		 pfd;
	uint64_t		 deadline = now_ms() + CTL_TIMEOUT_MS;
	size_t			 off = 0, len = strlen(line);
	ssize_t			 n;
	char			 hint[256], chunk[65536];
	int			 fd, rc, err;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		fail("cannot connect to %s: the path is too long for a socket",
		    path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		fail("socket: %s", strerror(errno));
		return -1;
	}
	/* A Unix connect waits for backlog room at most this long. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		err = errno;
		fail("cannot connect to %s: %s%s", path, strerror(err),
		    connect_hint(path, err, hint, sizeof hint));
		close(fd);
		return -1;
	}

	pfd.fd = fd;
	while (off < len) {
		pfd.events = POLLOUT;
		if ((rc = poll(&pfd, 1, deadline_left(deadline))) == -1 &&
		    errno == EINTR)
			continue;
		if (rc <= 0) {
			fail("%s: %s", path, rc == 0 ? "timed out sending the "
			    "command" : strerror(errno));
			close(fd);
			return -1;
		}
		n = send(fd, line + off, len - off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			fail("%s: cannot send the command: %s", path,
			    strerror(errno));
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	for (;;) {
		pfd.events = POLLIN;
		if ((rc = poll(&pfd, 1, deadline_left(deadline))) == -1 &&
		    errno == EINTR)
			continue;
		if (rc <= 0) {
			fail("%s: %s", path, rc == 0 ? "no answer from mmsyncd "
			    "within 10 s" : strerror(errno));
			close(fd);
			return -1;
		}
		n = recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			fail("%s: cannot read the answer: %s", path,
			    strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		if (answer->len + (size_t)n > CTL_MAX_ANSWER) {
			fail("%s: the answer is larger than %u bytes; refused",
			    path, CTL_MAX_ANSWER);
			close(fd);
			return -1;
		}
		buf_add(answer, chunk, (size_t)n);
	}
	close(fd);
	if (answer->len == 0) {
		fail("%s: mmsyncd closed the connection without an answer",
		    path);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ answers */

static yajl_val
parse_answer(const char *answer)
{
	char		 err[256];
	yajl_val	 v;

	if ((v = yajl_tree_parse(answer, err, sizeof err)) == NULL ||
	    !YAJL_IS_OBJECT(v)) {
		fail("unexpected answer from mmsyncd: %.200s", answer);
		yajl_tree_free(v);
		return NULL;
	}
	return v;
}

static yajl_val
field(yajl_val obj, const char *name)
{
	const char	*path[] = { name, NULL };

	return yajl_tree_get(obj, path, yajl_t_any);
}

static int
show_raw(struct ctl *ctl, const char *answer, size_t len)
{
	(void)ctl;
	if (fwrite(answer, 1, len, stdout) != len || fflush(stdout) != 0) {
		fail("cannot write: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

static int
show_ok(struct ctl *ctl, const char *answer, size_t len)
{
	const struct ctl_command	*c;
	yajl_val			 v, ok, err, moved;
	int				 rc;
	long long			 n;

	if ((v = parse_answer(answer)) == NULL)
		return EXIT_FAIL;
	ok = field(v, "ok");
	if (ctl->json) {
		rc = show_raw(ctl, answer, len);
		if (rc == EXIT_OK && !YAJL_IS_TRUE(ok))
			rc = EXIT_FAIL;
		yajl_tree_free(v);
		return rc;
	}
	if (!YAJL_IS_TRUE(ok)) {
		err = field(v, "error");
		fail("%s", YAJL_IS_STRING(err) ? YAJL_GET_STRING(err) :
		    "the command failed");
		yajl_tree_free(v);
		return EXIT_FAIL;
	}
	for (c = ctl_commands; strcmp(c->name, ctl->command) != 0; c++)
		;
	if (c->done != NULL)
		printf("%s: %s\n", ctl->arg, c->done);
	else {
		moved = field(v, "moved");
		if (YAJL_IS_INTEGER(moved)) {
			n = YAJL_GET_INTEGER(moved);
			printf("%s: %lld failed batch%s moved back to "
			    "incoming/\n", ctl->arg, n, n == 1 ? "" : "es");
		} else
			printf("%s: failed batches moved back to incoming/\n",
			    ctl->arg);
	}
	yajl_tree_free(v);
	if (fflush(stdout) != 0) {
		fail("cannot write: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* Display width of a UTF-8 string, counting code points. */
static size_t
width(const char *s)
{
	size_t	n = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* Print S padded to W columns. */
static void
print_cell(const char *s, size_t w)
{
	size_t	n = width(s);

	fputs(s, stdout);
	for (; n < w; n++)
		fputc(' ', stdout);
}

/* A copy of S for a terminal: control characters become spaces, and at
 * most MAX columns, "..." marking a cut. */
static char *
fit(const char *s, size_t max)
{
	struct buf	b;
	size_t		cols = 0, total = width(s);
	bool		cut = total > max;

	buf_init(&b);
	buf_addstr(&b, "");
	if (cut)
		max = max > 3 ? max - 3 : 0;
	for (; *s != '\0'; s++) {
		if (((unsigned char)*s & 0xC0) != 0x80) {
			if (cut && cols == max)
				break;
			cols++;
		}
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			buf_addc(&b, ' ');
		else
			buf_addc(&b, *s);
	}
	if (cut)
		buf_addstr(&b, "...");
	return b.data;
}

static char *
number(yajl_val v)
{
	char	*s;

	if (YAJL_IS_INTEGER(v))
		xasprintf(&s, "%lld", YAJL_GET_INTEGER(v));
	else
		s = xstrdup("?");
	return s;
}

enum column {
	COL_TARGET,
	COL_STATE,
	COL_QUEUED,
	COL_SENT,
	COL_FAILED,
	COL_RETRIES,
	COL_ERROR,
	NCOLS
};

static int
show_status(struct ctl *ctl, const char *answer, size_t len)
{
	static const char *const head[NCOLS] = { "TARGET", "STATE", "QUEUED",
		"SENT", "FAILED", "RETRIES", "LAST ERROR" };
	yajl_val	  v, targets, t, x, rows;
	char		***cell;
	const char	 *name;
	size_t		  w[NCOLS], i, j, n, used;
	long long	  b, r;

	if (ctl->json)
		return show_raw(ctl, answer, len);
	if ((v = parse_answer(answer)) == NULL)
		return EXIT_FAIL;
	targets = field(v, "targets");
	if (!YAJL_IS_OBJECT(targets)) {
		x = field(v, "error");
		if (YAJL_IS_STRING(x))
			fail("%s", YAJL_GET_STRING(x));
		else
			fail("unexpected answer from mmsyncd: %.200s", answer);
		yajl_tree_free(v);
		return EXIT_FAIL;
	}
	n = YAJL_GET_OBJECT(targets)->len;
	cell = xcalloc(n, sizeof *cell);
	for (j = 0; j < NCOLS; j++)
		w[j] = strlen(head[j]);
	for (i = 0; i < n; i++) {
		name = YAJL_GET_OBJECT(targets)->keys[i];
		t = YAJL_GET_OBJECT(targets)->values[i];
		cell[i] = xcalloc(NCOLS, sizeof **cell);
		cell[i][COL_TARGET] = fit(name, 64);
		x = field(t, "state");
		cell[i][COL_STATE] = fit(YAJL_IS_STRING(x) ?
		    YAJL_GET_STRING(x) : "?", 32);
		x = field(t, "queued_batches");
		rows = field(t, "queued_rows");
		b = YAJL_IS_INTEGER(x) ? YAJL_GET_INTEGER(x) : 0;
		if (YAJL_IS_INTEGER(rows)) {
			r = YAJL_GET_INTEGER(rows);
			xasprintf(&cell[i][COL_QUEUED], "%lld batch%s / %lld "
			    "row%s", b, b == 1 ? "" : "es", r, r == 1 ? "" : "s");
		} else
			xasprintf(&cell[i][COL_QUEUED], "%lld batch%s", b,
			    b == 1 ? "" : "es");
		cell[i][COL_SENT] = number(field(t, "sent"));
		cell[i][COL_FAILED] = number(field(t, "failed"));
		cell[i][COL_RETRIES] = number(field(t, "retries"));
		for (j = 0; j < COL_ERROR; j++)
			if (width(cell[i][j]) > w[j])
				w[j] = width(cell[i][j]);
	}
	/* LAST ERROR gets what is left of TABLE_WIDTH columns. */
	used = 0;
	for (j = 0; j < COL_ERROR; j++)
		used += w[j] + 2;
	for (i = 0; i < n; i++) {
		x = field(YAJL_GET_OBJECT(targets)->values[i], "last_error");
		cell[i][COL_ERROR] = fit(YAJL_IS_STRING(x) &&
		    *YAJL_GET_STRING(x) != '\0' ? YAJL_GET_STRING(x) : "-",
		    used + 20 < TABLE_WIDTH ? TABLE_WIDTH - used : 20);
	}

	for (j = 0; j < NCOLS; j++) {
		if (j == COL_ERROR)
			fputs(head[j], stdout);
		else {
			print_cell(head[j], w[j]);
			fputs("  ", stdout);
		}
	}
	fputc('\n', stdout);
	for (i = 0; i < n; i++) {
		for (j = 0; j < NCOLS; j++) {
			if (j == COL_ERROR)
				fputs(cell[i][j], stdout);
			else {
				/* Numbers line up on the right. */
				if (j >= COL_SENT) {
					print_cell("", w[j] -
					    width(cell[i][j]));
					fputs(cell[i][j], stdout);
				} else
					print_cell(cell[i][j], w[j]);
				fputs("  ", stdout);
			}
			free(cell[i][j]);
		}
		fputc('\n', stdout);
		free(cell[i]);
	}
	free(cell);
	yajl_tree_free(v);
	if (fflush(stdout) != 0) {
		fail("cannot write: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* ---------------------------------------------------------------- main */

int
main(int argc, char **argv)
{
	static const struct option	 longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const struct ctl_command	*c;
	struct ctl			 ctl = { NULL, NULL, NULL, false };
	struct buf			 answer;
	const char			*config = NULL;
	char				*line, *sock = NULL, *cause = NULL;
	int				 ch, rc;
	size_t				 i;

	log_init("mmsyncctl");
	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt_long(argc, argv, "s:c:jhV", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 's':
			ctl.socket = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 'j':
			ctl.json = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("mmsyncctl %s\n", PACKAGE_VERSION);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (ctl.socket != NULL && config != NULL) {
		fail("-s and -c cannot be used together");
		return EXIT_USAGE;
	}
	if (argc == 0) {
		usage(stderr);
		return EXIT_USAGE;
	}
	ctl.command = argv[0];
	for (i = 0; i < sizeof ctl_commands / sizeof ctl_commands[0]; i++)
		if (strcmp(ctl_commands[i].name, ctl.command) == 0)
			break;
	if (i == sizeof ctl_commands / sizeof ctl_commands[0]) {
		fail("unknown command: %s (try mmsyncctl -h)", ctl.command);
		return EXIT_USAGE;
	}
	c = &ctl_commands[i];
	if (c->takes_target) {
		if (argc < 2) {
			fail("usage: mmsyncctl %s TARGET", c->name);
			return EXIT_USAGE;
		}
		ctl.arg = argv[1];
		if (*ctl.arg == '\0' || strpbrk(ctl.arg, " \t\r\n") != NULL) {
			fail("%s: not a target name", ctl.arg);
			return EXIT_USAGE;
		}
	}
	if (argc > (c->takes_target ? 2 : 1)) {
		fail("%s: unexpected argument: %s", c->name,
		    argv[c->takes_target ? 2 : 1]);
		return EXIT_USAGE;
	}
	if (ctl.json && !c->json_ok) {
		fail("--json does not apply to %s", c->name);
		return EXIT_USAGE;
	}

	if (ctl.socket == NULL) {
		if (config != NULL) {
			if (config_socket(config, &sock, &cause) == -1) {
				fail("%s", cause);
				free(cause);
				return EXIT_FAIL;
			}
		} else if (config_socket(DEFAULT_CONFIG, &sock, &cause) == -1) {
			free(cause);
			sock = xstrdup(FALLBACK_SOCKET);
		}
		ctl.socket = sock;
	}

	if (c->takes_target)
		xasprintf(&line, "%s %s\n", c->name, ctl.arg);
	else
		xasprintf(&line, "%s\n", c->name);
	buf_init(&answer);
	if (exchange(ctl.socket, line, &answer) == -1)
		rc = EXIT_FAIL;
	else
		rc = c->show(&ctl, answer.data, answer.len);
	buf_free(&answer);
	free(line);
	free(sock);
	return rc;
}
