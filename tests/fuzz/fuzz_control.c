/*
 * fuzz_control: the status socket's command language, control_answer(),
 * against a real engine (engine_new on a fresh spool in a temporary
 * directory, three targets, a libevent base that never runs: nothing is
 * sent anywhere).
 *
 * Input: one or more command lines separated by '\n' (the socket reads
 * one line per client; several lines let the fuzzer chain pause, resume
 * and retry).  A line is passed without its '\n', NULs and all, as
 * client_try_line() would.
 *
 * Checked for each answer: it ends with exactly one '\n'; "metrics"
 * answers in the Prometheus text format (every line a "# HELP", "# TYPE"
 * or "name[{labels}] value" line); everything else is one line of JSON
 * that parses as an object with valid UTF-8; an error quotes at most a
 * bounded part of the command; "ok": true only for a known command and
 * target.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "mmsyncd.h"

/* Defined by main.c in the daemon. */
uint64_t	mms_start_ms;

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define LINE_MAX_BYTES	1024	/* control.c CONTROL_MAX_LINE */
#define ANSWER_MAX	(64 * 1024)

static char			 tmpdir[] = "/tmp/fuzz_control.XXXXXX";
static struct event_base	*base;
static struct config		*conf;
static struct engine		*engine;

static const char *const targets[] = { "leads", "alerts", "a-B_9" };

static void	fail(const char *, const char *, size_t, const struct buf *)
		    MMS_NORETURN;

static void
fail(const char *what, const char *line, size_t len, const struct buf *out)
{
	size_t	i;

	fprintf(stderr, "fuzz_control: %s\n  line (%zu bytes): ", what, len);
	for (i = 0; i < len && i < 200; i++)
		fprintf(stderr, (unsigned char)line[i] >= 0x20 &&
		    (unsigned char)line[i] < 0x7f ? "%c" : "\\x%02x",
		    (unsigned char)line[i]);
	fprintf(stderr, "\n  answer: %s\n", out ? buf_cstr(out) : "");
	abort();
}

static void
rm_rf(const char *p)
{
	struct stat	 st;
	struct dirent	*de;
	DIR		*d;
	char		 sub[1024];

	if (lstat(p, &st) == -1)
		return;
	if (S_ISDIR(st.st_mode) && (d = opendir(p)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(sub, sizeof sub, "%s/%s", p, de->d_name);
			rm_rf(sub);
		}
		closedir(d);
		rmdir(p);
	} else
		unlink(p);
}

static void
cleanup(void)
{
	engine_free(engine);
	engine = NULL;
	config_free(conf);
	conf = NULL;
	if (base != NULL)
		event_base_free(base);
	base = NULL;
	rm_rf(tmpdir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct config_errors	 errs = { NULL, 0 };
	char			 path[512], *yaml, *cause = NULL;
	size_t			 i;
	int			 fd;

	(void)argc;
	(void)argv;
	log_init("fuzz_control");
	log_set_level(LOG_LEVEL_ERROR);
	mms_start_ms = now_ms();
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(cleanup);

	xasprintf(&yaml,
	    "spool_dir: %s/spool\n"
	    "status_socket: %s/mmsyncd.sock\n"
	    "targets:\n"
	    "  leads:\n"
	    "    auth: token\n"
	    "    server_url: http://127.0.0.1:9\n"
	    "    token: fuzz-token\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n"
	    "    template: \"New lead: {{name}}\"\n"
	    "  alerts:\n"
	    "    auth: webhook\n"
	    "    webhook_url: http://127.0.0.1:9/hooks/xxxxxxxxxxxxxxxxxxxxxxxxxx\n"
	    "    template: \"{{audience}} grew by {{count}}\"\n"
	    "  a-B_9:\n"
	    "    auth: webhook\n"
	    "    webhook_url: http://127.0.0.1:9/hooks/yyyyyyyyyyyyyyyyyyyyyyyyyy\n"
	    "    template: x\n", tmpdir, tmpdir);
	snprintf(path, sizeof path, "%s/mmsyncd.yaml", tmpdir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) {
		perror(path);
		abort();
	}
	close(fd);
	free(yaml);
	if ((conf = config_load(path, &errs)) == NULL) {
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		abort();
	}
	config_errors_free(&errs);
	if ((base = event_base_new()) == NULL)
		abort();
	if ((engine = engine_new(base, conf, &cause)) == NULL) {
		fprintf(stderr, "engine_new: %s\n", cause);
		abort();
	}
	return 0;
}

static int
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
	    c == '\f';
}

/* The words of LINE as control.c splits them (at most 3). */
static size_t
words(const char *line, size_t len, const char *w[3], size_t wl[3])
{
	size_t	i = 0, n = 0, s;

	while (i < len && n < 3) {
		while (i < len && is_space((unsigned char)line[i]))
			i++;
		if (i == len)
			break;
		s = i;
		while (i < len && !is_space((unsigned char)line[i]))
			i++;
		w[n] = line + s;
		wl[n++] = i - s;
	}
	while (i < len && is_space((unsigned char)line[i]))
		i++;
	if (i < len)
		n = 4;		/* more than three */
	return n;
}

static int
word_is(const char *w, size_t wl, const char *s)
{
	return wl == strlen(s) && memcmp(w, s, wl) == 0;
}

static int
known_target(const char *w, size_t wl)
{
	size_t	i;

	for (i = 0; i < sizeof targets / sizeof targets[0]; i++)
		if (word_is(w, wl, targets[i]))
			return 1;
	return 0;
}

static void
check_metrics(const char *line, size_t len, const struct buf *out)
{
	const char	*p = out->data, *nl, *sp;

	while (*p != '\0') {
		if ((nl = strchr(p, '\n')) == NULL)
			fail("metrics: last line without newline", line, len,
			    out);
		if (strncmp(p, "# HELP ", 7) != 0 &&
		    strncmp(p, "# TYPE ", 7) != 0) {
			if (!(*p >= 'a' && *p <= 'z'))
				fail("metrics: bad sample line", line, len,
				    out);
			sp = memrchr(p, ' ', (size_t)(nl - p));
			if (sp == NULL || sp + 1 == nl ||
			    strspn(sp + 1, "0123456789") != (size_t)(nl - sp - 1))
				fail("metrics: bad sample value", line, len,
				    out);
		}
		p = nl + 1;
	}
}

static void
check_answer(const char *line, size_t len, const struct buf *out)
{
	const char	*w[3];
	size_t		 wl[3], nw;
	yajl_val	 v, ok, err;
	char		 errbuf[256];
	static const char *ok_path[] = { "ok", NULL };
	static const char *err_path[] = { "error", NULL };
	int		 is_ok;

	if (out->data == NULL || out->len == 0 ||
	    out->data[out->len - 1] != '\n')
		fail("answer does not end with a newline", line, len, out);
	if (strlen(out->data) != out->len)
		fail("answer holds a NUL", line, len, out);
	if (out->len > ANSWER_MAX)
		fail("answer too long", line, len, out);
	nw = words(line, len, w, wl);
	if (nw == 1 && word_is(w[0], wl[0], "metrics")) {
		check_metrics(line, len, out);
		return;
	}
	if (strchr(out->data, '\n') != out->data + out->len - 1)
		fail("answer of more than one line", line, len, out);
	if ((v = yajl_tree_parse(out->data, errbuf, sizeof errbuf)) == NULL ||
	    !YAJL_IS_OBJECT(v))
		fail("answer is not a JSON object", line, len, out);
	if (nw == 1 && word_is(w[0], wl[0], "status")) {
		if (yajl_tree_get(v, (const char *[]){ "targets", NULL },
		    yajl_t_object) == NULL)
			fail("status without targets", line, len, out);
		yajl_tree_free(v);
		return;
	}
	ok = yajl_tree_get(v, ok_path, yajl_t_any);
	if (ok == NULL || !(YAJL_IS_TRUE(ok) || YAJL_IS_FALSE(ok)))
		fail("answer without \"ok\"", line, len, out);
	is_ok = YAJL_IS_TRUE(ok);
	if (is_ok != (nw == 2 && known_target(w[1], wl[1]) &&
	    (word_is(w[0], wl[0], "pause") || word_is(w[0], wl[0], "resume") ||
	    word_is(w[0], wl[0], "retry"))))
		fail("\"ok\" is wrong", line, len, out);
	if (!is_ok) {
		err = yajl_tree_get(v, err_path, yajl_t_string);
		if (err == NULL || err->u.string == NULL ||
		    strlen(err->u.string) > 200 + 64 * 4)
			fail("error missing or too long", line, len, out);
	}
	yajl_tree_free(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*p = (const char *)data, *end = p + size, *nl;
	struct buf	 out;
	size_t		 len;
	char		*line;

	buf_init(&out);
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)((nl != NULL ? nl : end) - p);
		if (len <= LINE_MAX_BYTES) {	/* longer: refused unread */
			/* A copy of its own, so that ASan sees a read past
			 * the line. */
			line = xmalloc(len + 1);
			memcpy(line, p, len);
			line[len] = '\0';
			buf_reset(&out);
			control_answer(engine, line, len, &out);
			check_answer(line, len, &out);
			free(line);
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	buf_free(&out);
	return 0;
}
