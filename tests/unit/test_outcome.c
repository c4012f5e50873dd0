/*
 * Unit tests for outcome.c: classification of answers (a table over
 * status, headers, body, curl code and auth kind), Retry-After parsing,
 * backoff bounds and pacing.
 */

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "mmsyncd.h"
#include "tap.h"

/* Sun, 06 Nov 1994 08:49:37 GMT */
#define NOW		784111777000ULL
/* Thu, 01 Jan 2026 00:00:00 GMT */
#define NOW2026		1767225600000ULL

#define NOWAIT		(-1)
#define MAXW		((long long)OUTCOME_MAX_WAIT_MS)

#define T		AUTH_TOKEN
#define W		AUTH_WEBHOOK

#define JSON		"application/json"
#define TEXT		"text/plain; charset=utf-8"
#define HTML		"text/html"

#define AE(id, msg)							\
	"{\"id\":\"" id "\",\"message\":\"" msg "\",\"detailed_error\":\"\","\
	"\"request_id\":\"8xq1\",\"status_code\":0}"

struct tcase {
	const char	*name;
	enum auth_kind	 auth;
	int		 curl;
	const char	*curl_error;
	long		 status;
	const char	*retry_after;
	const char	*reset;
	const char	*remaining;
	const char	*ctype;
	const char	*body;
	enum verdict	 verdict;
	long long	 wait;		/* NOWAIT: has_wait false */
	const char	*id;		/* expected error_id */
	const char	*reason;	/* expected substring of the reason */
};

static const struct tcase cases[] = {
	/* ---- REST, the reference's table */
	{ "rest 201 created", T, 0, NULL, 201, NULL, NULL, NULL, JSON,
	    "{\"id\":\"p1\",\"create_at\":1,\"message\":\"hi\"}",
	    VERDICT_DELIVERED, NOWAIT, "", "delivered (201)" },
	{ "rest 401 session expired", T, 0, NULL, 401, NULL, NULL, NULL, JSON,
	    AE("api.context.session_expired.app_error", "Invalid or expired "
	    "session, please login again."),
	    VERDICT_BLOCK, NOWAIT, "api.context.session_expired.app_error",
	    "token revoked or personal access tokens disabled (System Console "
	    "> Integrations > Integration Management)" },
	{ "rest 403 no permission", T, 0, NULL, 403, NULL, NULL, NULL, JSON,
	    AE("api.context.permissions.app_error", "You do not have the "
	    "appropriate permissions."),
	    VERDICT_BLOCK, NOWAIT, "api.context.permissions.app_error",
	    "channel id not found or no permission: use the id from View "
	    "Info, not the display name" },
	{ "rest 400 archived channel", T, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    AE("api.post.create_post.can_not_post_to_deleted.error",
	    "Can not post to deleted channel."),
	    VERDICT_SET_ASIDE, NOWAIT,
	    "api.post.create_post.can_not_post_to_deleted.error",
	    "400 api.post.create_post.can_not_post_to_deleted.error: Can not "
	    "post to deleted channel." },
	{ "rest 400 message too long", T, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    AE("model.post.is_valid.message_length.app_error",
	    "Message too long"),
	    VERDICT_SET_ASIDE, NOWAIT,
	    "model.post.is_valid.message_length.app_error",
	    "400 model.post.is_valid.message_length.app_error: Message too "
	    "long" },
	{ "rest 400 message too long (old id)", T, 0, NULL, 400, NULL, NULL,
	    NULL, JSON, AE("model.post.is_valid.msg.app_error", "Invalid msg"),
	    VERDICT_SET_ASIDE, NOWAIT, "model.post.is_valid.msg.app_error",
	    "400 model.post.is_valid.msg.app_error: Invalid msg" },
	{ "rest 400 body not JSON", T, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    AE("api.context.invalid_body_param.app_error", "Invalid or missing "
	    "post in request body."),
	    VERDICT_SET_ASIDE, NOWAIT, "api.context.invalid_body_param.app_error",
	    "400 api.context.invalid_body_param.app_error: Invalid" },
	{ "rest 413 too large", T, 0, NULL, 413, NULL, NULL, NULL, JSON,
	    AE("api.context.request_body_too_large.app_error", "The request "
	    "body is too large."),
	    VERDICT_SET_ASIDE, NOWAIT,
	    "api.context.request_body_too_large.app_error",
	    "413 api.context.request_body_too_large.app_error: The request" },
	{ "rest 500 dedupe pending", T, 0, NULL, 500, NULL, NULL, NULL, JSON,
	    AE("api.post.deduplicate_create_post.pending", "Post rejected "
	    "because another post with the same pending id is being created."),
	    VERDICT_BACKOFF, NOWAIT, "api.post.deduplicate_create_post.pending",
	    "server error 500 api.post.deduplicate_create_post.pending" },
	{ "rest 404 wrong server_url", T, 0, NULL, 404, NULL, NULL, NULL, HTML,
	    "<html><body>404 page not found</body></html>",
	    VERDICT_BLOCK, NOWAIT, "", "not a Mattermost API: check server_url" },
	{ "rest 404 api route", T, 0, NULL, 404, NULL, NULL, NULL, JSON,
	    AE("api.context.404.app_error", "Sorry, we could not find the "
	    "page."),
	    VERDICT_BLOCK, NOWAIT, "api.context.404.app_error",
	    "not a Mattermost API" },
	{ "rest 501", T, 0, NULL, 501, NULL, NULL, NULL, NULL, "",
	    VERDICT_BLOCK, NOWAIT, "", "not implemented (501)" },

	/* ---- webhooks, the reference's table */
	{ "hook 200 ok", W, 0, NULL, 200, NULL, NULL, NULL, "text/plain", "ok",
	    VERDICT_DELIVERED, NOWAIT, "", "delivered (200)" },
	{ "hook 400 unknown hook", W, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    AE("web.incoming_webhook.invalid.app_error", "Invalid webhook."),
	    VERDICT_BLOCK, NOWAIT, "web.incoming_webhook.invalid.app_error",
	    "webhook not found or deleted" },
	{ "hook 501 disabled", W, 0, NULL, 501, NULL, NULL, NULL, JSON,
	    AE("web.incoming_webhook.disabled.app_error", "Incoming webhooks "
	    "have been disabled by the system admin."),
	    VERDICT_BLOCK, NOWAIT, "web.incoming_webhook.disabled.app_error",
	    "incoming webhooks disabled (System Console > Integrations)" },
	{ "hook 400 no text", W, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    AE("web.incoming_webhook.text.app_error", "No text specified"),
	    VERDICT_SET_ASIDE, NOWAIT, "web.incoming_webhook.text.app_error",
	    "400 web.incoming_webhook.text.app_error: No text specified" },
	{ "hook 400 unparseable", W, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    AE("model.incoming_hook.parse_data.app_error", "Unable to parse "
	    "incoming data"),
	    VERDICT_SET_ASIDE, NOWAIT, "model.incoming_hook.parse_data.app_error",
	    "400 model.incoming_hook.parse_data.app_error: Unable to parse" },
	{ "hook 404 unknown channel", W, 0, NULL, 404, NULL, NULL, NULL, JSON,
	    AE("web.incoming_webhook.channel.app_error", "Couldn't find the "
	    "channel."),
	    VERDICT_BLOCK, NOWAIT, "web.incoming_webhook.channel.app_error",
	    "channel name not found in the webhook's team: use the channel's "
	    "URL name, not its display name" },
	{ "hook 403 locked", W, 0, NULL, 403, NULL, NULL, NULL, JSON,
	    AE("web.incoming_webhook.channel_locked.app_error", "This webhook "
	    "is not permitted to post to the requested channel."),
	    VERDICT_BLOCK, NOWAIT,
	    "web.incoming_webhook.channel_locked.app_error",
	    "webhook is locked to another channel: remove the channel "
	    "override" },
	{ "hook 403 owner cannot post", W, 0, NULL, 403, NULL, NULL, NULL,
	    JSON, AE("web.incoming_webhook.permissions.app_error",
	    "Inappropriate channel permissions."),
	    VERDICT_BLOCK, NOWAIT, "web.incoming_webhook.permissions.app_error",
	    "webhook owner cannot post in that channel" },
	{ "hook 400 unknown user", W, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    AE("web.incoming_webhook.user.app_error", "Couldn't find the user"),
	    VERDICT_SET_ASIDE, NOWAIT, "web.incoming_webhook.user.app_error",
	    "400 web.incoming_webhook.user.app_error: Couldn't find the user" },
	{ "hook 401", W, 0, NULL, 401, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BLOCK, NOWAIT, "", "unauthorized (401)" },
	{ "hook 403 other", W, 0, NULL, 403, NULL, NULL, NULL, HTML,
	    "<h1>Forbidden</h1>",
	    VERDICT_BLOCK, NOWAIT, "", "forbidden" },
	{ "hook 404 from a proxy", W, 0, NULL, 404, NULL, NULL, NULL, HTML,
	    "<html>Not Found</html>",
	    VERDICT_BLOCK, NOWAIT, "", "not found: check webhook_url" },

	/* ---- 429 */
	{ "429 Retry-After seconds", T, 0, NULL, 429, "5", "5", "0", TEXT,
	    "limit exceeded\n",
	    VERDICT_RATE_LIMITED, 5000, "", "rate limited (429), retry after 5 s" },
	{ "429 Retry-After spaced", W, 0, NULL, 429, " 7 ", NULL, NULL, TEXT,
	    "limit exceeded",
	    VERDICT_RATE_LIMITED, 7000, "", "retry after 7 s" },
	{ "429 Retry-After IMF date", T, 0, NULL, 429,
	    "Sun, 06 Nov 1994 08:49:47 GMT", NULL, NULL, NULL, NULL,
	    VERDICT_RATE_LIMITED, 10000, "", "retry after 10 s" },
	{ "429 Retry-After RFC 850 date", T, 0, NULL, 429,
	    "Sunday, 06-Nov-94 08:49:47 GMT", NULL, NULL, NULL, NULL,
	    VERDICT_RATE_LIMITED, 10000, "", "retry after 10 s" },
	{ "429 Retry-After asctime date", T, 0, NULL, 429,
	    "Sun Nov  6 08:49:47 1994", NULL, NULL, NULL, NULL,
	    VERDICT_RATE_LIMITED, 10000, "", "retry after 10 s" },
	{ "429 Retry-After date in the past", T, 0, NULL, 429,
	    "Sun, 06 Nov 1994 08:00:00 GMT", "9", NULL, NULL, NULL,
	    VERDICT_RATE_LIMITED, 0, "", "retry after 0 s" },
	{ "429 bare", T, 0, NULL, 429, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_RATE_LIMITED, NOWAIT, "", "rate limited (429)" },
	{ "429 Retry-After -1", T, 0, NULL, 429, "-1", NULL, NULL, TEXT,
	    "limit exceeded",
	    VERDICT_RATE_LIMITED, NOWAIT, "", "no usable Retry-After" },
	{ "429 Retry-After -1, Reset 3", T, 0, NULL, 429, "-1", "3", NULL, TEXT,
	    "limit exceeded",
	    VERDICT_RATE_LIMITED, 3000, "", "retry after 3 s (X-RateLimit-Reset)" },
	{ "429 Retry-After huge", T, 0, NULL, 429, "999999999", NULL, NULL,
	    NULL, NULL, VERDICT_RATE_LIMITED, MAXW, "", "retry after 3600 s" },
	{ "429 all garbage", W, 0, NULL, 429, "abc", "abc", "x", NULL, NULL,
	    VERDICT_RATE_LIMITED, NOWAIT, "", "rate limited (429)" },
	{ "429 X-RateLimit-Reset only", T, 0, NULL, 429, NULL, "4", "0", TEXT,
	    "limit exceeded",
	    VERDICT_RATE_LIMITED, 4000, "", "retry after 4 s" },
	{ "429 Reset negative", T, 0, NULL, 429, NULL, "-5", NULL, NULL, NULL,
	    VERDICT_RATE_LIMITED, NOWAIT, "", "rate limited (429)" },
	{ "429 Retry-After 1.5", T, 0, NULL, 429, "1.5", NULL, NULL, NULL, NULL,
	    VERDICT_RATE_LIMITED, NOWAIT, "", "rate limited (429)" },
	{ "429 Retry-After twice", T, 0, NULL, 429, "5, 5", "5, 5", NULL, NULL,
	    NULL, VERDICT_RATE_LIMITED, 5000, "", "retry after 5 s" },
	{ "429 Reset huge", T, 0, NULL, 429, NULL, "99999999", NULL, NULL, NULL,
	    VERDICT_RATE_LIMITED, MAXW, "", "rate limited (429)" },
	{ "429 Retry-After 0", T, 0, NULL, 429, "0", NULL, NULL, NULL, NULL,
	    VERDICT_RATE_LIMITED, 0, "", "retry after 0 s" },
	{ "429 empty Retry-After", T, 0, NULL, 429, "", "", "", NULL, NULL,
	    VERDICT_RATE_LIMITED, NOWAIT, "", "rate limited (429)" },

	/* ---- 2xx with the bucket empty */
	{ "201 Remaining 0", T, 0, NULL, 201, NULL, "3", "0", JSON, "{}",
	    VERDICT_DELIVERED, 3000, "", "rate limit reached, next request in 3 s" },
	{ "201 Remaining 0 twice", T, 0, NULL, 201, NULL, "2, 2", "0, 0", JSON,
	    "{}", VERDICT_DELIVERED, 2000, "", "next request in 2 s" },
	{ "200 Remaining 0 no Reset", W, 0, NULL, 200, NULL, NULL, " 0 ", TEXT,
	    "ok", VERDICT_DELIVERED, 1000, "", "next request in 1 s" },
	{ "200 Remaining 0 garbage Reset", W, 0, NULL, 200, NULL, "soon", "0",
	    TEXT, "ok", VERDICT_DELIVERED, 1000, "", "delivered (200)" },
	{ "200 Remaining 5", W, 0, NULL, 200, NULL, "3", "5", TEXT, "ok",
	    VERDICT_DELIVERED, NOWAIT, "", "delivered (200)" },
	{ "200 Remaining 0,5 (first counts)", W, 0, NULL, 200, NULL, "3", "0,5",
	    TEXT, "ok", VERDICT_DELIVERED, 3000, "", "delivered (200)" },
	{ "201 Remaining 0 Reset huge", T, 0, NULL, 201, NULL, "999999", "0",
	    JSON, "{}", VERDICT_DELIVERED, MAXW, "", "delivered (201)" },
	{ "201 Remaining 0 Reset negative", T, 0, NULL, 201, NULL, "-2", "0",
	    JSON, "{}", VERDICT_DELIVERED, 0, "", "delivered (201)" },
	{ "201 garbage body", T, 0, NULL, 201, NULL, NULL, NULL, JSON,
	    "{{{\"\xff\xfe not json", VERDICT_DELIVERED, NOWAIT, "",
	    "delivered (201)" },
	{ "204 no body", T, 0, NULL, 204, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_DELIVERED, NOWAIT, "", "delivered (204)" },
	{ "200 Remaining garbage", T, 0, NULL, 200, NULL, "3", "zero", NULL,
	    NULL, VERDICT_DELIVERED, NOWAIT, "", "delivered (200)" },

	/* ---- 5xx */
	{ "502 from nginx", T, 0, NULL, 502, NULL, NULL, NULL, HTML,
	    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>"
	    "</body></html>",
	    VERDICT_BACKOFF, NOWAIT, "",
	    "server error 502: <html> <head><title>502 Bad Gateway</title>" },
	{ "503 with Retry-After", W, 0, NULL, 503, "30", NULL, NULL, NULL, NULL,
	    VERDICT_BACKOFF, 30000, "", "server error 503" },
	{ "504 empty", T, 0, NULL, 504, NULL, NULL, NULL, NULL, "",
	    VERDICT_BACKOFF, NOWAIT, "", "server error 504" },
	{ "500 AppError", T, 0, NULL, 500, NULL, NULL, NULL, JSON,
	    AE("app.post.save.app_error", "Unable to save the post."),
	    VERDICT_BACKOFF, NOWAIT, "app.post.save.app_error",
	    "server error 500 app.post.save.app_error: Unable to save" },
	{ "599", T, 0, NULL, 599, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BACKOFF, NOWAIT, "", "server error 599" },

	/* ---- no answer */
	{ "timeout", T, CURLE_OPERATION_TIMEDOUT, "Operation timed out after "
	    "30000 milliseconds with 0 bytes received", 0, NULL, NULL, NULL,
	    NULL, NULL, VERDICT_BACKOFF, NOWAIT, "",
	    "timeout (curl 28: Operation timed out" },
	{ "timeout, no error text", T, CURLE_OPERATION_TIMEDOUT, NULL, 0, NULL,
	    NULL, NULL, NULL, NULL, VERDICT_BACKOFF, NOWAIT, "", "timeout" },
	{ "refused", W, CURLE_COULDNT_CONNECT, "Failed to connect to mm port "
	    "443 after 0 ms: Connection refused", 0, NULL, NULL, NULL, NULL,
	    NULL, VERDICT_BACKOFF, NOWAIT, "", "connection refused" },
	{ "reset on receive", T, CURLE_RECV_ERROR, "Recv failure: Connection "
	    "reset by peer", 0, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BACKOFF, NOWAIT, "", "connection reset" },
	{ "reset on send", T, CURLE_SEND_ERROR, "Send failure: Broken pipe", 0,
	    NULL, NULL, NULL, NULL, NULL, VERDICT_BACKOFF, NOWAIT, "",
	    "connection reset" },
	{ "dns", T, CURLE_COULDNT_RESOLVE_HOST, "Could not resolve host: "
	    "mm.example.com", 0, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BACKOFF, NOWAIT, "", "cannot resolve host" },
	{ "got nothing", T, CURLE_GOT_NOTHING, "Empty reply from server", 0,
	    NULL, NULL, NULL, NULL, NULL, VERDICT_BACKOFF, NOWAIT, "",
	    "without an answer" },
	{ "partial", T, CURLE_PARTIAL_FILE, NULL, 0, NULL, NULL, NULL, NULL,
	    NULL, VERDICT_BACKOFF, NOWAIT, "", "cut short" },
	{ "TLS handshake", T, CURLE_SSL_CONNECT_ERROR, "OpenSSL SSL_connect: "
	    "Connection reset by peer", 0, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BACKOFF, NOWAIT, "", "TLS handshake failed" },
	{ "unknown curl error", T, 12345, "something odd", 0, NULL, NULL, NULL,
	    NULL, NULL, VERDICT_BACKOFF, NOWAIT, "", "transfer failed" },
	{ "certificate not trusted", T, CURLE_PEER_FAILED_VERIFICATION,
	    "SSL certificate problem: unable to get local issuer certificate",
	    0, NULL, NULL, NULL, NULL, NULL, VERDICT_BLOCK, NOWAIT, "",
	    "certificate not trusted: set ca_file (SSL certificate problem: "
	    "unable to get local issuer certificate)" },
	{ "ca_file unreadable", T, CURLE_SSL_CACERT_BADFILE, "error setting "
	    "certificate file: /etc/mmsyncd/ca.pem", 0, NULL, NULL, NULL, NULL,
	    NULL, VERDICT_BLOCK, NOWAIT, "", "cannot read ca_file" },
	{ "unsupported protocol", W, CURLE_UNSUPPORTED_PROTOCOL, NULL, 0, NULL,
	    NULL, NULL, NULL, NULL, VERDICT_BLOCK, NOWAIT, "",
	    "unsupported protocol" },
	{ "malformed URL", W, CURLE_URL_MALFORMAT, NULL, 0, NULL, NULL, NULL,
	    NULL, NULL, VERDICT_BLOCK, NOWAIT, "", "malformed URL" },
	{ "timeout after a 200 status", W, CURLE_OPERATION_TIMEDOUT, NULL, 200,
	    NULL, NULL, NULL, NULL, NULL, VERDICT_DELIVERED, NOWAIT, "",
	    "delivered (200)" },
	{ "reset after a 400 status", T, CURLE_RECV_ERROR, NULL, 400, NULL,
	    NULL, NULL, JSON, "{\"id\":\"x", VERDICT_BACKOFF, NOWAIT, "",
	    "connection reset" },

	/* ---- other statuses */
	{ "301 redirect", T, 0, NULL, 301, NULL, NULL, NULL, HTML, "<a>moved</a>",
	    VERDICT_BLOCK, NOWAIT, "", "unexpected redirect (301): check "
	    "server_url" },
	{ "302 redirect webhook", W, 0, NULL, 302, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BLOCK, NOWAIT, "", "unexpected redirect (302): check "
	    "webhook_url" },
	{ "100 as final", T, 0, NULL, 100, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BACKOFF, NOWAIT, "", "unexpected answer (status 100)" },
	{ "no status, no error", T, 0, NULL, 0, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BACKOFF, NOWAIT, "", "unexpected answer" },
	{ "status 600", T, 0, NULL, 600, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BACKOFF, NOWAIT, "", "unexpected answer (status 600)" },
	{ "408", T, 0, NULL, 408, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BACKOFF, NOWAIT, "", "request timeout (408)" },
	{ "407", T, 0, NULL, 407, NULL, NULL, NULL, HTML, "<b>auth</b>",
	    VERDICT_BLOCK, NOWAIT, "", "proxy authentication required (407)" },
	{ "405", W, 0, NULL, 405, NULL, NULL, NULL, NULL, NULL,
	    VERDICT_BLOCK, NOWAIT, "", "method not allowed: check webhook_url" },
	{ "422", T, 0, NULL, 422, NULL, NULL, NULL, JSON,
	    AE("some.validation.error", "Bad field"),
	    VERDICT_SET_ASIDE, NOWAIT, "some.validation.error",
	    "422 some.validation.error: Bad field" },

	/* ---- bodies: AppError with missing fields, not JSON, odd JSON */
	{ "AppError message only", T, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    "{\"message\":\"only a message\"}",
	    VERDICT_SET_ASIDE, NOWAIT, "", "400: only a message" },
	{ "AppError id only", T, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    "{\"id\":\"x.y.app_error\"}",
	    VERDICT_SET_ASIDE, NOWAIT, "x.y.app_error", "400 x.y.app_error" },
	{ "AppError wrong types", T, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    "{\"id\":5,\"message\":null}",
	    VERDICT_SET_ASIDE, NOWAIT, "", "400: {\"id\":5,\"message\":null}" },
	{ "JSON array", T, 0, NULL, 400, NULL, NULL, NULL, JSON, "[1,2]",
	    VERDICT_SET_ASIDE, NOWAIT, "", "400: [1,2]" },
	{ "plain text 400", T, 0, NULL, 400, NULL, NULL, NULL, TEXT,
	    "limit exceeded\n",
	    VERDICT_SET_ASIDE, NOWAIT, "", "400: limit exceeded" },
	{ "truncated JSON", T, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    "{\"id\":\"api.x", VERDICT_SET_ASIDE, NOWAIT, "", "400: {\"id\":" },
	{ "AppError without content type", T, 0, NULL, 400, NULL, NULL, NULL,
	    NULL, " \n" AE("a.b", "c d"),
	    VERDICT_SET_ASIDE, NOWAIT, "a.b", "400 a.b: c d" },
	{ "AppError with text/plain type", T, 0, NULL, 400, NULL, NULL, NULL,
	    TEXT, AE("a.b", "c d"),
	    VERDICT_SET_ASIDE, NOWAIT, "a.b", "400 a.b: c d" },
	{ "id not ASCII", T, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    "{\"id\":\"a\\u00e9\\nb\",\"message\":\"m\"}",
	    VERDICT_SET_ASIDE, NOWAIT, "a???b", "400 a???b: m" },
	{ "message with control characters", T, 0, NULL, 400, NULL, NULL, NULL,
	    JSON, "{\"id\":\"i\",\"message\":\"line1\\nline2\\tx\\u0000y\"}",
	    VERDICT_SET_ASIDE, NOWAIT, "i", "400 i: line1 line2 x" },
	{ "message in UTF-8", T, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    "{\"id\":\"i\",\"message\":\"Nachricht zu lang: \xc3\xa9\"}",
	    VERDICT_SET_ASIDE, NOWAIT, "i", "Nachricht zu lang: \xc3\xa9" },
	{ "invalid UTF-8 in JSON", T, 0, NULL, 400, NULL, NULL, NULL, JSON,
	    "{\"id\":\"i\",\"message\":\"\xff\xfe\"}",
	    VERDICT_SET_ASIDE, NOWAIT, "", "400: {\"id\":\"i\",\"message\":\"??\"}" },

	/* ---- secrets */
	{ "body echoes the hook URL", W, 0, NULL, 400, NULL, NULL, NULL, HTML,
	    "<p>The requested URL /hooks/k3x9q1w8e7r6t5y4u3i2o1p0as was "
	    "refused</p>",
	    VERDICT_SET_ASIDE, NOWAIT, "", "/hooks/[redacted] was refused" },
	{ "body with a full URL", W, 0, NULL, 502, NULL, NULL, NULL, TEXT,
	    "upstream https://mm.example.com/hooks/k3x9q1w8e7 failed",
	    VERDICT_BACKOFF, NOWAIT, "", "upstream [url] failed" },
	{ "curl error with a URL", T, CURLE_COULDNT_RESOLVE_HOST,
	    "Could not resolve host: https://u:p4ssw0rd@mm", 0, NULL, NULL,
	    NULL, NULL, NULL, VERDICT_BACKOFF, NOWAIT, "", "host: [url])" },
};

static const char *
verdict_name(int v)
{
	static const char *const names[] = {
		"DELIVERED", "RATE_LIMITED", "BACKOFF", "BLOCK", "SET_ASIDE",
	};

	return v >= 0 && v < 5 ? names[v] : "?";
}

/* Valid UTF-8 without control characters. */
static int
clean_text(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int	 n, i;

	while (*p != '\0') {
		if (*p < 0x20 || *p == 0x7f)
			return 0;
		if (*p < 0x80) {
			p++;
			continue;
		}
		if ((*p & 0xe0) == 0xc0)
			n = 1;
		else if ((*p & 0xf0) == 0xe0)
			n = 2;
		else if ((*p & 0xf8) == 0xf0)
			n = 3;
		else
			return 0;
		for (i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		}
		p += n + 1;
	}
	return 1;
}

static int
printable_ascii(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s < 0x20 || *s > 0x7e)
			return 0;
	}
	return 1;
}

static void
run_case(const struct tcase *c)
{
	struct response	 r;
	struct outcome	 o;
	long long	 wait;

	memset(&r, 0, sizeof r);
	r.curl_code = c->curl;
	r.curl_error = c->curl_error;
	r.status = c->status;
	r.retry_after = c->retry_after;
	r.ratelimit_reset = c->reset;
	r.ratelimit_remaining = c->remaining;
	r.content_type = c->ctype;
	r.body = c->body;
	r.body_len = c->body != NULL ? strlen(c->body) : 0;
	memset(&o, 0x5a, sizeof o);	/* must be fully overwritten */
	outcome_classify(&r, c->auth, NOW, &o);

	ok(o.verdict == c->verdict, "%s: verdict %s", c->name,
	    verdict_name(c->verdict));
	if (o.verdict != c->verdict)
		printf("#   got %s (%s)\n", verdict_name(o.verdict), o.reason);
	wait = o.has_wait ? (long long)o.wait_ms : NOWAIT;
	is_int(wait, c->wait, "%s: wait", c->name);
	is_str(o.error_id, c->id, "%s: error_id", c->name);
	ok(strstr(o.reason, c->reason) != NULL, "%s: reason", c->name);
	if (strstr(o.reason, c->reason) == NULL)
		printf("#   got:  \"%s\"\n#   want: \"...%s...\"\n", o.reason,
		    c->reason);
	ok(o.status == c->status && clean_text(o.reason) &&
	    printable_ascii(o.error_id) && strlen(o.reason) < sizeof o.reason,
	    "%s: status kept, reason and id clean", c->name);
}

static void
test_table(void)
{
	size_t	 i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i]);
}

/* Secrets in bodies and curl errors never reach the reason. */
static void
test_no_urls(void)
{
	struct response	 r;
	struct outcome	 o;

	memset(&r, 0, sizeof r);
	r.status = 400;
	r.body = "<p>The requested URL /hooks/k3x9q1w8e7r6t5y4u3i2o1p0as "
	    "was refused</p>";
	r.body_len = strlen(r.body);
	outcome_classify(&r, AUTH_WEBHOOK, NOW, &o);
	ok(strstr(o.reason, "k3x9q1w8e7") == NULL, "hook id not echoed");

	memset(&r, 0, sizeof r);
	r.curl_code = CURLE_COULDNT_RESOLVE_HOST;
	r.curl_error = "Could not resolve host: https://u:p4ssw0rd@mm";
	outcome_classify(&r, AUTH_TOKEN, NOW, &o);
	ok(strstr(o.reason, "p4ssw0rd") == NULL, "URL in curl error not echoed");
}

static struct outcome
classify_body(long status, const char *ctype, const char *body, size_t len)
{
	struct response	 r;
	struct outcome	 o;

	memset(&r, 0, sizeof r);
	r.status = status;
	r.content_type = ctype;
	r.body = body;
	r.body_len = len;
	outcome_classify(&r, AUTH_TOKEN, NOW, &o);
	return o;
}

/* Huge, deep, binary and absent bodies: bounded, clean, no crash. */
static void
test_bodies(void)
{
	struct outcome	 o;
	char		*b;
	size_t		 len, i, n;

	/* 4 MiB of text */
	len = 4u << 20;
	b = malloc(len + 1);
	memset(b, 'a', len);
	b[len] = '\0';
	o = classify_body(500, HTML, b, len);
	ok(o.verdict == VERDICT_BACKOFF && strlen(o.reason) < 140 &&
	    strstr(o.reason, "aaaa...") != NULL,
	    "4 MiB body: backoff, short snippet (%zu bytes)", strlen(o.reason));

	/* an AppError padded beyond 64 KiB is not looked into */
	n = (size_t)snprintf(b, len, "{\"id\":\"big.app_error\",\"message\":"
	    "\"m\",\"pad\":\"");
	memset(b + n, 'p', 70000);
	memcpy(b + n + 70000, "\"}", 3);
	o = classify_body(400, JSON, b, strlen(b));
	ok(o.verdict == VERDICT_SET_ASIDE && o.error_id[0] == '\0' &&
	    clean_text(o.reason), "AppError beyond 64 KiB: not parsed");

	/* a long message (under 64 KiB): bounded, cut at a character */
	n = (size_t)snprintf(b, len, "{\"id\":\"long.app_error\","
	    "\"message\":\"x");
	for (i = 0; i < 3000; i++) {
		memcpy(b + n, "\xc3\xa9", 2);	/* e acute */
		n += 2;
	}
	memcpy(b + n, "\"}", 3);
	o = classify_body(400, JSON, b, n + 2);
	ok(o.verdict == VERDICT_SET_ASIDE && clean_text(o.reason) &&
	    strcmp(o.error_id, "long.app_error") == 0 &&
	    strlen(o.reason) < sizeof o.reason,
	    "long UTF-8 message: cut on a character boundary");
	o = classify_body(400, JSON, b, n + 2);
	ok(strncmp(o.reason, "400 long.app_error: x\xc3\xa9", 23) == 0,
	    "long message: starts as expected");

	/* deep nesting */
	n = (size_t)snprintf(b, len, "{\"a\":");
	for (i = 0; i < 60000; i++)
		b[n++] = '[';
	b[n] = '\0';
	o = classify_body(400, JSON, b, n);
	ok(o.verdict == VERDICT_SET_ASIDE && clean_text(o.reason),
	    "deeply nested JSON: no crash");
	n = 0;
	b[n++] = '{';
	b[n++] = '"';
	b[n++] = 'a';
	b[n++] = '"';
	b[n++] = ':';
	for (i = 0; i < 20000; i++)
		b[n++] = '[';
	for (i = 0; i < 20000; i++)
		b[n++] = ']';
	b[n++] = '}';
	b[n] = '\0';
	o = classify_body(400, JSON, b, n);
	ok(o.verdict == VERDICT_SET_ASIDE && o.error_id[0] == '\0',
	    "deeply nested valid JSON: not parsed, no crash");

	/* binary, NULs included */
	for (i = 0; i < 1024; i++)
		b[i] = (char)(i % 256);
	b[1024] = '\0';
	o = classify_body(400, "application/octet-stream", b, 1024);
	ok(o.verdict == VERDICT_SET_ASIDE && printable_ascii(o.reason) &&
	    strlen(o.reason) < 140, "binary body: printable snippet");
	memcpy(b, "{\"id\":\"a\0b\"}\xff\xfe", 15);
	o = classify_body(400, JSON, b, 15);
	ok(o.verdict == VERDICT_SET_ASIDE && clean_text(o.reason) &&
	    o.error_id[0] == '\0', "binary JSON-looking body");

	/* no body at all, even with a length */
	o = classify_body(400, JSON, NULL, 0);
	ok(o.verdict == VERDICT_SET_ASIDE && strcmp(o.reason, "400") == 0,
	    "no body: reason is the status");
	o = classify_body(502, JSON, NULL, 10);
	ok(o.verdict == VERDICT_BACKOFF &&
	    strcmp(o.reason, "server error 502") == 0,
	    "NULL body with a length");
	free(b);
}

static void
test_retry_after(void)
{
	uint64_t	 ms;
	size_t		 i;
	static const char *const bad[] = {
		"", "   ", "abc", "-1", "1.5", "+5", "5s", "0x10", "5 5",
		"Sun, 31 Feb 1994 08:49:47 GMT",	/* no such day */
		"Sun, 06 Nov 1994 25:00:00 GMT",	/* no such hour */
		"Sun, 06 Nov 1994 08:49:47 PST",	/* not GMT */
		"Sun, 06 Foo 1994 08:49:47 GMT",
		"Sun, 06 Nov 1994 08:49:47 GMT junk",
		"Sun, 06 Nov 94 08:49:47 GMT",
		"Sunday, 06-Nov-1994 08:49:47 GMT",
		"Sun Nov  6 08:49:47",
		"Xyz, 06 Nov 1994 08:49:47 GMT",
		"Sun, 06 Nov 1994 08:49 GMT",
	};

	is_int(outcome_parse_retry_after(NULL, NOW, &ms), -1, "NULL: -1");
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		is_int(outcome_parse_retry_after(bad[i], NOW, &ms), -1,
		    "\"%s\": -1", bad[i]);

#define RA(v, now, want) do {						\
	ms = 12345678;							\
	is_int(outcome_parse_retry_after((v), (now), &ms), 0,		\
	    "\"%s\": usable", (v));					\
	is_int(ms, (want), "\"%s\": %lld ms", (v), (long long)(want));	\
} while (0)
	RA("5", NOW, 5000);
	RA(" 5\t", NOW, 5000);
	RA("0", NOW, 0);
	RA("3600", NOW, MAXW);
	RA("3599", NOW, 3599000);
	RA("999999999", NOW, MAXW);
	RA("99999999999999999999999999999", NOW, MAXW);
	RA("5, 5", NOW, 5000);
	RA("Sun, 06 Nov 1994 08:49:47 GMT", NOW, 10000);
	RA("Sun, 06 Nov 1994 08:49:47 GMT", NOW + 250, 9750);
	RA("sun, 06 nov 1994 08:49:47 gmt", NOW, 10000);
	RA("Sun, 06 Nov 1994 08:49:37 GMT", NOW, 0);
	RA("Sat, 05 Nov 1994 08:49:47 GMT", NOW, 0);
	RA("Thu, 01 Jan 1970 00:00:00 GMT", NOW, 0);
	RA("Fri, 01 Jan 2100 00:00:00 GMT", NOW, MAXW);
	RA("Sun, 06 Nov 1994 08:49:47 GMT, Sun, 06 Nov 1994 08:49:47 GMT",
	    NOW, 10000);
	RA("Sunday, 06-Nov-94 08:49:47 GMT", NOW, 10000);
	RA("Sun Nov  6 08:49:47 1994", NOW, 10000);
	RA("Sun Nov 06 08:49:47 1994", NOW, 10000);
	RA("Tue, 29 Feb 2028 00:00:00 GMT", NOW2026, MAXW);
	RA("Thu, 01 Jan 2026 00:01:00 GMT", NOW2026, 60000);
	RA("Thursday, 01-Jan-26 00:00:10 GMT", NOW2026, 10000);
	/* 2077 would be more than 50 years ahead: 1977, in the past */
	RA("Saturday, 01-Jan-77 00:00:10 GMT", NOW2026, 0);
	/* 2076 is not more than 50 years ahead */
	RA("Wednesday, 01-Jan-76 00:00:10 GMT", NOW2026, MAXW);
	RA("Thu Jan  1 00:00:30 2026", NOW2026, 30000);
#undef RA
}

static void
test_backoff(void)
{
	uint64_t	 d, lo, hi, cap;
	unsigned	 n, i;
	int		 inside, grows = 1;

	/* n=1 (and n=0): exactly min */
	inside = 1;
	for (i = 0; i < 200; i++) {
		if (backoff_delay(1, 1000, 60000) != 1000 ||
		    backoff_delay(0, 1000, 60000) != 1000)
			inside = 0;
	}
	ok(inside, "n=0 and n=1: min");

	/* each n: within [min, cap], cap = min(max, min*2^(n-1)); the
	 * largest draw comes near the cap, so the cap grows then saturates */
	for (n = 2; n <= 10; n++) {
		cap = 1000ULL << (n - 1);
		if (cap > 60000)
			cap = 60000;
		inside = 1;
		lo = UINT64_MAX;
		hi = 0;
		for (i = 0; i < 2000; i++) {
			d = backoff_delay(n, 1000, 60000);
			if (d < 1000 || d > cap)
				inside = 0;
			if (d < lo)
				lo = d;
			if (d > hi)
				hi = d;
		}
		ok(inside, "n=%u: all draws in [1000, %llu]", n,
		    (unsigned long long)cap);
		if (hi < cap - (cap - 1000) / 10 || lo > 1000 + (cap - 1000) / 10)
			grows = 0;
	}
	ok(grows, "draws spread over the whole range as the cap grows");

	inside = 1;
	for (n = 11; n < 5000; n += 7) {
		d = backoff_delay(n, 1000, 60000);
		if (d < 1000 || d > 60000)
			inside = 0;
	}
	ok(inside, "large n: saturated at max");
	d = backoff_delay(1000, 1000, 60000);
	ok(d >= 1000 && d <= 60000, "n=1000 safe");
	d = backoff_delay(UINT_MAX, 1000, 60000);
	ok(d >= 1000 && d <= 60000, "n=UINT_MAX safe");
	d = backoff_delay(64, 1ULL << 62, UINT64_MAX);
	ok(d >= 1ULL << 62, "huge min: no overflow");
	d = backoff_delay(3, 1ULL << 62, UINT64_MAX);
	ok(d >= 1ULL << 62, "huge min, small n: no overflow");
	is_int(backoff_delay(9, 5000, 5000), 5000, "min == max");
	is_int(backoff_delay(9, 5000, 10), 5000, "max < min: min");
	is_int(backoff_delay(9, 0, 10), 0, "min 0: 0");
}

static void
test_pace(void)
{
	is_int(pace_next_start(1000, 500, 1200), 1500,
	    "answered early: interval after the previous start");
	is_int(pace_next_start(1000, 500, 2000), 2000,
	    "answered late: not before the answer");
	is_int(pace_next_start(1000, 500, 1500), 1500, "both equal");
	is_int(pace_next_start(1000, 0, 1000), 1000, "no interval");
	is_int(pace_next_start(0, 0, 0), 0, "all zero");
	ok(pace_next_start(UINT64_MAX - 10, 100, 5) == UINT64_MAX,
	    "overflow saturates");
}

int
main(void)
{
	test_table();
	test_no_urls();
	test_bodies();
	test_retry_after();
	test_backoff();
	test_pace();
	return tap_done();
}
