/*
 * log.c: one line per event on stderr.  Under journald (JOURNAL_STREAM
 * set) each line starts with a <N> syslog priority so the journal keeps
 * the level; otherwise a timestamp and the level are written.  Every line
 * passes through the secret filter: registered secrets never get out.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mmsyncd.h"

#define LOG_LINE_MAX	4096
#define LOG_MAX_SECRETS	256

static const char	*log_progname = "mmsyncd";
static enum log_level	 log_threshold = LOG_LEVEL_INFO;
static bool		 log_journal;
static char		*log_secrets[LOG_MAX_SECRETS];
static size_t		 log_nsecrets;

void
log_init(const char *progname)
{
	log_progname = progname;
	log_journal = getenv("JOURNAL_STREAM") != NULL;
}

void
log_set_level(enum log_level level)
{
	log_threshold = level;
}

int
log_level_parse(const char *s)
{
	if (strcmp(s, "error") == 0)
		return LOG_LEVEL_ERROR;
	if (strcmp(s, "warning") == 0)
		return LOG_LEVEL_WARNING;
	if (strcmp(s, "info") == 0)
		return LOG_LEVEL_INFO;
	if (strcmp(s, "debug") == 0)
		return LOG_LEVEL_DEBUG;
	return -1;
}

void
log_add_secret(const char *s)
{
	size_t	i;

	/* Even a short secret is hidden, at the price of odd log lines. */
	if (s == NULL || *s == '\0' || log_nsecrets == LOG_MAX_SECRETS)
		return;
	for (i = 0; i < log_nsecrets; i++)
		if (strcmp(log_secrets[i], s) == 0)
			return;
	log_secrets[log_nsecrets++] = xstrdup(s);
}

void
log_clear_secrets(void)
{
	while (log_nsecrets > 0)
		free(log_secrets[--log_nsecrets]);
}

static void
redact(char *line, size_t size)
{
	static const char	 mask[] = "[redacted]";
	size_t			 i, slen, mlen = sizeof mask - 1, tail;
	char			*p;

	for (i = 0; i < log_nsecrets; i++) {
		slen = strlen(log_secrets[i]);
		while ((p = strstr(line, log_secrets[i])) != NULL) {
			tail = strlen(p + slen) + 1;
			if ((size_t)(p - line) + mlen + tail > size)
				tail = size - (size_t)(p - line) - mlen;
			memmove(p + mlen, p + slen, tail);
			memcpy(p, mask, mlen);
			line[size - 1] = '\0';
		}
	}
}

static void MMS_PRINTF(2, 0)
log_vwrite(enum log_level level, const char *fmt, va_list ap,
    const char *suffix)
{
	static const char	*names[] = {
		[LOG_LEVEL_ERROR] = "error", [LOG_LEVEL_WARNING] = "warning",
		[LOG_LEVEL_INFO] = "info", [LOG_LEVEL_DEBUG] = "debug",
	};
	char			 line[LOG_LINE_MAX], stamp[32];
	size_t			 n;
	int			 saved = errno;

	if (level > log_threshold)
		return;
	vsnprintf(line, sizeof line, fmt, ap);
	if (suffix != NULL) {
		n = strlen(line);
		snprintf(line + n, sizeof line - n, ": %s", suffix);
	}
	/* One event, one line: a newline from outside must not forge one. */
	for (n = 0; line[n] != '\0'; n++)
		if (line[n] == '\n' || line[n] == '\r')
			line[n] = ' ';
	redact(line, sizeof line);
	if (log_journal)
		fprintf(stderr, "<%d>%s\n", (int)level, line);
	else {
		format_rfc3339(wall_ms(), stamp);
		fprintf(stderr, "%s %s[%ld] %s: %s\n", stamp, log_progname,
		    (long)getpid(), names[level], line);
	}
	fflush(stderr);
	errno = saved;
}

#define LOG_FN(name, level, suffix)					\
void									\
name(const char *fmt, ...)						\
{									\
	va_list	ap;							\
	const char *sfx = (suffix);					\
									\
	va_start(ap, fmt);						\
	log_vwrite(level, fmt, ap, sfx);				\
	va_end(ap);							\
}

LOG_FN(log_error, LOG_LEVEL_ERROR, NULL)
LOG_FN(log_warn, LOG_LEVEL_WARNING, strerror(errno))
LOG_FN(log_warnx, LOG_LEVEL_WARNING, NULL)
LOG_FN(log_info, LOG_LEVEL_INFO, NULL)
LOG_FN(log_debug, LOG_LEVEL_DEBUG, NULL)

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}

void
log_redact_url(const char *url, char *out, size_t outsz)
{
	const char	*scheme, *host, *path, *at;
	size_t		 n;

	/* Keep scheme://host[:port] and the first path segment of a hook
	 * URL (/hooks/); the rest (the hook id, query, userinfo) is secret. */
	if ((scheme = strstr(url, "://")) == NULL) {
		snprintf(out, outsz, "[redacted]");
		return;
	}
	host = scheme + 3;
	path = host + strcspn(host, "/?#");
	at = memchr(host, '@', (size_t)(path - host));
	if (at != NULL)
		host = at + 1;
	n = (size_t)(scheme + 3 - url);
	snprintf(out, outsz, "%.*s%.*s%s", (int)n, url, (int)(path - host),
	    host, *path != '\0' ? "/[redacted]" : "");
}
