/*
 * http.c: libcurl's multi interface driven by the libevent loop (the
 * socket and timer callbacks of curl's hiperfifo.c design).  One multi
 * handle for the process, so connections are kept alive and reused.  This
 * file moves bytes; what an answer means is outcome.c's business.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "mmsyncd.h"

/* Only the start of an answer to a post matters: an AppError is small. */
#define HTTP_MAX_BODY		(64 * 1024)
#define HTTP_MAX_HEADER		1024
#define SYSTEM_CA_PATH		"/etc/ssl/certs"
/* Finished easy handles kept for reuse: creating one per row costs more
 * than the request's own work. */
#define HTTP_SPARE_HANDLES	64

struct http {
	struct event_base	*base;
	CURLM			*multi;
	struct event		*timer;
	struct http_request	*requests;	/* in flight */
	CURL			*spare[HTTP_SPARE_HANDLES];
	size_t			 nspare;
};

struct http_request {
	struct http		*http;
	struct http_request	*next;
	CURL			*easy;
	struct curl_slist	*headers;
	http_done_cb		 done;
	void			*arg;

	struct buf		 body;
	size_t			 body_max;
	bool			 body_cut;
	char			*retry_after;
	char			*ratelimit_reset;
	char			*ratelimit_remaining;
	char			*content_type;
	char			 error[CURL_ERROR_SIZE];
	uint64_t		 sent_ms;	/* when the request went out */
};

/* What libevent watches for one of curl's sockets. */
struct http_socket {
	struct http		*http;
	curl_socket_t		 fd;
	struct event		*ev;
};

static void	http_check_done(struct http *);

static void
request_free(struct http_request *r)
{
	struct http	*h = r->http;

	if (h->nspare < HTTP_SPARE_HANDLES)
		h->spare[h->nspare++] = r->easy;
	else
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	buf_free(&r->body);
	free(r->retry_after);
	free(r->ratelimit_reset);
	free(r->ratelimit_remaining);
	free(r->content_type);
	free(r);
}

static void
unlink_request(struct http *h, struct http_request *r)
{
	struct http_request	**pp;

	for (pp = &h->requests; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			return;
		}
	}
}

static void
on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct http	*h = arg;
	int		 flags = 0, running;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(h->multi, fd, flags, &running);
	http_check_done(h);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct http	*h = arg;
	int		 running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	http_check_done(h);
}

/* curl tells us which sockets to watch, for what. */
static int
socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp,
    void *socketp)
{
	struct http		*h = userp;
	struct http_socket	*s = socketp;
	short			 kind;

	(void)easy;
	if (action == CURL_POLL_REMOVE) {
		if (s != NULL) {
			event_free(s->ev);
			free(s);
			curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	kind = EV_PERSIST | ((action & CURL_POLL_IN) ? EV_READ : 0) |
	    ((action & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (s == NULL) {
		s = xcalloc(1, sizeof *s);
		s->http = h;
		s->fd = fd;
		s->ev = event_new(h->base, fd, kind, on_socket_event, h);
		curl_multi_assign(h->multi, fd, s);
	} else {
		/* Re-assigning a pending event corrupts libevent. */
		event_del(s->ev);
		event_assign(s->ev, h->base, fd, kind, on_socket_event, h);
	}
	event_add(s->ev, NULL);
	return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct http	*h = userp;
	struct timeval	 tv;

	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(h->timer);
		return 0;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	evtimer_add(h->timer, &tv);
	return 0;
}

struct http *
http_new(struct event_base *base)
{
	struct http	*h = xcalloc(1, sizeof *h);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		fatalx("curl_global_init failed");
	h->base = base;
	if ((h->multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	h->timer = evtimer_new(base, on_timer, h);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

void
http_free(struct http *h)
{
	if (h == NULL)
		return;
	while (h->requests != NULL)
		http_cancel(h, h->requests);
	while (h->nspare > 0)
		curl_easy_cleanup(h->spare[--h->nspare]);
	curl_multi_cleanup(h->multi);
	event_free(h->timer);
	curl_global_cleanup();
	free(h);
}

/* Keep the first value of the few headers outcome.c reads. */
static void
keep_header(char **slot, const char *value, size_t len)
{
	if (*slot == NULL)
		*slot = xstrndup(value, len);
}

static size_t
header_cb(char *data, size_t size, size_t n, void *arg)
{
	struct http_request	*r = arg;
	size_t			 len = size * n, name_len, vlen;
	const char		*colon, *value;

	/* A new status line starts a new answer (after a 100 Continue). */
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		free(r->retry_after);
		free(r->ratelimit_reset);
		free(r->ratelimit_remaining);
		free(r->content_type);
		r->retry_after = r->ratelimit_reset = NULL;
		r->ratelimit_remaining = r->content_type = NULL;
		return len;
	}
	if (len > HTTP_MAX_HEADER ||
	    (colon = memchr(data, ':', len)) == NULL)
		return len;
	name_len = (size_t)(colon - data);
	value = colon + 1;
	vlen = len - name_len - 1;
	while (vlen > 0 && (*value == ' ' || *value == '\t'))
		value++, vlen--;
	while (vlen > 0 && (value[vlen - 1] == '\r' || value[vlen - 1] == '\n'
	    || value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
		vlen--;
#define IS(h) (name_len == sizeof(h) - 1 && strncasecmp(data, h, name_len) == 0)
	if (IS("Retry-After"))
		keep_header(&r->retry_after, value, vlen);
	else if (IS("X-RateLimit-Reset"))
		keep_header(&r->ratelimit_reset, value, vlen);
	else if (IS("X-RateLimit-Remaining"))
		keep_header(&r->ratelimit_remaining, value, vlen);
	else if (IS("Content-Type"))
		keep_header(&r->content_type, value, vlen);
#undef IS
	return len;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* Called as the request is about to go out on a ready connection: the
 * moment pacing counts from, later than the handle's start by the
 * connect (and anything else the loop did first). */
static int
prereq_cb(void *arg, char *primary_ip, char *local_ip, int primary_port,
    int local_port)
{
	struct http_request	*r = arg;

	(void)primary_ip;
	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	r->sent_ms = now_ms_ceil();
	return CURL_PREREQFUNC_OK;
}
#endif

static size_t
write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct http_request	*r = arg;
	size_t			 len = size * n, room;

	room = r->body_max - r->body.len;
	if (len > room) {
		r->body_cut = true;
		len = room;
	}
	if (len > 0)
		buf_add(&r->body, data, len);
	return size * n;	/* the rest is read and dropped */
}

/* A request to TC's server: a POST of BODY, or a GET when BODY is NULL. */
static struct http_request *
request_start(struct http *h, const struct target_conf *tc, const char *url,
    const char *body, size_t len, size_t body_max, http_done_cb done,
    void *arg)
{
	struct http_request	*r = xcalloc(1, sizeof *r);
	char			*auth, ua[64];

	r->http = h;
	r->done = done;
	r->arg = arg;
	r->body_max = body_max;
	buf_init(&r->body);
	if (h->nspare > 0) {
		r->easy = h->spare[--h->nspare];
		curl_easy_reset(r->easy);
	} else if ((r->easy = curl_easy_init()) == NULL)
		fatalx("curl_easy_init failed");

	if (body != NULL)
		r->headers = curl_slist_append(r->headers,
		    "Content-Type: application/json");
	r->headers = curl_slist_append(r->headers, "Accept: application/json");
	/* No "Expect: 100-continue" round trip for small bodies. */
	r->headers = curl_slist_append(r->headers, "Expect:");
	if (tc->auth == AUTH_TOKEN) {
		xasprintf(&auth, "Authorization: Bearer %s", tc->token);
		r->headers = curl_slist_append(r->headers, auth);
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	snprintf(ua, sizeof ua, "mmsyncd/%s", PACKAGE_VERSION);

	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	if (body != NULL) {
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)len);
		curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS, body);
	}
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, ua);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)tc->timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)tc->connect_timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (tc->ca_file != NULL) {
		/* The file is added to the system's trust store (the hashed
		 * directory), not put in its place. */
		curl_easy_setopt(r->easy, CURLOPT_CAINFO, tc->ca_file);
		if (access(SYSTEM_CA_PATH, X_OK) == 0)
			curl_easy_setopt(r->easy, CURLOPT_CAPATH,
			    SYSTEM_CA_PATH);
	}
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->error);
	curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
#if LIBCURL_VERSION_NUM >= 0x075000
	curl_easy_setopt(r->easy, CURLOPT_PREREQFUNCTION, prereq_cb);
	curl_easy_setopt(r->easy, CURLOPT_PREREQDATA, r);
#endif

	if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK)
		fatalx("curl_multi_add_handle failed");
	r->next = h->requests;
	h->requests = r;
	return r;
}

struct http_request *
http_post(struct http *h, const struct target_conf *tc, const char *body,
    size_t len, http_done_cb done, void *arg)
{
	struct http_request	*r;
	char			*url;

	if (tc->auth == AUTH_WEBHOOK)
		return request_start(h, tc, tc->webhook_url, body, len,
		    HTTP_MAX_BODY, done, arg);
	xasprintf(&url, "%s/api/v4/posts?set_online=false", tc->server_url);
	r = request_start(h, tc, url, body, len, HTTP_MAX_BODY, done, arg);
	free(url);
	return r;
}

struct http_request *
http_get(struct http *h, const struct target_conf *tc, const char *path,
    size_t body_max, http_done_cb done, void *arg)
{
	struct http_request	*r;
	char			*url;

	xasprintf(&url, "%s%s", tc->server_url, path);
	r = request_start(h, tc, url, NULL, 0, body_max, done, arg);
	free(url);
	return r;
}

void
http_cancel(struct http *h, struct http_request *r)
{
	unlink_request(h, r);
	curl_multi_remove_handle(h->multi, r->easy);
	request_free(r);
}

/* Hand every finished transfer to its owner. */
static void
http_check_done(struct http *h)
{
	CURLMsg			*msg;
	int			 left;
	struct http_request	*r;
	struct response		 resp;
	long			 status = 0;

	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
		    (char **)&r);
		/* msg is only valid until the handle is removed. */
		memset(&resp, 0, sizeof resp);
		resp.curl_code = (int)msg->data.result;
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_multi_remove_handle(h->multi, r->easy);
		unlink_request(h, r);

		/* Kept even when the transfer broke afterwards: a 2xx status
		 * line means the post exists (outcome.c decides). */
		resp.status = status;
		resp.curl_error = r->error[0] != '\0' ? r->error :
		    curl_easy_strerror(msg->data.result);
		resp.retry_after = r->retry_after;
		resp.ratelimit_reset = r->ratelimit_reset;
		resp.ratelimit_remaining = r->ratelimit_remaining;
		resp.content_type = r->content_type;
		resp.body = buf_cstr(&r->body);
		resp.body_len = r->body.len;
		resp.body_cut = r->body_cut;
		resp.sent_ms = r->sent_ms;
		r->done(r->arg, &resp);
		request_free(r);
	}
}

