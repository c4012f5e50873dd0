/*
 * fuzz_config: config_load() on the input as a file (a memfd, opened by
 * its /proc/self/fd path), with a few environment variables set for
 * ${NAME} and a token file and a CA file to point at.
 *
 * Checked: a refused configuration comes with at least one message, every
 * message starts with the file's path and is a C string without a newline,
 * there are at most 101 of them (100 and "too many problems"); an accepted
 * one has what the daemon relies on without checking again: a spool
 * directory, a socket path that fits a sockaddr_un, at least one target,
 * valid unique names, a compiled template or an attachment, digest_rows
 * from 1 to 1000 (above 1 for a header), a token (with a server URL and a
 * channel id or a channel template) or a webhook URL, sane durations.  Everything is freed
 * (LeakSanitizer watches).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE		/* memfd_create */
#endif

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmsyncd.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int	memfd = -1;
static char	path[64];
static char	tmpdir[] = "/tmp/fuzz_config.XXXXXX";

static void	fail(const char *, ...) MMS_PRINTF(1, 2) MMS_NORETURN;

static void
fail(const char *fmt, ...)
{
	va_list	ap;

	fprintf(stderr, "fuzz_config: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

static void
put_file(const char *name, const char *text, mode_t mode)
{
	char	p[256];
	int	fd;

	snprintf(p, sizeof p, "%s/%s", tmpdir, name);
	if ((fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode)) == -1 ||
	    write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		perror(p);
		abort();
	}
	close(fd);
}

static void
cleanup(void)
{
	char	p[256];

	snprintf(p, sizeof p, "%s/leads.token", tmpdir);
	unlink(p);
	snprintf(p, sizeof p, "%s/ca.pem", tmpdir);
	unlink(p);
	snprintf(p, sizeof p, "%s/empty.token", tmpdir);
	unlink(p);
	rmdir(tmpdir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_init("fuzz_config");
	log_set_level(LOG_LEVEL_ERROR);
	if ((memfd = memfd_create("fuzz_config", MFD_CLOEXEC)) == -1) {
		perror("memfd_create");
		abort();
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	atexit(cleanup);
	put_file("leads.token", "\n  tok3n-from-a-file  \nsecond line\n", 0600);
	put_file("empty.token", " \n", 0600);
	put_file("ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
	/* The seeds use these. */
	setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
	setenv("MMS_TOKEN", "abcdefghijklmnopqrstuvwxyz", 1);
	setenv("MMS_HOOK", "https://mm.example.com/hooks/"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxx", 1);
	setenv("MMS_SPOOL", "/var/spool/mmsyncd", 1);
	setenv("MMS_EMPTY", "", 1);
	setenv("MMS_WEIRD", "a\nb}${x}$${", 1);
	unsetenv("MMS_UNSET");
	return 0;
}

static int
valid_name(const char *s)
{
	size_t	i, n = strlen(s);

	if (n == 0 || n > MMS_MAX_TARGET_NAME)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return 0;
	return 1;
}

static int
is_url(const char *s)
{
	return s != NULL && (strncasecmp(s, "http://", 7) == 0 ||
	    strncasecmp(s, "https://", 8) == 0);
}

static void
check_config(const struct config *c)
{
	struct sockaddr_un	 sun;
	const struct target_conf *tc;
	size_t			 i, j;

	if (c->spool_dir == NULL || *c->spool_dir == '\0')
		fail("accepted without a spool_dir");
	if (c->status_socket == NULL || *c->status_socket == '\0' ||
	    strlen(c->status_socket) >= sizeof sun.sun_path)
		fail("accepted with a bad status_socket");
	if (c->ntargets == 0 || c->targets == NULL)
		fail("accepted without a target");
	if ((c->spool_mode & 0700) != 0700 || c->spool_mode > 07777 ||
	    (c->socket_mode & 0600) != 0600 || c->socket_mode > 07777)
		fail("accepted with modes %o %o", (unsigned)c->spool_mode,
		    (unsigned)c->socket_mode);
	if (log_level_parse("error") != LOG_LEVEL_ERROR ||
	    (c->log_level != LOG_LEVEL_ERROR &&
	    c->log_level != LOG_LEVEL_WARNING &&
	    c->log_level != LOG_LEVEL_INFO && c->log_level != LOG_LEVEL_DEBUG))
		fail("accepted with log level %d", (int)c->log_level);
	for (i = 0; i < c->ntargets; i++) {
		tc = c->targets[i];
		if (tc == NULL || tc->name == NULL || !valid_name(tc->name))
			fail("accepted a bad target name");
		for (j = 0; j < i; j++)
			if (strcmp(c->targets[j]->name, tc->name) == 0)
				fail("accepted target '%s' twice", tc->name);
		if (config_find_target(c, tc->name) != c->targets[i])
			fail("config_find_target(%s)", tc->name);
		if ((tc->template == NULL) != (tc->template_src == NULL) ||
		    (tc->template_src != NULL && *tc->template_src == '\0') ||
		    (tc->template == NULL && tc->attachment == NULL))
			fail("target '%s' accepted without a template or an "
			    "attachment", tc->name);
		if (tc->digest_rows < 1 || tc->digest_rows > 1000 ||
		    (tc->digest_header != NULL && tc->digest_rows < 2))
			fail("target '%s' accepted with digest_rows %u",
			    tc->name, tc->digest_rows);
		if (tc->auth == AUTH_TOKEN) {
			/* A channel with "{{" is a per-row template. */
			if (!is_url(tc->server_url) || tc->token == NULL ||
			    *tc->token == '\0' || tc->channel == NULL ||
			    (tc->channel_template == NULL &&
			    strlen(tc->channel) != MMS_ID_LEN) ||
			    (tc->channel_template != NULL &&
			    strstr(tc->channel, "{{") == NULL) ||
			    tc->webhook_url != NULL)
				fail("token target '%s' accepted incomplete",
				    tc->name);
			if (tc->server_url[strlen(tc->server_url) - 1] == '/')
				fail("server_url of '%s' ends in '/'",
				    tc->name);
		} else if (tc->auth == AUTH_WEBHOOK) {
			if (!is_url(tc->webhook_url) || tc->token != NULL ||
			    tc->server_url != NULL)
				fail("webhook target '%s' accepted incomplete",
				    tc->name);
		} else
			fail("target '%s' has auth %d", tc->name,
			    (int)tc->auth);
		if (tc->timeout_ms == 0 || tc->connect_timeout_ms == 0 ||
		    tc->backoff_min_ms == 0 || tc->blocked_retry_ms == 0 ||
		    tc->backoff_max_ms < tc->backoff_min_ms ||
		    tc->timeout_ms > INT32_MAX || tc->interval_ms > INT32_MAX ||
		    tc->connect_timeout_ms > INT32_MAX ||
		    tc->backoff_max_ms > INT32_MAX ||
		    tc->blocked_retry_ms > INT32_MAX)
			fail("target '%s' accepted with bad durations",
			    tc->name);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors	 errs = { NULL, 0 };
	struct config		*c, *copy;
	size_t			 done = 0, i, plen = strlen(path);
	ssize_t			 n;

	if (ftruncate(memfd, 0) == -1)
		abort();
	while (done < size) {
		if ((n = pwrite(memfd, data + done, size - done,
		    (off_t)done)) <= 0)
			abort();
		done += (size_t)n;
	}

	c = config_load(path, &errs);
	if (c == NULL && errs.n == 0)
		fail("refused without a message");
	if (c != NULL && errs.n != 0)
		fail("accepted with %zu messages, the first: %s", errs.n,
		    errs.msgs[0]);
	if (errs.n > 101)
		fail("%zu messages", errs.n);
	for (i = 0; i < errs.n; i++) {
		if (errs.msgs[i] == NULL ||
		    strncmp(errs.msgs[i], path, plen) != 0 ||
		    errs.msgs[i][plen] != ':')
			fail("message %zu does not start with the path: %s", i,
			    errs.msgs[i] ? errs.msgs[i] : "(null)");
		if (strchr(errs.msgs[i], '\n') != NULL)
			fail("message %zu has a newline: %s", i, errs.msgs[i]);
	}
	if (c != NULL) {
		check_config(c);
		copy = config_copy_spool(c);
		if (strcmp(copy->spool_dir, c->spool_dir) != 0 ||
		    copy->ntargets != 0)
			fail("config_copy_spool");
		config_free(copy);
	}
	config_free(c);
	config_errors_free(&errs);
	return 0;
}
