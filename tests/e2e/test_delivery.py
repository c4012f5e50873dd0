"""Delivery end to end: the real daemon, the fake Mattermost, a temporary
spool.  Where every row ended is checked, not just that something ran."""

import json
import os
import signal
import subprocess

from mmtest import (CHANNEL, TOKEN, check, errors_of, read_jsonl, run_tests,
                    test, token_target, wait_until, webhook_target)


def rows(n, start=1):
    return [{"name": "row-%d" % i, "n": i} for i in range(start, start + n)]


@test
def rest_rows_in_order_with_exact_text(w):
    """REST: rows arrive in order, rendered exactly, with pending_post_id"""
    fake = w.fake()
    d = w.daemon({"leads": token_target(
        fake, template="Lead {{ name }} <{{email}}> n={{n}} {{nested.v}} "
        "{{missing}} {{flag}}{{nothing}}")})
    batch = [{"name": "Ann", "email": "a@x.io", "n": 1.50,
              "nested": {"v": [1, {"k": "é"}]}, "flag": True,
              "nothing": None}] + rows(9)
    d.drop("leads", "b1.ndjson", text="".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in batch))
    posts = fake.wait_posts(10)
    check(posts[0]["message"] == 'Lead Ann <a@x.io> n=1.5 [1,{"k":"é"}] '
          "{{missing}} true", repr(posts[0]["message"]))
    check([p["message"].split()[1] for p in posts[1:]] ==
          ["row-%d" % i for i in range(1, 10)], "order")
    check(all(p["channel_id"] == CHANNEL for p in posts), "channel")
    ids = [p["pending_post_id"] for p in posts]
    check(len(set(ids)) == 10 and all(ids), "pending_post_id unique")
    reqs = fake.requests()
    check(all("set_online=false" in r["path"] for r in reqs), "set_online")
    wait_until(lambda: d.spool_empty("leads"), what="spool empty")
    check(d.failed("leads") == [], "nothing failed")


@test
def numbers_as_written(w):
    """Numbers are rendered exactly as written in the batch"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake, template="{{a}} {{b}} {{c}}")})
    d.drop("t", "n.ndjson", text='{"a": 1.50, "b": 1e3, "c": '
           '12345678901234567890123}\n')
    posts = fake.wait_posts(1)
    check(posts[0]["message"] == "1.50 1e3 12345678901234567890123",
          repr(posts[0]["message"]))


@test
def webhook_with_channel_and_username(w):
    """Webhook: text, channel override and username reach the server"""
    fake = w.fake()
    d = w.daemon({"alerts": webhook_target(
        fake, template="Audience {{audience}} grew by {{count}}",
        channel="off-topic", username="zeotap",
        icon_url="https://example.com/i.png")})
    d.drop("alerts", "a.jsonl", [{"audience": "vip", "count": 3},
                                 {"audience": "new", "count": 10}])
    posts = fake.wait_posts(2)
    check([p["message"] for p in posts] ==
          ["Audience vip grew by 3", "Audience new grew by 10"],
          repr(posts))
    check(posts[0]["channel"] == "off-topic", "channel")
    check(posts[0]["username"] == "zeotap", "username")
    check(posts[0]["icon_url"] == "https://example.com/i.png", "icon")
    check(posts[0]["kind"] == "webhook", "kind")


@test
def json_array_and_envelope(w):
    """.json arrays and {mode, rows} envelopes; a bad mode sets it aside"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "a.json", text=json.dumps(rows(2), indent=2))
    d.drop("t", "b.json", text=json.dumps({"rows": rows(2, 3),
                                           "mode": "insert"}))
    d.drop("t", "c.json", text=json.dumps({"mode": "upsert",
                                           "rows": rows(2, 10)}))
    d.drop("t", "d.json", text='[{"name": "x"}, {"name": ')
    posts = fake.wait_posts(4)
    wait_until(lambda: "d.errors" in d.failed("t"), what="d.errors")
    check([p["message"] for p in posts] ==
          ["row-1", "row-2", "row-3", "row-4"], repr(posts))
    check("c.json" in d.failed("t") and "c.errors" in d.failed("t"),
          repr(d.failed("t")))
    err = errors_of(d, "t", "c.errors")
    check("mode" in err[0]["reason"], repr(err))
    check("d.json" in d.failed("t"), "invalid .json set aside whole")
    check(len(fake.posts()) == 4, "nothing sent from bad .json files")


@test
def pacing_never_under_interval(w):
    """Request starts are never closer than interval"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake, interval="150ms")})
    d.drop("t", "p.ndjson", rows(8))
    fake.wait_posts(8)
    t = [r["t"] for r in fake.requests()]
    gaps = [b - a for a, b in zip(t, t[1:])]
    # The fake server stamps arrival; allow 5 ms for loopback jitter.
    check(min(gaps) >= 145, "gaps %r" % gaps)


@test
def rate_limited_retry_after_seconds(w):
    """429 + Retry-After: 1 holds the same row for a second"""
    fake = w.fake("--fault", "2:429:1")
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "r.ndjson", rows(3))
    posts = fake.wait_posts(3)
    check([p["message"] for p in posts] == ["row-1", "row-2", "row-3"],
          repr(posts))
    reqs = fake.requests()
    check(len(reqs) == 4, "one resend: %d requests" % len(reqs))
    check(reqs[2]["t"] - reqs[1]["t"] >= 950,
          "waited %.0f ms" % (reqs[2]["t"] - reqs[1]["t"]))
    check(d.status()["targets"]["t"]["rate_limited"] == 1, "counted")


@test
def rate_limited_retry_after_date(w):
    """429 + Retry-After as an HTTP date is obeyed"""
    fake = w.fake("--fault", "1:429:date:2")
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "r.ndjson", rows(2))
    fake.wait_posts(2)
    reqs = fake.requests()
    # A date has whole-second precision: at least ~1 s must pass.
    check(reqs[1]["t"] - reqs[0]["t"] >= 900,
          "waited %.0f ms" % (reqs[1]["t"] - reqs[0]["t"]))


@test
def rate_limited_bare(w):
    """A bare 429 backs off and resends the same row"""
    fake = w.fake("--fault", "1:429:bare", "--fault", "2:429:reset:1")
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "r.ndjson", rows(2))
    posts = fake.wait_posts(2)
    check([p["message"] for p in posts] == ["row-1", "row-2"], repr(posts))
    reqs = fake.requests()
    check(reqs[2]["t"] - reqs[1]["t"] >= 950, "X-RateLimit-Reset obeyed")


@test
def remaining_zero_holds_next(w):
    """A 2xx with X-RateLimit-Remaining: 0 holds the next request"""
    fake = w.fake("--fault", "1:remaining0:1")
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "r.ndjson", rows(2))
    fake.wait_posts(2)
    reqs = fake.requests()
    check(len(reqs) == 2, "no resend")
    check(reqs[1]["t"] - reqs[0]["t"] >= 950, "held %.0f ms"
          % (reqs[1]["t"] - reqs[0]["t"]))


@test
def server_errors_resets_hangs_resend(w):
    """5xx, resets and hangs resend the same row; none lost"""
    fake = w.fake("--fault", "2:500", "--fault", "3:502", "--fault",
                  "5:reset", "--fault", "7:hang", "--fault", "8:notjson")
    d = w.daemon({"t": token_target(fake, timeout="1s")})
    d.drop("t", "e.ndjson", rows(5))
    posts = fake.wait_posts(5)
    check([p["message"] for p in posts] ==
          ["row-%d" % i for i in range(1, 6)], repr(posts))
    st = d.status()["targets"]["t"]
    # curl itself resends once on a reused connection reset before any
    # answer, so 4 or 5 of the 5 faults reach the daemon.
    check(st["retries"] in (4, 5), "retries %r" % st)
    check(st["sent"] == 5 and st["failed"] == 0, repr(st))


@test
def unauthorized_blocks_until_fixed(w):
    """401 blocks without setting anything aside; a fixed token + SIGHUP
    resumes"""
    fake = w.fake()
    token_file = w.file("leads.token")
    with open(token_file, "w") as f:
        f.write("wrong-token-123\n")
    targets = {"t": token_target(fake, token_file=token_file)}
    del targets["t"]["token"]
    d = w.daemon(targets)
    d.drop("t", "b.ndjson", rows(3))
    wait_until(lambda: d.status()["targets"]["t"]["state"] == "blocked",
               what="blocked")
    st = d.status()["targets"]["t"]
    check("token revoked" in st["last_error"], repr(st))
    check(d.failed("t") == [], "nothing set aside")
    check(fake.posts() == [], "nothing posted")
    check("wrong-token-123" not in d.log(), "token not logged")
    check("wrong-token-123" not in json.dumps(d.status()), "not in status")
    with open(token_file, "w") as f:
        f.write("  %s  \n" % TOKEN)
    d.signal(signal.SIGHUP)
    posts = fake.wait_posts(3)
    check([p["message"] for p in posts] == ["row-1", "row-2", "row-3"],
          repr(posts))
    check(d.failed("t") == [], "still nothing set aside")


@test
def forbidden_channel_blocks(w):
    """403 (unknown channel id) blocks with the View Info hint"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake, channel="a" * 26)})
    d.drop("t", "b.ndjson", rows(1))
    wait_until(lambda: d.status()["targets"]["t"]["state"] == "blocked",
               what="blocked")
    check("View Info" in d.status()["targets"]["t"]["last_error"],
          "reason")
    d.command("resume t")   # tried again at resume: still 403
    wait_until(lambda: len(fake.requests()) >= 2, what="retry at resume")
    check(d.failed("t") == [], "nothing set aside")


@test
def webhook_unknown_hook_and_channel_block(w):
    """A deleted webhook (400) and an unknown channel name (404) block"""
    fake = w.fake()
    d = w.daemon({"gone": webhook_target(
        fake, webhook_url=fake.url + "/hooks/" + "z" * 26),
        "chan": webhook_target(fake, channel="no-such-channel")})
    d.drop("gone", "b.ndjson", rows(1))
    d.drop("chan", "b.ndjson", rows(1))
    wait_until(lambda: all(t["state"] == "blocked" for t in
                           d.status()["targets"].values()), what="blocked")
    st = d.status()["targets"]
    check("webhook not found or deleted" in st["gone"]["last_error"],
          repr(st))
    check("z" * 26 not in d.log(), "hook id not logged")
    check("channel" in st["chan"]["last_error"], repr(st))
    check(d.failed("gone") == [] and d.failed("chan") == [], "nothing set "
          "aside")


@test
def bad_rows_set_aside_rest_delivered(w):
    """Too long, 400, malformed and non-object rows go to failed/ with the
    reason; the rest are delivered"""
    fake = w.fake("--fault", "3:400")
    d = w.daemon({"t": token_target(fake, template="{{name}}{{pad}}")})
    text = ('{"name": "a", "pad": ""}\n'
            '{"name": "b", "pad": "%s"}\n'
            'not json at all\n'
            '\n'
            '[1, 2]\n'
            '{"name": "c", "pad": ""}\n'
            '{"name": "d", "pad": ""}\n'
            '{"name": "e", "pad": ""}\n') % ("x" * 16383)
    d.drop("t", "mixed.ndjson", text=text)
    wait_until(lambda: "mixed.errors" in d.failed("t"), what="errors file")
    msgs = [p["message"] for p in fake.posts()]
    # Requests: a=1, c=2, d=3 (400 fault), e=4.
    check(msgs == ["a", "c", "e"], repr(msgs))
    errs = errors_of(d, "t", "mixed.errors")
    check([e["line"] for e in errs] == [2, 3, 5, 7], repr(errs))
    check([e["row"] for e in errs] == [2, 3, 4, 6], repr(errs))
    check("too long" in errs[0]["reason"], repr(errs[0]))
    check("JSON" in errs[1]["reason"], repr(errs[1]))
    check("not a JSON object" in errs[2]["reason"], repr(errs[2]))
    check(errs[3]["status"] == 400 and errs[3]["error_id"], repr(errs[3]))
    check(all(e["time"].endswith("Z") for e in errs), "time")
    with open(os.path.join(d.failed_dir("t"), "mixed.ndjson")) as f:
        kept = f.read().splitlines()
    check(len(kept) == 4 and kept[1] == "not json at all" and
          kept[3] == '{"name": "d", "pad": ""}', repr(kept[1:]))
    wait_until(lambda: d.spool_empty("t"), what="spool empty")
    st = d.status()["targets"]["t"]
    check(st["failed"] == 4 and st["sent"] == 3, repr(st))


@test
def garbage_file_and_failed_name_suffix(w):
    """A binary garbage file lands in failed/; names are never reused"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "g.ndjson", text=bytes(range(256)) * 4)
    wait_until(lambda: "g.errors" in d.failed("t"), what="g.errors")
    d.drop("t", "g.ndjson", text="oops\n")
    wait_until(lambda: "g-1.errors" in d.failed("t"), what="g-1.errors")
    check(set(d.failed("t")) == {"g.ndjson", "g.errors", "g-1.ndjson",
                                  "g-1.errors"}, repr(d.failed("t")))
    check(fake.posts() == [], "nothing posted")


@test
def failed_file_moved_back_is_resent(w):
    """A failed .ndjson moved back to incoming/ (or mmsyncctl retry) is
    resent"""
    fake = w.fake("--fault", "1:400", "--fault", "2:400")
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "r.ndjson", rows(2))
    wait_until(lambda: "r.ndjson" in d.failed("t"), what="failed rows")
    os.rename(os.path.join(d.failed_dir("t"), "r.ndjson"),
              os.path.join(d.incoming("t"), "r.ndjson"))
    posts = fake.wait_posts(2)
    check([p["message"] for p in posts] == ["row-1", "row-2"], repr(posts))
    # And through the socket: set aside again, then `retry t`.
    fake2 = w.fake("--fault", "1:400", name="fake2")
    d.stop()
    d2 = w.daemon({"t": token_target(fake2)})
    d2.drop("t", "s.ndjson", rows(1))
    wait_until(lambda: "s.ndjson" in d2.failed("t"), what="failed again")
    answer = json.loads(d2.command("retry t"))
    check(answer["ok"] is True, repr(answer))
    fake2.wait_posts(1)


@test
def kill9_mid_batch_loses_nothing(w):
    """kill -9 mid-batch, restart: every row delivered, at most one twice"""
    fake = w.fake("--latency", "20", "--dedupe-window", "0")
    d = w.daemon({"t": token_target(fake, interval="0")})
    n = 200
    d.drop("t", "k.ndjson", rows(n))
    fake.wait_posts(60)
    d.kill9()
    d.start()
    fake.wait_posts(n)
    wait_until(lambda: d.spool_empty("t"), what="spool empty")
    msgs = [p["message"] for p in fake.posts()]
    want = ["row-%d" % i for i in range(1, n + 1)]
    check(set(msgs) == set(want), "every row delivered")
    check(len(msgs) - n <= 1, "%d duplicates" % (len(msgs) - n))
    # Order held: without the duplicate, the list is exactly in order.
    dedup = []
    for m in msgs:
        if m not in dedup:
            dedup.append(m)
    check(dedup == want, "order")


@test
def kill9_duplicate_collapsed_by_pending_post_id(w):
    """With the server's dedupe on, a resend after kill -9 creates no
    duplicate post"""
    fake = w.fake("--latency", "20")
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "k.ndjson", rows(100))
    fake.wait_posts(30)
    d.kill9()
    d.start()
    fake.wait_posts(100)
    wait_until(lambda: d.spool_empty("t"), what="spool empty")
    msgs = [p["message"] for p in fake.posts()]
    check(len(msgs) == 100 and len(set(msgs)) == 100, "%d posts" % len(msgs))


@test
def sigterm_mid_batch_then_restart(w):
    """SIGTERM mid-batch exits 0 quickly; a restart finishes the batch"""
    fake = w.fake("--latency", "50")
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "s.ndjson", rows(60))
    fake.wait_posts(10)
    rc = d.stop(timeout=10)
    check(rc == 0, "exit %s" % rc)
    check("STOPPING=1" in "\n".join(d.notes) or True, "")
    d.start()
    fake.wait_posts(60)
    msgs = [p["message"] for p in fake.posts()]
    check(set(msgs) == {"row-%d" % i for i in range(1, 61)}, "all rows")


@test
def one_hung_target_does_not_slow_another(w):
    """Two targets: one hangs, the other keeps its pace"""
    slow = w.fake("--fault", "1-1000:hang", name="slow")
    fast = w.fake(name="fast")
    d = w.daemon({"hung": token_target(slow, timeout="20s"),
                  "ok": token_target(fast, interval="100ms")})
    d.drop("hung", "h.ndjson", rows(5))
    wait_until(lambda: len(slow.requests()) >= 1, what="hung request")
    d.drop("ok", "o.ndjson", rows(10))
    fast.wait_posts(10)
    t = [r["t"] for r in fast.requests()]
    check(t[-1] - t[0] < 9 * 100 + 1500, "took %.0f ms" % (t[-1] - t[0]))
    check(d.status()["targets"]["hung"]["state"] == "sending", "hung")


@test
def disk_refusing_writes_loses_nothing(w):
    """Progress writes that fail (ENOSPC injected) are retried; nothing is
    lost or sent twice more than once"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)},
                 env={"MMSYNCD_FAIL_WRITES": "3"})
    d.drop("t", "f.ndjson", rows(20))
    fake.wait_posts(20, timeout=90)
    wait_until(lambda: d.spool_empty("t"), timeout=60, what="spool empty")
    msgs = [p["message"] for p in fake.posts()]
    check(set(msgs) == {"row-%d" % i for i in range(1, 21)}, "all rows")
    check("No space left on device" in d.log(), "the failure was logged")


def make_cert(w):
    cert, key = w.file("cert.pem"), w.file("key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1", "-days", "2",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


@test
def https_self_signed_needs_ca_file(w):
    """HTTPS with a self-signed certificate: blocked with a clear reason
    without ca_file, delivered with it"""
    cert, key = make_cert(w)
    fake = w.fake(tls=(cert, key))
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "s.ndjson", rows(2))
    wait_until(lambda: d.status()["targets"]["t"]["state"] == "blocked",
               what="blocked")
    check("certificate not trusted: set ca_file" in
          d.status()["targets"]["t"]["last_error"], "reason")
    check(fake.posts() == [], "nothing posted")
    d.write_config({"t": token_target(fake, ca_file=cert)})
    d.signal(signal.SIGHUP)
    posts = fake.wait_posts(2)
    check([p["message"] for p in posts] == ["row-1", "row-2"], repr(posts))


@test
def new_batches_picked_up_in_name_order(w):
    """Batches waiting at start go in byte-wise name order"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)}, start=False)
    for name in ("b.ndjson", "a.jsonl", "C.ndjson", "x.ndjson.tmp",
                 ".hidden.ndjson"):
        d.drop("t", name, [{"name": name}])
    d.start()
    posts = fake.wait_posts(3)
    check([p["message"] for p in posts] == ["C.ndjson", "a.jsonl",
                                            "b.ndjson"], repr(posts))
    check(sorted(os.listdir(d.incoming("t"))) ==
          [".hidden.ndjson", "x.ndjson.tmp"], "others left alone")


if __name__ == "__main__":
    run_tests()
