/*
 * A minimal TAP producer for the unit tests: one "ok N - what" or
 * "not ok N - what" line per check, "1..N" at the end.  The suite runner
 * counts these lines.
 */
#ifndef TAP_H
#define TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_count;
static int tap_failures;

static void __attribute__((format(printf, 4, 5)))
tap_check(int pass, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	tap_count++;
	if (!pass)
		tap_failures++;
	printf("%sok %d - ", pass ? "" : "not ", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!pass)
		printf("#   failed at %s:%d\n", file, line);
	fflush(stdout);
}

#define ok(cond, ...) tap_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* Compare two strings (NULL allowed) and show both on failure. */
#define is_str(got, want, ...) do {					\
	const char *tap_g_ = (got), *tap_w_ = (want);			\
	int tap_p_ = (tap_g_ == NULL || tap_w_ == NULL) ?		\
	    tap_g_ == tap_w_ : strcmp(tap_g_, tap_w_) == 0;		\
	tap_check(tap_p_, __FILE__, __LINE__, __VA_ARGS__);		\
	if (!tap_p_)							\
		printf("#   got:  \"%.300s\"\n#   want: \"%.300s\"\n",	\
		    tap_g_ ? tap_g_ : "(null)", tap_w_ ? tap_w_ : "(null)"); \
} while (0)

#define is_int(got, want, ...) do {					\
	long long tap_g_ = (long long)(got), tap_w_ = (long long)(want); \
	tap_check(tap_g_ == tap_w_, __FILE__, __LINE__, __VA_ARGS__);	\
	if (tap_g_ != tap_w_)						\
		printf("#   got:  %lld\n#   want: %lld\n", tap_g_, tap_w_); \
} while (0)

/* Print the plan; the exit status of the test program. */
static int
tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failures ? 1 : 0;
}

#endif
