/*
 * notify.c: READY, RELOADING, STOPPING, STATUS and the watchdog, for
 * systemd's Type=notify.  The watchdog is fed from a timer of the main
 * loop, so a loop that is stuck stops feeding it and systemd notices.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "mmsyncd.h"

/* How often STATUS= is refreshed. */
#define STATUS_EVERY_MS	2000

static struct engine	*notify_engine;
static struct event	*watchdog_ev;
static struct event	*status_ev;
static uint64_t		 status_last_ms;
static uint64_t		 status_last_sent;
static double		 status_rate;

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sd_notify(0, "WATCHDOG=1");
}

static void
on_status(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	notify_status();
}

static struct timeval
ms_to_tv(uint64_t ms)
{
	struct timeval	tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

void
notify_init(struct event_base *base, struct engine *e)
{
	uint64_t	usec;
	struct timeval	tv;

	notify_engine = e;
	if (getenv("NOTIFY_SOCKET") == NULL)
		return;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		/* Half the period, as sd_watchdog_enabled(3) advises. */
		tv = ms_to_tv(usec / 2000 > 0 ? usec / 2000 : 1);
		watchdog_ev = event_new(base, -1, EV_PERSIST, on_watchdog,
		    NULL);
		event_add(watchdog_ev, &tv);
		sd_notify(0, "WATCHDOG=1");
	}
	tv = ms_to_tv(STATUS_EVERY_MS);
	status_ev = event_new(base, -1, EV_PERSIST, on_status, NULL);
	event_add(status_ev, &tv);
	status_last_ms = now_ms();
}

void
notify_free(void)
{
	if (watchdog_ev != NULL)
		event_free(watchdog_ev);
	if (status_ev != NULL)
		event_free(status_ev);
	watchdog_ev = status_ev = NULL;
}

static uint64_t
monotonic_usec(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
notify_ready(void)
{
	sd_notify(0, "READY=1");
	notify_status();
}

void
notify_reloading(void)
{
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
	    monotonic_usec());
}

void
notify_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void
notify_status(void)
{
	struct target_stats	st;
	uint64_t		queued = 0, sent = 0, now = now_ms();
	size_t			i, n, blocked = 0;

	if (notify_engine == NULL || getenv("NOTIFY_SOCKET") == NULL)
		return;
	n = engine_ntargets(notify_engine);
	for (i = 0; i < n; i++) {
		engine_target_stats(notify_engine, i, &st);
		queued += st.queued_rows_known ? st.queued_rows :
		    st.queued_batches;
		sent += st.sent;
		blocked += st.state == TARGET_BLOCKED;
	}
	if (now > status_last_ms && sent >= status_last_sent) {
		status_rate = (double)(sent - status_last_sent) * 1000.0 /
		    (double)(now - status_last_ms);
		status_last_ms = now;
	}
	status_last_sent = sent;
	sd_notifyf(0, "STATUS=%zu target%s, %" PRIu64 " queued, %.1f msg/s"
	    "%s", n, n == 1 ? "" : "s", queued, status_rate,
	    blocked > 0 ? ", some blocked" : "");
}
