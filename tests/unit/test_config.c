/*
 * test_config.c: the configuration loader.  Each case writes a file into a
 * temporary directory, loads it, and checks the result or the exact
 * "FILE:LINE:COLUMN: " place and the gist of each problem.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mmsyncd.h"
#include "tap.h"

static char			 dir[PATH_MAX - 64];
static char			 path[PATH_MAX];
static struct config		*C;
static struct config_errors	 E;

static void
write_file(const char *name, const char *text, size_t len, char *out)
{
	FILE	*f;

	snprintf(out, PATH_MAX, "%s/%s", dir, name);
	if ((f = fopen(out, "w")) == NULL ||
	    fwrite(text, 1, len, f) != len || fclose(f) != 0) {
		printf("Bail out! cannot write %s: %s\n", out, strerror(errno));
		exit(1);
	}
}

/* Load TEXT as a configuration file; results in C and E. */
static void
load_len(const char *text, size_t len)
{
	config_free(C);
	config_errors_free(&E);
	write_file("mmsyncd.yaml", text, len, path);
	C = config_load(path, &E);
}

static void
load(const char *text)
{
	load_len(text, strlen(text));
}

static void
show_errors(void)
{
	size_t	i;

	for (i = 0; i < E.n; i++)
		printf("#   error: %s\n", E.msgs[i]);
}

/* Is there a problem at WHERE ("LINE:COL") whose message contains PART? */
static bool
has_error(const char *where, const char *part)
{
	char	prefix[PATH_MAX + 64];
	size_t	i, n;

	n = (size_t)snprintf(prefix, sizeof prefix, "%s:%s: ", path, where);
	for (i = 0; i < E.n; i++)
		if (strncmp(E.msgs[i], prefix, n) == 0 &&
		    strstr(E.msgs[i] + n, part) != NULL)
			return true;
	return false;
}

/* One check: TEXT is refused with a problem at WHERE saying PART. */
static void
refused(const char *what, const char *text, const char *where,
    const char *part)
{
	bool	pass;

	load(text);
	pass = C == NULL && has_error(where, part);
	ok(pass, "%s: %s: %s", what, where, part);
	if (!pass)
		show_errors();
}

static bool
no_error_contains(const char *secret)
{
	size_t	i;

	for (i = 0; i < E.n; i++)
		if (strstr(E.msgs[i], secret) != NULL)
			return false;
	return true;
}

#define TOP	"spool_dir: /tmp/spool\nstatus_socket: /tmp/s.sock\n"

/* Lines 3-9. */
#define TOKEN_TARGET							\
	"targets:\n"							\
	"  leads:\n"							\
	"    auth: token\n"						\
	"    server_url: https://mm.example.com\n"			\
	"    token: abcdefghijklmnopqrstuvwxyz\n"			\
	"    channel: 4xp9fdt77pncbef59f4k1qe83o\n"			\
	"    template: \"New lead: {{name}}\"\n"

/* Lines 3-7. */
#define WEBHOOK_TARGET							\
	"targets:\n"							\
	"  alerts:\n"							\
	"    auth: webhook\n"						\
	"    webhook_url: https://mm.example.com/hooks/xyz\n"		\
	"    template: \"hi {{a}}\"\n"

static void
test_good(void)
{
	const struct target_conf	*t;
	char				 tokpath[PATH_MAX];
	char				 capath[PATH_MAX];

	write_file("leads.token",
	    "\n  \t s3cr3t-token-value  \r\nsecond line\n", 39, tokpath);
	write_file("ca.pem", "-----BEGIN CERTIFICATE-----\n", 28, capath);
	setenv("MMS_T_DIR", dir, 1);
	setenv("MMS_T_HOOK", "hook-id-1234", 1);

	load("# a full configuration\n"
	    "spool_dir: ${MMS_T_DIR}/spool\n"
	    "status_socket: /run/mmsyncd/test.sock\n"
	    "log_level: debug\n"
	    "spool_mode: \"2770\"\n"
	    "spool_group: mmsync\n"
	    "socket_mode: 0640\n"
	    "socket_group: adm\n"
	    "targets:\n"
	    "  leads:\n"					/* 10 */
	    "    auth: token\n"
	    "    server_url: https://mm.example.com/mattermost//\n"
	    "    token_file: ${MMS_T_DIR}/leads.token\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n"
	    "    template: \"Lead {{name}} pays $${{price}}, or $5\"\n"
	    "    interval: 0\n"
	    "    timeout: 2s\n"
	    "    connect_timeout: 1500ms\n"
	    "    backoff_min: 2s\n"
	    "    backoff_max: 1h\n"				/* 20 */
	    "    blocked_retry: 10m\n"
	    "    ca_file: ${MMS_T_DIR}/ca.pem\n"
	    "  alerts:\n"
	    "    auth: webhook\n"
	    "    webhook_url: https://mm.example.com/hooks/${MMS_T_HOOK}\n"
	    "    channel: \"#town-square\"\n"
	    "    username: zeotap\n"
	    "    icon_url: https://example.com/i.png\n"
	    "    template: |\n"
	    "      Audience {{audience}}\n"			/* 30 */
	    "      grew by {{count}}\n"
	    "  plain-2_x:\n"
	    "    auth: token\n"
	    "    server_url: http://localhost:8065\n"
	    "    token: inline-Token_123\n"
	    "    channel: AAAAAAAAAAAAAAAAAAAAAAAAAA\n"
	    "    template: x\n");
	ok(C != NULL && E.n == 0, "good config loads without problems");
	if (C == NULL) {
		show_errors();
		return;
	}
	is_str(C->path, path, "path kept");
	{
		char want[PATH_MAX + 16];

		snprintf(want, sizeof want, "%s/spool", dir);
		is_str(C->spool_dir, want, "${VAR} expanded in spool_dir");
	}
	is_str(C->status_socket, "/run/mmsyncd/test.sock", "status_socket");
	is_int(C->log_level, LOG_LEVEL_DEBUG, "log_level debug");
	is_int(C->spool_mode, 02770, "spool_mode \"2770\" is octal");
	is_str(C->spool_group, "mmsync", "spool_group");
	is_int(C->socket_mode, 0640, "socket_mode 0640");
	is_str(C->socket_group, "adm", "socket_group");
	is_int(C->ntargets, 3, "three targets");

	t = C->targets[0];
	is_str(t->name, "leads", "targets in file order");
	ok(t->line == 10 && t->column == 3, "target place is its key (10:3)");
	is_int(t->auth, AUTH_TOKEN, "leads is a token target");
	is_str(t->server_url, "https://mm.example.com/mattermost",
	    "trailing slashes of server_url stripped");
	is_str(t->token, "s3cr3t-token-value",
	    "token file: first line, white space trimmed");
	is_str(t->token_file, tokpath, "token_file path expanded");
	is_str(t->channel, "4xp9fdt77pncbef59f4k1qe83o", "channel id");
	is_str(t->template_src, "Lead {{name}} pays ${{price}}, or $5",
	    "$${ is a literal ${, a lone $ stays");
	ok(t->template != NULL, "template compiled");
	is_int(t->interval_ms, 0, "interval 0 allowed");
	is_int(t->timeout_ms, 2000, "timeout 2s");
	is_int(t->connect_timeout_ms, 1500, "connect_timeout 1500ms");
	is_int(t->backoff_min_ms, 2000, "backoff_min 2s");
	is_int(t->backoff_max_ms, 3600000, "backoff_max 1h");
	is_int(t->blocked_retry_ms, 600000, "blocked_retry 10m");
	is_str(t->ca_file, capath, "ca_file");
	ok(t->webhook_url == NULL && t->username == NULL &&
	    t->icon_url == NULL, "token target has no webhook settings");

	t = C->targets[1];
	is_str(t->name, "alerts", "second target");
	is_int(t->auth, AUTH_WEBHOOK, "alerts is a webhook target");
	is_str(t->webhook_url, "https://mm.example.com/hooks/hook-id-1234",
	    "${VAR} expanded inside a URL");
	is_str(t->channel, "#town-square", "webhook channel name kept");
	is_str(t->username, "zeotap", "username");
	is_str(t->icon_url, "https://example.com/i.png", "icon_url");
	is_str(t->template_src, "Audience {{audience}}\ngrew by {{count}}\n",
	    "block scalar template");
	ok(t->token == NULL && t->server_url == NULL,
	    "webhook target has no token settings");

	t = config_find_target(C, "plain-2_x");
	ok(t == C->targets[2], "config_find_target finds a target");
	ok(config_find_target(C, "nope") == NULL,
	    "config_find_target: unknown name is NULL");
	is_str(t->token, "inline-Token_123", "inline token");
	ok(t->interval_ms == 250 && t->timeout_ms == 30000 &&
	    t->connect_timeout_ms == 10000 && t->backoff_min_ms == 1000 &&
	    t->backoff_max_ms == 300000 && t->blocked_retry_ms == 300000 &&
	    t->ca_file == NULL, "target defaults: 250ms 30s 10s 1s 5m 5m");
}

static void
test_top_defaults(void)
{
	load(TOP WEBHOOK_TARGET);
	ok(C != NULL && E.n == 0, "minimal webhook config loads");
	if (C == NULL) {
		show_errors();
		return;
	}
	ok(C->log_level == LOG_LEVEL_INFO && C->spool_mode == 02770 &&
	    C->socket_mode == 0660 && C->spool_group == NULL &&
	    C->socket_group == NULL,
	    "top-level defaults: info, 2770, 0660, no groups");
	ok(C->targets[0]->channel == NULL && C->targets[0]->username == NULL,
	    "webhook channel and username optional");

	/* Null values are the same as absent for optional keys. */
	load(TOP "log_level:\nspool_group: ~\n" WEBHOOK_TARGET);
	ok(C != NULL && C->spool_group == NULL &&
	    C->log_level == LOG_LEVEL_INFO, "null optional value = default");
}

static void
test_durations(void)
{
	static const struct {
		const char	*s;
		int		 rc;
		uint64_t	 ms;
	} cases[] = {
		{ "250ms", 0, 250 }, { "2s", 0, 2000 }, { "1m", 0, 60000 },
		{ "1h", 0, 3600000 }, { "0", 0, 0 }, { "0s", 0, 0 },
		{ "596h", 0, 596ull * 3600000 },
		{ "250", -1, 0 }, { "1.5s", -1, 0 }, { "-1s", -1, 0 },
		{ "10x", -1, 0 }, { "", -1, 0 }, { "s", -1, 0 },
		{ "1 s", -1, 0 }, { " 1s", -1, 0 }, { "1S", -1, 0 },
		{ "597h", -1, 0 }, { "99999999999999999999s", -1, 0 },
		{ "18446744073709551616ms", -1, 0 },
	};
	size_t		i;
	uint64_t	ms;
	bool		pass = true;
	int		rc;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ms = 12345;
		rc = config_parse_duration(cases[i].s, &ms);
		if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms)) {
			printf("#   duration \"%s\": rc %d ms %llu\n",
			    cases[i].s, rc, (unsigned long long)ms);
			pass = false;
		}
	}
	ok(pass, "config_parse_duration table (%zu cases)",
	    sizeof cases / sizeof cases[0]);

	refused("duration without unit", TOP TOKEN_TARGET
	    "    interval: 250\n", "10:15", "a unit is required");
	refused("fractional duration", TOP TOKEN_TARGET
	    "    timeout: 1.5s\n", "10:14", "'1.5s' is not a duration");
	refused("negative duration", TOP TOKEN_TARGET
	    "    timeout: -1s\n", "10:14", "'-1s' is not a duration");
	refused("unknown unit", TOP TOKEN_TARGET
	    "    backoff_min: 10x\n", "10:18", "'10x' is not a duration");
	refused("huge duration", TOP TOKEN_TARGET
	    "    blocked_retry: 99999999999999999999s\n", "10:20",
	    "too large");
	refused("zero timeout", TOP TOKEN_TARGET
	    "    timeout: 0\n", "10:14", "timeout: must be more than 0");
	refused("backoff_max below backoff_min", TOP TOKEN_TARGET
	    "    backoff_min: 10s\n    backoff_max: 5s\n", "11:5",
	    "backoff_max is less than backoff_min");
	refused("duration as a list", TOP TOKEN_TARGET
	    "    interval: [1s]\n", "10:15", "interval: expected a string, "
	    "found a list");
}

static void
test_top_errors(void)
{
	char	long_sock[200];

	refused("unknown top-level key", TOP "colour: red\n" TOKEN_TARGET,
	    "3:1", "unknown key 'colour'");
	refused("wrong type for spool_dir", "spool_dir: [a, b]\n"
	    "status_socket: /tmp/s\n" TOKEN_TARGET, "1:12",
	    "spool_dir: expected a string, found a list");
	refused("targets is a list", TOP "targets:\n  - leads\n", "4:3",
	    "targets: expected a mapping");
	refused("targets is empty", TOP "targets: {}\n", "3:10",
	    "no target is defined");
	refused("missing spool_dir", "status_socket: /tmp/s\n" TOKEN_TARGET,
	    "1:1", "missing required key 'spool_dir'");
	refused("missing status_socket", "spool_dir: /tmp/x\n" TOKEN_TARGET,
	    "1:1", "missing required key 'status_socket'");
	refused("missing targets", TOP, "1:1", "missing required key "
	    "'targets'");
	refused("required key without value", "spool_dir:\n"
	    "status_socket: /tmp/s\n" TOKEN_TARGET, "1:1",
	    "spool_dir: no value given");
	refused("bad log_level", TOP "log_level: loud\n" TOKEN_TARGET,
	    "3:12", "'loud' is not one of error, warning, info, debug");
	refused("bad spool_mode", TOP "spool_mode: 0999\n" TOKEN_TARGET,
	    "3:13", "not an octal file mode");
	refused("spool_mode locks the owner out", TOP "spool_mode: 0070\n"
	    TOKEN_TARGET, "3:13", "the owner (mmsyncd) needs");
	memset(long_sock, 'x', sizeof long_sock - 1);
	long_sock[sizeof long_sock - 1] = '\0';
	{
		char text[1024];

		snprintf(text, sizeof text, "spool_dir: /x\nstatus_socket: "
		    "/%s\n" TOKEN_TARGET, long_sock);
		refused("status_socket too long", text, "2:16",
		    "too long for a Unix socket");
	}
	refused("top level is a list", "- a\n- b\n", "1:1",
	    "expected a mapping of settings at the top level, found a list");
	refused("duplicate top-level key", TOP "spool_dir: /other\n"
	    TOKEN_TARGET, "3:1", "duplicate key 'spool_dir' (first at line 1, "
	    "column 1)");
}

static void
test_target_errors(void)
{
	char	text[4096], name[70];

	refused("unknown target key", TOP TOKEN_TARGET "    colour: red\n",
	    "10:5", "target 'leads': unknown key 'colour'");
	refused("missing auth", TOP "targets:\n  leads:\n"
	    "    template: x\n", "4:3", "missing required key 'auth'");
	refused("bad auth", TOP "targets:\n  leads:\n    auth: tokn\n"
	    "    template: x\n", "5:11", "auth: 'tokn' is neither");
	refused("missing template", TOP "targets:\n  alerts:\n"
	    "    auth: webhook\n    webhook_url: https://h/hooks/x\n", "4:3",
	    "target 'alerts': missing required key 'template'");
	refused("token target without channel", TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n    token: abcdef\n"
	    "    template: x\n", "4:3", "missing required key 'channel'");
	refused("token target without server_url", TOP "targets:\n  leads:\n"
	    "    auth: token\n    token: abcdef\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n"
	    "    template: x\n", "4:3", "missing required key 'server_url'");
	refused("token target without a token", TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n"
	    "    template: x\n", "4:3", "'token' or 'token_file'");
	refused("webhook target without webhook_url", TOP "targets:\n"
	    "  alerts:\n    auth: webhook\n    template: x\n", "4:3",
	    "missing required key 'webhook_url'");
	refused("bad target name", TOP "targets:\n  le.ads:\n"
	    "    auth: webhook\n    webhook_url: https://h/hooks/x\n"
	    "    template: x\n", "4:3", "target name 'le.ads' is not");
	memset(name, 'a', 65);
	name[65] = '\0';
	snprintf(text, sizeof text, TOP "targets:\n  %s:\n    auth: webhook\n"
	    "    webhook_url: https://h/hooks/x\n    template: x\n", name);
	refused("target name too long", text, "4:3", "is not 1 to 64");
	refused("duplicate target", TOP WEBHOOK_TARGET "  alerts:\n"
	    "    auth: webhook\n    webhook_url: https://h/hooks/y\n"
	    "    template: y\n", "8:3", "duplicate target 'alerts' (first at "
	    "line 4, column 3)");
	refused("duplicate key in a target", TOP WEBHOOK_TARGET
	    "    template: again\n", "8:5", "duplicate key 'template'");
	refused("target is not a mapping", TOP "targets:\n  leads: foo\n",
	    "4:10", "target 'leads': expected a mapping of settings, found a "
	    "string");
	refused("username on a token target", TOP TOKEN_TARGET
	    "    username: bot\n", "10:5", "'username' is only for auth: "
	    "webhook targets");
	refused("icon_url on a token target", TOP TOKEN_TARGET
	    "    icon_url: https://x/i.png\n", "10:5", "'icon_url' is only for "
	    "auth: webhook");
	refused("server_url on a webhook target", TOP WEBHOOK_TARGET
	    "    server_url: https://h\n", "8:5", "'server_url' is only for "
	    "auth: token");
	refused("server_url not http", TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: ftp://h\n    token: abcdef\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n    template: x\n",
	    "6:17", "must be an http:// or https:// URL");
	refused("webhook_url without host", TOP "targets:\n  alerts:\n"
	    "    auth: webhook\n    webhook_url: https:///hooks/x\n"
	    "    template: x\n", "6:18", "has no host name");
	refused("ca_file missing", TOP WEBHOOK_TARGET
	    "    ca_file: /nonexistent/ca.pem\n", "8:14",
	    "ca_file: cannot read /nonexistent/ca.pem: No such file or "
	    "directory");
}

static void
test_channels(void)
{
	refused("channel id too short", TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n    token: abcdef\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83\n    template: x\n",
	    "8:14", "has 25 characters");
	refused("channel id bad characters", TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n    token: abcdef\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe8-o\n    template: x\n",
	    "8:14", "'4xp9fdt77pncbef59f4k1qe8-o' has other characters");
	refused("channel name on a token target", TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n    token: abcdef\n"
	    "    channel: town-square\n    template: x\n",
	    "8:14", "needs a channel id of 26 letters and digits");
	refused("webhook channel that looks like an id", TOP WEBHOOK_TARGET
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n", "8:14",
	    "looks like a channel id; a webhook takes a channel name");
	load(TOP WEBHOOK_TARGET "    channel: \"@some-user\"\n");
	ok(C != NULL && strcmp(C->targets[0]->channel, "@some-user") == 0,
	    "webhook channel @user accepted");
}

static void
test_token_sources(void)
{
	char	text[8192], big[5000], tokpath[PATH_MAX];

	write_file("t1", "abcdef\n", 7, tokpath);
	snprintf(text, sizeof text, TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n    token: abcdef\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n    template: x\n"
	    "    token_file: %s\n", tokpath);
	refused("token and token_file both", text, "10:5", "both 'token' and "
	    "'token_file' are given");

	refused("token_file missing", TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n"
	    "    token_file: /nonexistent/leads.token\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n    template: x\n",
	    "7:17", "token_file: cannot read /nonexistent/leads.token: No such "
	    "file or directory");

	write_file("empty.token", " \n\t\n", 4, tokpath);
	snprintf(text, sizeof text, TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n    token_file: %s\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n    template: x\n",
	    tokpath);
	refused("token_file empty (blank)", text, "7:17", "is empty");

	memset(big, 'a', sizeof big);
	write_file("big.token", big, sizeof big, tokpath);
	snprintf(text, sizeof text, TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n    token_file: %s\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n    template: x\n",
	    tokpath);
	refused("token_file over 4 KiB", text, "7:17", "larger than 4 KiB");
}

static void
test_env(void)
{
	unsetenv("MMS_TEST_UNSET_VAR");
	refused("unset ${VAR}", "spool_dir: ${MMS_TEST_UNSET_VAR}/x\n"
	    "status_socket: /tmp/s\n" TOKEN_TARGET, "1:12",
	    "environment variable MMS_TEST_UNSET_VAR is not set");
	refused("unterminated ${", "spool_dir: /x/${HOME\n"
	    "status_socket: /tmp/s\n" TOKEN_TARGET, "1:12",
	    "spool_dir: unterminated '${'");
	refused("bad variable name", "spool_dir: /x/${1A}\n"
	    "status_socket: /tmp/s\n" TOKEN_TARGET, "1:12",
	    "'${1A}' is not a variable name");
}

static void
test_yaml_errors(void)
{
	char	 nopath[PATH_MAX + 64], want[PATH_MAX + 128];
	char	*big;
	size_t	 n;

	refused("YAML syntax error", TOP "targets: [a\n", "4:1",
	    "YAML syntax error");
	refused("YAML syntax error: bad indentation", TOP "targets:\n"
	    "  leads:\n    auth: token\n   template: x\n", "6:4",
	    "YAML syntax error");
	refused("empty file", "", "1:1", "the configuration is empty");
	refused("comments only", "# nothing\n\n", "1:1",
	    "the configuration is empty");
	refused("alias refused", "spool_dir: &d /tmp/x\nstatus_socket: *d\n"
	    TOKEN_TARGET, "2:16", "aliases (*d) are not allowed");
	refused("alias as a key", TOP "x: &k colour\n*k : red\n"
	    TOKEN_TARGET, "4:1", "aliases (*k) are not allowed");
	refused("two documents", TOP TOKEN_TARGET "---\nfoo: 1\n", "10:1",
	    "only one YAML document is allowed");
	refused("NUL in a value", "spool_dir: \"/tmp/\\0x\"\n"
	    "status_socket: /tmp/s\n" TOKEN_TARGET, "1:12",
	    "contains a NUL character");
	refused("non-string key", TOP "[a]: 1\n" TOKEN_TARGET, "3:1",
	    "a key must be a string, not a list");

	n = 40 * 2;
	big = xmalloc(n + 1);
	memset(big, '[', 40);
	memset(big + 40, ']', 40);
	big[n] = '\0';
	{
		char text[256];

		snprintf(text, sizeof text, TOP "x: %s\n", big);
		refused("nesting too deep", text, "3:35", "nested too deeply");
	}
	free(big);

	n = 1024 * 1024 + 10;
	big = xmalloc(n);
	memset(big, '#', n);
	big[n - 1] = '\n';
	load_len(big, n);
	snprintf(want, sizeof want, "%s: too large", path);
	ok(C == NULL && E.n == 1 && strncmp(E.msgs[0], want,
	    strlen(want)) == 0, "file over 1 MiB refused");
	free(big);

	snprintf(nopath, sizeof nopath, "%s/does-not-exist.yaml", dir);
	config_free(C);
	config_errors_free(&E);
	C = config_load(nopath, &E);
	snprintf(want, sizeof want, "%s: cannot open: No such file or "
	    "directory", nopath);
	ok(C == NULL && E.n == 1 && strcmp(E.msgs[0], want) == 0,
	    "nonexistent file: FILE: cannot open: strerror");
	if (E.n != 1 || strcmp(E.msgs[0], want) != 0)
		show_errors();

	/* No ERRS: still refused, still no crash or leak. */
	load("");
	config_free(C);
	C = config_load(path, NULL);
	ok(C == NULL, "errors may be ignored (ERRS NULL)");
}

static void
test_template_error(void)
{
	char	*text;
	size_t	 n = 70 * 1024, hdr;

	text = xmalloc(n + 512);
	/* Template on line 7, longer than template_compile takes. */
	hdr = (size_t)snprintf(text, 512, TOP "targets:\n  alerts:\n"
	    "    auth: webhook\n    webhook_url: https://h/hooks/x\n"
	    "    template: ");
	memset(text + hdr, 'a', n);
	strcpy(text + hdr + n, "\n");
	load(text);
	ok(C == NULL && has_error("7:15", "template: ") &&
	    has_error("7:15", "longer than"),
	    "template_compile's error at the template (7:15)");
	if (C != NULL || E.n != 1)
		show_errors();
	free(text);
}

static void
test_extensions(void)
{
	const struct target_conf	*t;
	const struct attachment_conf	*a;

	/* Without the extension keys: as before. */
	load(TOP TOKEN_TARGET);
	ok(C != NULL && C->targets[0]->digest_rows == 1 &&
	    C->targets[0]->digest_header == NULL &&
	    C->targets[0]->attachment == NULL &&
	    C->targets[0]->channel_template == NULL,
	    "extensions default: digest_rows 1, no header, attachment or "
	    "channel template");

	load(TOP "targets:\n"
	    "  digest:\n"
	    "    auth: token\n"
	    "    server_url: https://h\n"
	    "    token: abcdef\n"
	    "    channel: \"{{team_channel}}\"\n"
	    "    template: \"- {{name}}\"\n"
	    "    digest_rows: 50\n"
	    "    digest_header: \"**{{count}} new leads**\"\n"	/* 11 */
	    "    attachment:\n"
	    "      fallback: \"Lead {{name}}\"\n"
	    "      color: \"#2eb886\"\n"
	    "      pretext: pre\n"
	    "      title: \"{{name}}\"\n"
	    "      title_link: \"https://crm/{{id}}\"\n"
	    "      text: \"{{note}}\"\n"
	    "      footer: mmsyncd\n"
	    "      fields:\n"
	    "        - title: Score\n"				/* 21 */
	    "          value: \"{{score}}\"\n"
	    "          short: true\n"
	    "        - value: \"{{owner}}\"\n"
	    "          short: False\n"
	    "        - title: Note\n"
	    "  cards:\n"
	    "    auth: webhook\n"
	    "    webhook_url: https://h/hooks/x\n"
	    "    attachment:\n"
	    "      text: \"{{t}}\"\n"				/* 31 */
	    "    digest_rows: 1\n"
	    "  nulls:\n"
	    "    auth: webhook\n"
	    "    webhook_url: https://h/hooks/x\n"
	    "    template: x\n"
	    "    attachment:\n"
	    "    digest_header: ~\n");
	ok(C != NULL && E.n == 0, "extension keys load");
	if (C == NULL) {
		show_errors();
		return;
	}
	t = C->targets[0];
	is_str(t->channel, "{{team_channel}}", "channel template source kept");
	ok(t->channel_template != NULL, "channel template compiled");
	is_int(t->digest_rows, 50, "digest_rows 50");
	ok(t->digest_header != NULL, "digest_header compiled");
	a = t->attachment;
	ok(a != NULL && a->fallback != NULL && a->color != NULL &&
	    a->pretext != NULL && a->title != NULL && a->title_link != NULL &&
	    a->text != NULL && a->footer != NULL,
	    "attachment: every string key compiled");
	ok(a != NULL && a->nfields == 3 &&
	    a->fields[0].title != NULL && a->fields[0].value != NULL &&
	    a->fields[0].is_short &&
	    a->fields[1].title == NULL && a->fields[1].value != NULL &&
	    !a->fields[1].is_short &&
	    a->fields[2].title != NULL && a->fields[2].value == NULL &&
	    !a->fields[2].is_short,
	    "attachment fields: title, value, short (default false)");

	t = C->targets[1];
	ok(t->template == NULL && t->template_src == NULL &&
	    t->attachment != NULL && t->attachment->text != NULL &&
	    t->attachment->title == NULL && t->attachment->nfields == 0,
	    "with an attachment, template may be omitted");
	is_int(t->digest_rows, 1, "digest_rows 1 allowed");

	t = C->targets[2];
	ok(t->attachment == NULL && t->digest_header == NULL,
	    "null attachment and digest_header are absent");

	load(TOP TOKEN_TARGET "    digest_rows: 1000\n");
	ok(C != NULL && C->targets[0]->digest_rows == 1000,
	    "digest_rows 1000 allowed");
	load(TOP TOKEN_TARGET "    digest_rows: \"7\"\n"
	    "    digest_header: \"{{count}}\"\n");
	ok(C != NULL && C->targets[0]->digest_rows == 7,
	    "digest_rows quoted");
	load(TOP "targets:\n  leads:\n    auth: token\n"
	    "    server_url: https://h\n    token: abcdef\n"
	    "    channel: \"x{{}}\"\n    template: x\n");
	ok(C != NULL && C->targets[0]->channel_template != NULL,
	    "a channel with '{{' is a template even without a field");
}

static void
test_extension_errors(void)
{
	char	*text;
	size_t	 n = 70 * 1024, hdr;

	refused("digest_rows 0", TOP TOKEN_TARGET "    digest_rows: 0\n",
	    "10:18", "digest_rows: '0' is not a whole number from 1 to 1000");
	refused("digest_rows 1001", TOP TOKEN_TARGET
	    "    digest_rows: 1001\n", "10:18", "'1001' is not a whole number");
	refused("digest_rows not a number", TOP TOKEN_TARGET
	    "    digest_rows: lots\n", "10:18", "'lots' is not a whole number");
	refused("digest_rows negative", TOP TOKEN_TARGET
	    "    digest_rows: -5\n", "10:18", "'-5' is not a whole number");
	refused("digest_rows fractional", TOP TOKEN_TARGET
	    "    digest_rows: 2.5\n", "10:18", "'2.5' is not a whole number");
	refused("digest_rows a list", TOP TOKEN_TARGET
	    "    digest_rows: [2]\n", "10:18",
	    "digest_rows: expected a string, found a list");

	refused("digest_header without digest_rows", TOP TOKEN_TARGET
	    "    digest_header: \"{{count}} rows\"\n", "10:5",
	    "target 'leads': digest_header needs digest_rows > 1");
	refused("digest_header with digest_rows 1", TOP TOKEN_TARGET
	    "    digest_header: \"{{count}} rows\"\n    digest_rows: 1\n",
	    "10:5", "digest_header needs digest_rows > 1");
	load(TOP TOKEN_TARGET "    digest_header: x\n    digest_rows: 0\n");
	ok(C == NULL && E.n == 1 && has_error("11:18", "'0' is not a whole"),
	    "a bad digest_rows is not reported twice");
	if (E.n != 1)
		show_errors();
	refused("digest_header empty", TOP TOKEN_TARGET
	    "    digest_header: \"\"\n    digest_rows: 2\n", "10:20",
	    "digest_header: must not be empty");
	refused("digest_header a mapping", TOP TOKEN_TARGET
	    "    digest_header: {a: b}\n    digest_rows: 2\n", "10:20",
	    "digest_header: expected a string, found a mapping");

	refused("attachment not a mapping", TOP TOKEN_TARGET
	    "    attachment: hello\n", "10:17",
	    "attachment: expected a mapping");
	refused("attachment empty", TOP TOKEN_TARGET
	    "    attachment: {}\n", "10:17",
	    "attachment: give at least one of fallback, color");
	refused("attachment unknown key", TOP TOKEN_TARGET
	    "    attachment:\n      colour: red\n", "11:7",
	    "attachment: unknown key 'colour'");
	refused("attachment duplicate key", TOP TOKEN_TARGET
	    "    attachment:\n      text: a\n      text: b\n", "12:7",
	    "duplicate key 'text'");
	refused("attachment key not a string", TOP TOKEN_TARGET
	    "    attachment:\n      title: [a]\n", "11:14",
	    "attachment: title: expected a string, found a list");
	refused("attachment key empty", TOP TOKEN_TARGET
	    "    attachment:\n      footer: \"\"\n", "11:15",
	    "attachment: footer: must not be empty");
	refused("attachment fields not a list", TOP TOKEN_TARGET
	    "    attachment:\n      fields: {title: a}\n", "11:15",
	    "attachment: fields: expected a list of fields, found a mapping");
	refused("attachment fields empty", TOP TOKEN_TARGET
	    "    attachment:\n      fields: []\n", "11:15",
	    "attachment: fields: the list is empty");
	refused("attachment field not a mapping", TOP TOKEN_TARGET
	    "    attachment:\n      fields:\n        - a\n", "12:11",
	    "attachment: field 1: expected a mapping of title, value and "
	    "short, found a string");
	refused("attachment field unknown key", TOP TOKEN_TARGET
	    "    attachment:\n      fields:\n        - title: a\n"
	    "        - title: b\n          long: true\n", "14:11",
	    "attachment: field 2: unknown key 'long'");
	refused("attachment field short not a bool", TOP TOKEN_TARGET
	    "    attachment:\n      fields:\n        - title: a\n"
	    "          short: maybe\n", "13:18",
	    "attachment: field 1: short: 'maybe' is neither true nor false");
	refused("attachment field without title or value", TOP TOKEN_TARGET
	    "    attachment:\n      fields:\n        - short: true\n",
	    "12:11", "attachment: field 1: needs a title or a value");
	refused("attachment field value empty", TOP TOKEN_TARGET
	    "    attachment:\n      fields:\n        - value: ''\n",
	    "12:18", "attachment: field 1: value: must not be empty");
	refused("attachment null is absent: template still required",
	    TOP "targets:\n  alerts:\n    auth: webhook\n"
	    "    webhook_url: https://h/hooks/x\n    attachment:\n", "4:3",
	    "missing required key 'template' (or an 'attachment')");
	load(TOP "targets:\n  alerts:\n    auth: webhook\n"
	    "    webhook_url: https://h/hooks/x\n    attachment:\n"
	    "      colour: red\n");
	ok(C == NULL && E.n == 1 && has_error("8:7", "unknown key 'colour'"),
	    "a bad attachment: template not also reported missing");
	if (E.n != 1)
		show_errors();

	refused("webhook channel template", TOP WEBHOOK_TARGET
	    "    channel: \"{{room}}\"\n", "8:14",
	    "a webhook target takes one channel name, not a template");
	refused("channel template with a control character", TOP "targets:\n"
	    "  leads:\n    auth: token\n    server_url: https://h\n"
	    "    token: abcdef\n    channel: \"{{a}}\\n\"\n    template: x\n",
	    "8:14", "channel: must not contain control characters");

	/* A channel template too long to compile, on line 8. */
	text = xmalloc(n + 512);
	hdr = (size_t)snprintf(text, 512, TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n    token: abcdef\n"
	    "    channel: \"{{a}}");
	memset(text + hdr, 'a', n);
	strcpy(text + hdr + n, "\"\n    template: x\n");
	refused("channel template too long", text, "8:14",
	    "channel: template is longer than");
	free(text);
}

static void
test_many_errors(void)
{
	load("spool_dir: [x]\n"			/* 1: wrong type */
	    "log_level: loud\n"			/* 2: bad value */
	    "bogus: 1\n"			/* 3: unknown key */
	    "targets:\n"
	    "  leads:\n"
	    "    auth: token\n"
	    "    server_url: https://h\n"
	    "    token: abcdef\n"
	    "    channel: short\n"			/* 9: bad id */
	    "    template: x\n"
	    "    interval: 5\n"			/* 11: no unit */
	    "  alerts:\n"
	    "    auth: webhook\n"		/* no webhook_url */
	    "    template: y\n"
	    "    username: ''\n");		/* 15: empty */
	/* + missing status_socket (1:1) */
	is_int(E.n, 8, "eight problems reported together");
	if (E.n != 8)
		show_errors();
	ok(C == NULL && has_error("1:1", "missing required key "
	    "'status_socket'") && has_error("11:15", "a unit is required") &&
	    has_error("12:3", "missing required key 'webhook_url'"),
	    "each at its place");
	{
		char want[PATH_MAX + 32];

		snprintf(want, sizeof want, "%s:1:1: ", path);
		ok(E.n > 0 && strncmp(E.msgs[0], want, strlen(want)) == 0 &&
		    strstr(E.msgs[E.n - 1], ":15:15: ") != NULL,
		    "problems sorted by place");
	}
}

static void
test_secrets(void)
{
	char	text[PATH_MAX + 512], tokpath[PATH_MAX];

	/* A malformed inline token, next to other problems. */
	load(TOP "targets:\n  leads:\n    auth: token\n"
	    "    server_url: https://h\n"
	    "    token: \"SeKrIt toKen 42\"\n"
	    "    channel: bad\n    template: x\n    colour: x\n");
	ok(C == NULL && has_error("7:12", "token: contains white space") &&
	    no_error_contains("SeKrIt"), "bad token: its text is not shown");

	write_file("bad.token", "FiLeSeKrIt with space\n", 22, tokpath);
	snprintf(text, sizeof text, TOP "targets:\n  leads:\n"
	    "    auth: token\n    server_url: https://h\n    token_file: %s\n"
	    "    channel: 4xp9fdt77pncbef59f4k1qe83o\n    template: x\n",
	    tokpath);
	load(text);
	ok(C == NULL && has_error("7:17", "contains white space") &&
	    no_error_contains("FiLeSeKrIt"),
	    "bad token in a file: its text is not shown");

	load(TOP "targets:\n  alerts:\n    auth: webhook\n"
	    "    webhook_url: \"ftp://h/hooks/HoOkSeKrIt\"\n"
	    "    template: x\n");
	ok(C == NULL && has_error("6:18", "webhook_url: must be an http") &&
	    no_error_contains("HoOkSeKrIt"), "bad webhook_url is not shown");

	/* A good token next to a problem elsewhere is not shown either. */
	load(TOP TOKEN_TARGET "    colour: x\n");
	ok(C == NULL && E.n == 1 &&
	    no_error_contains("abcdefghijklmnopqrstuvwxyz"),
	    "token not in an unrelated problem");
}

int
main(void)
{
	const char	*tmp = getenv("TMPDIR");
	char		 cmd[PATH_MAX + 16];

	snprintf(dir, sizeof dir, "%s/test_config.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}

	test_good();
	test_top_defaults();
	test_durations();
	test_top_errors();
	test_target_errors();
	test_channels();
	test_token_sources();
	test_env();
	test_yaml_errors();
	test_template_error();
	test_extensions();
	test_extension_errors();
	test_many_errors();
	test_secrets();

	config_free(C);
	config_errors_free(&E);
	config_free(NULL);
	ok(1, "config_free(NULL) is fine");

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
	return tap_done();
}
