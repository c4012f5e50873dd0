/*
 * main.c: flags, configuration, the loop, signals, reload and stop.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "mmsyncd.h"

#define DEFAULT_CONFIG	SYSCONFDIR "/mmsyncd/mmsyncd.yaml"
/* SIGTERM: how long the request in flight may take to finish. */
#define STOP_GRACE_MS	5000

uint64_t	 mms_start_ms;

struct daemon {
	const char		*config_path;
	struct config		*config;
	struct event_base	*base;
	struct engine		*engine;
	struct control		*control;
	bool			 stopping;
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: mmsyncd [-c FILE] [-t] [-V] [-h]\n"
	    "  -c, --config FILE   configuration (default %s)\n"
	    "  -t, --check-config  validate the configuration and exit\n"
	    "  -V, --version       print the version and exit\n"
	    "  -h, --help          print this help and exit\n",
	    DEFAULT_CONFIG);
}

static void
print_errors(const struct config_errors *errs)
{
	size_t	i;

	for (i = 0; i < errs->n; i++)
		fprintf(stderr, "%s\n", errs->msgs[i]);
}

/* Everything secret in CF goes to the log filter before any logging. */
static void
register_secrets(const struct config *cf)
{
	const struct target_conf	*tc;
	const char			*p;
	size_t				 i;

	for (i = 0; i < cf->ntargets; i++) {
		tc = cf->targets[i];
		log_add_secret(tc->token);
		if (tc->webhook_url != NULL) {
			log_add_secret(tc->webhook_url);
			/* The hook id alone is the secret part. */
			if ((p = strrchr(tc->webhook_url, '/')) != NULL)
				log_add_secret(p + 1);
		}
	}
}

static void
on_stopped(void *arg)
{
	struct daemon	*d = arg;

	event_base_loopexit(d->base, NULL);
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon	*d = arg;

	(void)what;
	if (d->stopping)
		return;
	d->stopping = true;
	log_info("%s: stopping", strsignal((int)sig));
	notify_stopping();
	engine_stop(d->engine, STOP_GRACE_MS, on_stopped, d);
}

static void
on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon		*d = arg;
	struct config_errors	 errs = { NULL, 0 };
	struct config		*cf;
	char			*cause = NULL;
	size_t			 i;

	(void)sig;
	(void)what;
	if (d->stopping)
		return;
	notify_reloading();
	log_info("reloading %s", d->config_path);
	if ((cf = config_load(d->config_path, &errs)) == NULL) {
		for (i = 0; i < errs.n; i++)
			log_error("%s", errs.msgs[i]);
		log_error("reload failed: keeping the running configuration");
		config_errors_free(&errs);
		notify_ready();
		return;
	}
	register_secrets(cf);
	if (strcmp(cf->spool_dir, d->config->spool_dir) != 0 ||
	    strcmp(cf->status_socket, d->config->status_socket) != 0)
		log_warnx("spool_dir and status_socket changes take effect "
		    "at the next restart");
	if (engine_reconfigure(d->engine, cf, &cause) == -1) {
		log_error("reload failed: %s; keeping the running "
		    "configuration", cause);
		free(cause);
		config_free(cf);
		notify_ready();
		return;
	}
	log_set_level(cf->log_level);
	config_free(d->config);
	d->config = cf;
	log_info("reloaded: %zu target%s", cf->ntargets,
	    cf->ntargets == 1 ? "" : "s");
	notify_ready();
}

static void
on_libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN)
		log_warnx("libevent: %s", msg);
	else
		log_debug("libevent: %s", msg);
}

int
main(int argc, char **argv)
{
	static const struct option	 longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon			 d = { DEFAULT_CONFIG, NULL, NULL,
					    NULL, NULL, false };
	struct config_errors		 errs = { NULL, 0 };
	struct event			*sigs[3];
	char				*cause = NULL;
	bool				 check = false;
	int				 ch, i;

	mms_start_ms = now_ms();
	log_init("mmsyncd");
	while ((ch = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			d.config_path = optarg;
			break;
		case 't':
			check = true;
			break;
		case 'V':
			printf("mmsyncd %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	if ((d.config = config_load(d.config_path, &errs)) == NULL) {
		print_errors(&errs);
		config_errors_free(&errs);
		return 1;
	}
	config_errors_free(&errs);
	if (check) {
		printf("%s: configuration OK (%zu target%s)\n", d.config_path,
		    d.config->ntargets, d.config->ntargets == 1 ? "" : "s");
		config_free(d.config);
		return 0;
	}
	register_secrets(d.config);
	log_set_level(d.config->log_level);
	event_set_log_callback(on_libevent_log);
	signal(SIGPIPE, SIG_IGN);

	if ((d.base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	if ((d.control = control_new(d.base, NULL, d.config, &cause)) == NULL)
		fatalx("%s", cause);
	if ((d.engine = engine_new(d.base, d.config, &cause)) == NULL)
		fatalx("%s", cause);
	control_set_engine(d.control, d.engine);
	sigs[0] = evsignal_new(d.base, SIGTERM, on_stop_signal, &d);
	sigs[1] = evsignal_new(d.base, SIGINT, on_stop_signal, &d);
	sigs[2] = evsignal_new(d.base, SIGHUP, on_reload_signal, &d);
	for (i = 0; i < 3; i++)
		event_add(sigs[i], NULL);

	notify_init(d.base, d.engine);
	log_info("mmsyncd %s started: %zu target%s, spool %s, socket %s",
	    PACKAGE_VERSION, d.config->ntargets,
	    d.config->ntargets == 1 ? "" : "s", d.config->spool_dir,
	    d.config->status_socket);
	notify_ready();

	event_base_dispatch(d.base);

	log_info("stopped");
	notify_free();
	control_free(d.control);
	engine_free(d.engine);
	for (i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_base_free(d.base);
	config_free(d.config);
	log_clear_secrets();
	libevent_global_shutdown();
	return 0;
}
