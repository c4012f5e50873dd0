#!/usr/bin/env python3
"""End-to-end checks of tests/fake-mattermost, the stand-in Mattermost server.

Starts the server (path from $FAKE_MATTERMOST, default tests/fake-mattermost)
a few times with different options, talks real HTTP(S) to it and prints TAP:
one "ok N - ..." / "not ok N - ..." line per check, then "1..N".  Exit status
1 if any check failed.  Python 3 standard library only.
"""

import email.utils
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("FAKE_MATTERMOST", "tests/fake-mattermost")
TOKEN = "test-token"
CHANNEL = "4xp9fdt77pncbef59f4k1qe83o"
UNKNOWN_CHANNEL = "zzzzzzzzzzzzzzzzzzzzzzzzzz"
HOOK = "hook1234567890abcdefghijkl"
START_TIMEOUT = 10.0


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def check(self, description, fn, *args):
        """Runs fn(*args); a raised exception makes the check fail."""
        self.n += 1
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            self.failed += 1
            print(f"not ok {self.n} - {description}")
            for line in f"{type(e).__name__}: {e}".splitlines() or [""]:
                print(f"# {line}")
        else:
            print(f"ok {self.n} - {description}")
        sys.stdout.flush()

    def finish(self):
        print(f"1..{self.n}")
        return 1 if self.failed else 0


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


class Response:
    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name)


class Server:
    """One fake-mattermost process with its own files in a temp dir."""

    def __init__(self, tmp, name, *args, tls_ca=None):
        self.dir = os.path.join(tmp, name)
        os.mkdir(self.dir)
        self.port_file = os.path.join(self.dir, "port")
        self.posts_file = os.path.join(self.dir, "posts.jsonl")
        self.requests_file = os.path.join(self.dir, "requests.jsonl")
        self.stderr_file = os.path.join(self.dir, "stderr")
        self.tls_ca = tls_ca
        self.port = None
        with open(self.stderr_file, "wb") as err:
            self.proc = subprocess.Popen(
                [BIN, "--port-file", self.port_file,
                 "--posts", self.posts_file,
                 "--requests", self.requests_file, *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err)
        deadline = time.monotonic() + START_TIMEOUT
        while self.port is None:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    self.port = int(f.read().strip())
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name}: server exited with "
                                   f"{self.proc.returncode}: {self.stderr()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: no port file after "
                                   f"{START_TIMEOUT} s")
            time.sleep(0.01)

    def stderr(self):
        with open(self.stderr_file, errors="replace") as f:
            return f.read()

    def connection(self, timeout=5.0, context=None):
        if self.tls_ca is not None or context is not None:
            if context is None:
                context = ssl.create_default_context(cafile=self.tls_ca)
            return http.client.HTTPSConnection("127.0.0.1", self.port,
                                               timeout=timeout,
                                               context=context)
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=5.0,
                context=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        conn = self.connection(timeout, context)
        start = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.headers, data,
                            time.monotonic() - start)
        finally:
            conn.close()

    def post(self, message, channel=CHANNEL, token=TOKEN, extra=None,
             **kw):
        body = {"channel_id": channel, "message": message}
        body.update(extra or {})
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", "/api/v4/posts?set_online=false", body,
                            headers, **kw)

    def hook(self, payload, hook_id=HOOK, content_type="application/json",
             **kw):
        return self.request("POST", f"/hooks/{hook_id}", payload,
                            {"Content-Type": content_type}, **kw)

    def _lines(self, path):
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def posts(self):
        return self._lines(self.posts_file)

    def requests(self):
        return self._lines(self.requests_file)

    def stop(self):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


def expect_app_error(r, status, error_id):
    expect_eq(r.status, status, "status")
    expect(r.header("Content-Type").startswith("application/json"),
           f"Content-Type {r.header('Content-Type')!r}")
    e = r.json()
    expect_eq(e.get("id"), error_id, "AppError id")
    expect_eq(e.get("status_code"), status, "status_code")
    for key in ("message", "detailed_error", "request_id"):
        expect(isinstance(e.get(key), str), f"AppError has no string {key}")
    expect(e["request_id"], "empty request_id")


def expect_stopped_cleanly(server):
    status = server.stop()
    err = server.stderr()
    expect_eq(status, 0, "exit status after SIGTERM")
    for marker in ("Sanitizer", "runtime error", "LeakSanitizer"):
        expect(marker not in err, f"sanitizer report on stderr:\n{err}")


# --------------------------------------------------------------------------
# Checks against a server with default options


def check_rest_created(s):
    r = s.post("hello from the test", extra={"props": {"k": [1, "two"]}})
    expect_eq(r.status, 201, "status")
    expect_eq(r.header("Content-Type"), "application/json", "Content-Type")
    p = r.json()
    expect(isinstance(p.get("id"), str) and len(p["id"]) == 26
           and p["id"].isalnum() and p["id"] == p["id"].lower(),
           f"post id {p.get('id')!r}")
    expect_eq(p.get("channel_id"), CHANNEL, "channel_id")
    expect_eq(p.get("message"), "hello from the test", "message")
    expect_eq(p.get("props"), {"k": [1, "two"]}, "props")
    expect(isinstance(p.get("create_at"), int)
           and abs(p["create_at"] - time.time() * 1000) < 60000,
           f"create_at {p.get('create_at')!r}")
    expect(isinstance(p.get("user_id"), str) and p["user_id"], "user_id")
    recorded = [x for x in s.posts() if x["id"] == p["id"]]
    expect_eq(len(recorded), 1, "lines in --posts for this post")
    line = recorded[0]
    expect_eq(line["kind"], "rest", "kind")
    expect_eq(line["message"], "hello from the test", "recorded message")
    expect_eq(line["channel_id"], CHANNEL, "recorded channel_id")
    expect_eq(line["props"], {"k": [1, "two"]}, "recorded props")
    expect(isinstance(line["n"], int) and isinstance(line["t"], float),
           "n and t")


def check_requests_log(s):
    r = s.post("logged")
    expect_eq(r.status, 201, "status")
    reqs = s.requests()
    expect(reqs, "no lines in --requests")
    last = reqs[-1]
    expect_eq(last["method"], "POST", "method")
    expect_eq(last["path"], "/api/v4/posts?set_online=false", "path")
    expect_eq(last["auth"], "bearer-ok", "auth")
    expect_eq(last["body_bytes"],
              len(json.dumps({"channel_id": CHANNEL, "message": "logged"})),
              "body_bytes")
    expect_eq([x["n"] for x in reqs], list(range(1, len(reqs) + 1)),
              "request numbers")


def check_token_scheme(s):
    r = s.request("POST", "/api/v4/posts",
                  {"channel_id": CHANNEL, "message": "token scheme"},
                  {"Authorization": f"Token {TOKEN}"})
    expect_eq(r.status, 201, "status")


def check_bad_token(s):
    r = s.post("x", token="wrong-token")
    expect_app_error(r, 401, "api.context.session_expired.app_error")
    expect_eq(s.requests()[-1]["auth"], "bearer-bad", "logged auth")
    r = s.post("x", token=None)
    expect_app_error(r, 401, "api.context.session_expired.app_error")
    expect_eq(s.requests()[-1]["auth"], "none", "logged auth")


def check_unknown_channel(s):
    before = len(s.posts())
    expect_app_error(s.post("x", channel=UNKNOWN_CHANNEL), 403,
                     "api.context.permissions.app_error")
    expect_app_error(s.post("x", channel="not-an-id"), 403,
                     "api.context.permissions.app_error")
    expect_eq(len(s.posts()), before, "posts recorded")


def check_message_length(s):
    before = len(s.posts())
    r = s.post("\u20ac" * 16384)
    expect_app_error(r, 400, "model.post.is_valid.message_length.app_error")
    expect_eq(len(s.posts()), before, "posts recorded after the 400")
    r = s.post("\u20ac" * 16383)
    expect_eq(r.status, 201, "status at exactly 16383 code points")
    expect_eq(r.json()["message"], "\u20ac" * 16383, "message kept whole")


def check_bad_body(s):
    headers = {"Authorization": f"Bearer {TOKEN}",
               "Content-Type": "application/json"}
    for body in ("this is not json", "[1, 2]", "",
                 '{"channel_id": "%s", "message": 5}' % CHANNEL,
                 "[" * 10000 + "]" * 10000):
        r = s.request("POST", "/api/v4/posts", body, headers)
        expect_app_error(r, 400, "api.context.invalid_body_param.app_error")


def check_too_large(s):
    r = s.post("x" * 300001)
    expect_app_error(r, 413, "api.context.request_body_too_large.app_error")


def check_dedupe(s):
    extra = {"pending_post_id": "test:dedupe:1"}
    r1 = s.post("once", extra=extra)
    r2 = s.post("once", extra=extra)
    expect_eq((r1.status, r2.status), (201, 201), "statuses")
    expect_eq(r2.json()["id"], r1.json()["id"], "post id of the repeat")
    expect_eq(r2.json()["create_at"], r1.json()["create_at"], "create_at")
    lines = [x for x in s.posts() if x["pending_post_id"] == "test:dedupe:1"]
    expect_eq(len(lines), 1, "posts recorded for the pending_post_id")
    r3 = s.post("once", extra={"pending_post_id": "test:dedupe:2"})
    expect(r3.json()["id"] != r1.json()["id"], "another id made the same post")


def check_webhook_ok(s):
    r = s.hook({"text": "from a hook", "username": "bot"})
    expect_eq(r.status, 200, "status")
    expect_eq(r.header("Content-Type"), "text/plain", "Content-Type")
    expect_eq(r.body, b"ok", "body")
    line = s.posts()[-1]
    expect_eq(line["kind"], "webhook", "kind")
    expect_eq(line["message"], "from a hook", "message")
    expect_eq(line["channel"], None, "channel")
    expect_eq(line["username"], "bot", "username")


def check_webhook_form(s):
    from urllib.parse import urlencode
    r = s.hook(urlencode({"payload": json.dumps({"text": "form & more"})}),
               content_type="application/x-www-form-urlencoded")
    expect_eq(r.status, 200, "status")
    expect_eq(s.posts()[-1]["message"], "form & more", "message")


def check_webhook_unknown_hook(s):
    expect_app_error(s.hook({"text": "x"}, hook_id="z" * 26), 400,
                     "web.incoming_webhook.invalid.app_error")


def check_webhook_unknown_channel(s):
    before = len(s.posts())
    expect_app_error(s.hook({"text": "x", "channel": "no-such-channel"}), 404,
                     "web.incoming_webhook.channel.app_error")
    expect_app_error(s.hook({"text": "x", "channel": CHANNEL}), 404,
                     "web.incoming_webhook.channel.app_error")
    expect_eq(len(s.posts()), before, "posts recorded")


def check_webhook_override(s):
    r = s.hook({"text": "elsewhere", "channel": "#off-topic",
                "icon_url": "https://example.com/i.png",
                "attachments": [{"text": "card"}]})
    expect_eq(r.status, 200, "status")
    line = s.posts()[-1]
    expect_eq(line["channel"], "off-topic", "recorded channel")
    expect_eq(line["icon_url"], "https://example.com/i.png", "icon_url")
    expect_eq(line["attachments"], [{"text": "card"}], "attachments")


def check_webhook_bad_payloads(s):
    expect_app_error(s.hook({"username": "x"}), 400,
                     "web.incoming_webhook.text.app_error")
    expect_app_error(s.hook("{not json"), 400,
                     "model.incoming_hook.parse_data.app_error")
    expect_app_error(s.hook({"text": "x", "channel": "@nobody"}), 400,
                     "web.incoming_webhook.user.app_error")


def check_channel_posts(s):
    since = int(time.time() * 1000) - 1
    first = s.post("list one", extra={"props": {"mmsyncd_row": "row-1"}})
    second = s.post("list two", extra={"props": {"mmsyncd_row": "row-2"}})
    expect_eq((first.status, second.status), (201, 201), "post statuses")
    ids = [first.json()["id"], second.json()["id"]]
    path = f"/api/v4/channels/{CHANNEL}/posts?since={since}"
    r = s.request("GET", path,
                  headers={"Authorization": f"Bearer {TOKEN}"})
    expect_eq(r.status, 200, "status")
    expect(r.header("Content-Type").startswith("application/json"),
           "Content-Type")
    pl = r.json()
    for key in ("order", "posts", "next_post_id", "prev_post_id"):
        expect(key in pl, f"PostList has no {key}")
    expect_eq(pl["order"][:2], ids[::-1], "newest first")
    expect_eq(set(pl["order"]), set(pl["posts"]), "order and posts agree")
    expect_eq(pl["posts"][ids[0]]["props"], {"mmsyncd_row": "row-1"},
              "props of the first post")
    later = second.json()["create_at"]
    r = s.request("GET", f"/api/v4/channels/{CHANNEL}/posts?since={later}",
                  headers={"Authorization": f"Bearer {TOKEN}"})
    expect(ids[1] not in r.json()["order"], "since is exclusive")
    r = s.request("GET", f"/api/v4/channels/{CHANNEL}/posts")
    expect_app_error(r, 401, "api.context.session_expired.app_error")
    r = s.request("GET", f"/api/v4/channels/{UNKNOWN_CHANNEL}/posts",
                  headers={"Authorization": f"Bearer {TOKEN}"})
    expect_app_error(r, 403, "api.context.permissions.app_error")


def check_unknown_path_and_method(s):
    expect_app_error(s.request("GET", "/api/v4/nothing"), 404,
                     "api.context.404.app_error")
    r = s.request("GET", "/api/v4/posts")
    expect_eq(r.status, 405, "status of GET /api/v4/posts")
    r = s.request("PUT", f"/hooks/{HOOK}", "{}")
    expect_eq(r.status, 405, "status of PUT /hooks/<id>")


def check_malformed_input(s):
    def raw(data):
        """Sends raw bytes; returns what came back (b"" if the server
        dropped the connection before we were done, which is fine)."""
        out = b""
        try:
            with socket.create_connection(("127.0.0.1", s.port),
                                          timeout=5) as c:
                c.sendall(data)
                c.shutdown(socket.SHUT_WR)
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    out += chunk
        except OSError:
            pass
        return out

    for data in (
            b"\x00\xff garbage\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n",
            b"POST /api/v4/posts HTTP/1.1\r\nContent-Length: 99999999999\r\n"
            b"\r\n",
            b"POST /api/v4/posts HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            b"POST /api/v4/posts HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
            b"\r\nzz\r\n",
            b"GET /api/v4/channels/%s/posts?since=%%zz&x HTTP/1.1\r\n"
            b"Authorization: Bearer %s\r\n\r\n"
            % (CHANNEL.encode(), TOKEN.encode())):
        answer = raw(data)
        expect(answer == b"" or answer.startswith(b"HTTP/1.1 4"),
               f"answer to {data[:40]!r}: {answer[:40]!r}")
    expect(s.proc.poll() is None, "server died")
    expect_eq(s.post("still alive").status, 201, "status after garbage")


# --------------------------------------------------------------------------
# Scripted faults: request numbers count every request, so this server gets
# exactly one request per step, in this order.

FAULTS = [
    (1, "429:7"), (2, "429:date:5"), (3, "429:bare"), (4, "429:reset:3"),
    (5, "500"), (6, "502"), (7, "notjson"), (8, "reset"), (9, "hang"),
    (10, "remaining0:4"), (11, "garbage2xx"), (12, "slow:400"),
    (13, "401"), (14, "404"), (15, "429"),
]


def fault_args():
    args = []
    for n, kind in FAULTS:
        args += ["--fault", f"{n}:{kind}"]
    return args


def expect_429_body(r):
    expect_eq(r.status, 429, "status")
    expect(r.header("Content-Type").startswith("text/plain"), "Content-Type")
    expect_eq(r.body.strip(), b"limit exceeded", "body")


def fault_429_seconds(s):
    r = s.post("f1", extra={"pending_post_id": "f:1"})
    expect_429_body(r)
    expect_eq(r.header("Retry-After"), "7", "Retry-After")
    expect_eq(r.header("X-RateLimit-Reset"), "7", "X-RateLimit-Reset")
    expect_eq(r.header("X-RateLimit-Remaining"), "0", "X-RateLimit-Remaining")


def fault_429_date(s):
    r = s.post("f2", extra={"pending_post_id": "f:2"})
    expect_429_body(r)
    value = r.header("Retry-After")
    expect(value and value.endswith(" GMT"), f"Retry-After {value!r}")
    when = email.utils.parsedate_to_datetime(value).timestamp()
    expect(2 <= when - time.time() <= 7, f"Retry-After {value!r} not ~5 s on")


def fault_429_bare(s):
    r = s.post("f3", extra={"pending_post_id": "f:3"})
    expect_429_body(r)
    for h in ("Retry-After", "X-RateLimit-Reset", "X-RateLimit-Remaining",
              "X-RateLimit-Limit"):
        expect(r.header(h) is None, f"unexpected {h}: {r.header(h)}")


def fault_429_reset(s):
    r = s.post("f4", extra={"pending_post_id": "f:4"})
    expect_429_body(r)
    expect(r.header("Retry-After") is None, "unexpected Retry-After")
    expect_eq(r.header("X-RateLimit-Reset"), "3", "X-RateLimit-Reset")


def fault_500(s):
    expect_app_error(s.post("f5", extra={"pending_post_id": "f:5"}), 500,
                     "app.post.save.app_error")


def fault_502(s):
    r = s.post("f6", extra={"pending_post_id": "f:6"})
    expect_eq(r.status, 502, "status")
    expect(r.header("Content-Type").startswith("text/plain"), "Content-Type")


def fault_notjson(s):
    r = s.post("f7", extra={"pending_post_id": "f:7"})
    expect_eq(r.status, 500, "status")
    expect(r.body.lstrip().startswith(b"<html"), f"body {r.body[:40]!r}")


def fault_reset(s):
    try:
        r = s.post("f8", extra={"pending_post_id": "f:8"})
    except socket.timeout:
        raise AssertionError("timed out instead of a reset")
    except (ConnectionError, http.client.HTTPException):
        return
    raise AssertionError(f"got an answer: {r.status}")


def fault_hang(s):
    start = time.monotonic()
    try:
        r = s.post("f9", extra={"pending_post_id": "f:9"}, timeout=1.0)
    except socket.timeout:
        elapsed = time.monotonic() - start
        expect(elapsed >= 0.9, f"gave up after {elapsed:.2f} s")
        return
    raise AssertionError(f"got an answer: {r.status}")


def fault_remaining0(s):
    r = s.post("f10", extra={"pending_post_id": "f:10"})
    expect_eq(r.status, 201, "status")
    expect_eq(r.header("X-RateLimit-Remaining"), "0", "X-RateLimit-Remaining")
    expect_eq(r.header("X-RateLimit-Reset"), "4", "X-RateLimit-Reset")
    expect_eq(r.json()["message"], "f10", "post")


def fault_garbage2xx(s):
    r = s.post("f11", extra={"pending_post_id": "f:11"})
    expect_eq(r.status, 201, "status")
    try:
        json.loads(r.body)
    except ValueError:
        return
    raise AssertionError(f"body is JSON: {r.body!r}")


def fault_slow(s):
    r = s.post("f12", extra={"pending_post_id": "f:12"})
    expect_eq(r.status, 201, "status")
    expect(r.elapsed >= 0.39, f"answered after {r.elapsed:.3f} s")


def fault_401(s):
    expect_app_error(s.post("f13", extra={"pending_post_id": "f:13"}), 401,
                     "api.context.session_expired.app_error")


def fault_404_webhook(s):
    expect_app_error(s.hook({"text": "f14"}), 404,
                     "web.incoming_webhook.channel.app_error")


def fault_429_default(s):
    r = s.post("f15", extra={"pending_post_id": "f:15"})
    expect_429_body(r)
    expect_eq(r.header("Retry-After"), "1", "Retry-After")


def fault_then_normal(s):
    r = s.post("f16", extra={"pending_post_id": "f:16"})
    expect_eq(r.status, 201, "status")


def fault_posts_recorded(s):
    created = sorted(x["n"] for x in s.posts())
    expect_eq(created, [10, 11, 12, 16], "requests that created a post")
    expect_eq(len(s.requests()), 16, "requests logged")


# --------------------------------------------------------------------------
# Rate limiting, latency, dedupe off, TLS


def check_rate_limit(s):
    statuses = []
    limited = None
    first = None
    for i in range(20):
        r = s.post(f"rl{i}")
        first = first or r
        statuses.append(r.status)
        if r.status == 429:
            limited = r
            break
    expect_eq(first.header("X-RateLimit-Limit"), "3", "X-RateLimit-Limit")
    expect(first.header("X-RateLimit-Remaining") is not None,
           "no X-RateLimit-Remaining on a success")
    expect(limited is not None, f"never limited: {statuses}")
    expect(statuses.count(201) >= 2, f"statuses {statuses}")
    expect_429_body(limited)
    expect(int(limited.header("Retry-After")) >= 1, "Retry-After")
    expect_eq(limited.header("X-RateLimit-Limit"), "3", "X-RateLimit-Limit")
    expect_eq(limited.header("X-RateLimit-Remaining"), "0",
              "X-RateLimit-Remaining")
    expect(int(limited.header("X-RateLimit-Reset")) >= 1, "X-RateLimit-Reset")
    # the webhook endpoint shares the same bucket
    expect_429_body(s.hook({"text": "limited too"}))
    expect_eq(len(s.posts()), statuses.count(201), "posts recorded")


def check_latency_and_no_dedupe(s):
    extra = {"pending_post_id": "same"}
    r1 = s.post("a", extra=extra)
    r2 = s.post("a", extra=extra)
    expect_eq((r1.status, r2.status), (201, 201), "statuses")
    expect(r1.elapsed >= 0.29, f"answered after {r1.elapsed:.3f} s")
    expect(r1.json()["id"] != r2.json()["id"], "deduped with the window off")
    expect_eq(len(s.posts()), 2, "posts recorded")


def make_cert(tmp):
    cert = os.path.join(tmp, "cert.pem")
    key = os.path.join(tmp, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-days", "2", "-keyout", key, "-out", cert],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def check_tls_untrusted(s):
    try:
        s.post("x", context=ssl.create_default_context())
    except ssl.SSLError:
        return
    raise AssertionError("a default-verifying client accepted the cert")


def check_tls_trusted(s):
    r = s.post("over tls")
    expect_eq(r.status, 201, "status")
    expect_eq(r.json()["message"], "over tls", "message")
    expect_eq(s.posts()[-1]["message"], "over tls", "recorded")


def main():
    tap = Tap()
    with tempfile.TemporaryDirectory(prefix="fake-mm-test.") as tmp:
        servers = {}

        def start(name, *args, **kw):
            servers[name] = Server(tmp, name, *args, **kw)

        tap.check("server starts and writes its port file", start, "main")
        s = servers.get("main")
        if s:
            for desc, fn in [
                ("REST post: 201, post JSON, recorded in --posts",
                 check_rest_created),
                ("--requests logs method, path, auth, body size",
                 check_requests_log),
                ("'Authorization: Token' is accepted", check_token_scheme),
                ("wrong or missing token: 401 session_expired",
                 check_bad_token),
                ("unknown or malformed channel: 403 permissions",
                 check_unknown_channel),
                ("16384 code points: 400 message_length; 16383: 201",
                 check_message_length),
                ("body not a JSON object: 400 invalid_body_param",
                 check_bad_body),
                ("body over 300000 bytes: 413", check_too_large),
                ("pending_post_id repeat: same post, recorded once",
                 check_dedupe),
                ("webhook: 200 'ok' text/plain, recorded", check_webhook_ok),
                ("webhook: form body with payload=", check_webhook_form),
                ("webhook: unknown hook id: 400 invalid",
                 check_webhook_unknown_hook),
                ("webhook: unknown channel name or an id: 404",
                 check_webhook_unknown_channel),
                ("webhook: channel override to a known name is recorded",
                 check_webhook_override),
                ("webhook: no text, bad JSON, unknown @user: 400",
                 check_webhook_bad_payloads),
                ("GET channel posts: PostList with props, since, 401, 403",
                 check_channel_posts),
                ("unknown path 404, wrong method 405",
                 check_unknown_path_and_method),
                ("malformed requests do not kill the server",
                 check_malformed_input),
            ]:
                tap.check(desc, fn, s)
            tap.check("main server: SIGTERM exits 0 cleanly",
                      expect_stopped_cleanly, s)

        tap.check("fault server starts", start, "faults", *fault_args())
        s = servers.get("faults")
        if s:
            for desc, fn in [
                ("fault 429:7: Retry-After 7 + X-RateLimit-*",
                 fault_429_seconds),
                ("fault 429:date:5: Retry-After as an HTTP date",
                 fault_429_date),
                ("fault 429:bare: no Retry-After, no X-RateLimit-*",
                 fault_429_bare),
                ("fault 429:reset:3: only X-RateLimit-Reset",
                 fault_429_reset),
                ("fault 500: AppError JSON", fault_500),
                ("fault 502: plain text", fault_502),
                ("fault notjson: 500 with HTML", fault_notjson),
                ("fault reset: connection error", fault_reset),
                ("fault hang: client times out after 1 s", fault_hang),
                ("fault remaining0:4: 201 with Remaining 0, Reset 4",
                 fault_remaining0),
                ("fault garbage2xx: 201 with a body that is not JSON",
                 fault_garbage2xx),
                ("fault slow:400: answered late", fault_slow),
                ("fault 401: session_expired", fault_401),
                ("fault 404 on a webhook: web.incoming_webhook.channel",
                 fault_404_webhook),
                ("fault 429: Retry-After 1", fault_429_default),
                ("after the faults: a normal 201", fault_then_normal),
                ("only remaining0, garbage2xx, slow and normal requests "
                 "created posts", fault_posts_recorded),
            ]:
                tap.check(desc, fn, s)
            tap.check("fault server (with a hung request): SIGTERM exits 0",
                      expect_stopped_cleanly, s)

        tap.check("rate-limited server starts", start, "ratelimit",
                  "--rate-limit", "2", "--burst", "2")
        s = servers.get("ratelimit")
        if s:
            tap.check("--rate-limit 2 --burst 2: 429 with Retry-After and "
                      "X-RateLimit-*, shared with /hooks", check_rate_limit, s)
            tap.check("rate-limited server: SIGTERM exits 0",
                      expect_stopped_cleanly, s)

        tap.check("latency server starts", start, "latency",
                  "--latency", "300", "--dedupe-window", "0")
        s = servers.get("latency")
        if s:
            tap.check("--latency 300 delays; --dedupe-window 0 creates "
                      "every post", check_latency_and_no_dedupe, s)
            tap.check("latency server: SIGTERM exits 0",
                      expect_stopped_cleanly, s)

        cert = key = None

        def tls_start():
            nonlocal cert, key
            cert, key = make_cert(tmp)
            start("tls", "--tls-cert", cert, "--tls-key", key, tls_ca=cert)

        tap.check("HTTPS server starts with a self-signed cert", tls_start)
        s = servers.get("tls")
        if s:
            tap.check("HTTPS: a default-verifying client refuses the cert",
                      check_tls_untrusted, s)
            tap.check("HTTPS: a client trusting the cert gets 201",
                      check_tls_trusted, s)
            tap.check("HTTPS server: SIGTERM exits 0",
                      expect_stopped_cleanly, s)

        for server in servers.values():
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
