"""The extensions: exactly-once REST, digests, per-row channels and
attachments, against the fake Mattermost."""

import json
import os
import random
import time

from mmtest import (CHANNEL, check, errors_of, run_tests, test, token_target,
                    wait_until, webhook_target)

CHANNEL2 = "9f8e7d6c5b4a3z2y1x0w9v8u7t"


def rows(n, start=1, **extra):
    out = []
    for i in range(start, start + n):
        r = {"name": "row-%d" % i, "n": i}
        r.update(extra)
        out.append(r)
    return out


@test
def exactly_once_rest_without_server_dedupe(w):
    """Exactly once for REST: kill -9 spread over more than 30 s, the
    server's dedupe off, zero duplicates"""
    rng = random.Random(8)
    fake = w.fake("--dedupe-window", "0", "--latency", "20")
    d = w.daemon({"a": token_target(fake, template="a {{n}}",
                                    interval="60ms"),
                  "b": token_target(fake, template="b {{n}}",
                                    interval="90ms", digest_rows=3)},
                 log_level="info")
    n = 500
    d.drop("a", "x.ndjson", rows(n))
    d.drop("b", "x.ndjson", rows(n))
    t0 = time.monotonic()
    kills = 0
    while time.monotonic() - t0 < 33:
        time.sleep(rng.uniform(0.3, 1.5))     # a random moment
        if d.spool_empty("a") and d.spool_empty("b"):
            break
        d.kill9()
        kills += 1
        d.start()
    spread = time.monotonic() - t0
    for name in ("a", "b"):
        wait_until(lambda: d.spool_empty(name), timeout=120,
                   what="%s drained" % name)
    posts = fake.posts()
    a = [int(p["message"].split()[1]) for p in posts
         if p["message"].startswith("a ")]
    check(sorted(a) == list(range(1, n + 1)), "a: each row once (%d "
          "posts for %d rows)" % (len(a), n))
    b = []
    for p in posts:
        if p["message"].startswith("b "):
            b += [int(line.split()[1]) for line in
                  p["message"].splitlines()]
    check(sorted(b) == list(range(1, n + 1)), "b: each row once (%d for "
          "%d)" % (len(b), n))
    check(all(p["props"] and p["props"].get("mmsyncd_row") ==
              p["pending_post_id"] for p in posts), "props.mmsyncd_row")
    check("was delivered before the restart" in d.log(), "lookups found "
          "rows already posted")
    print("# %d kills over %.0f s, %d posts, 0 duplicates" % (
        kills, spread, len(posts)))
    check(kills >= 10 and spread > 30, "%d kills in %.0f s" % (kills,
                                                              spread))


@test
def lookup_failure_resends(w):
    """A lookup that fails after a hard stop means resend (at least once)"""
    fake = w.fake("--latency", "200")
    d = w.daemon({"a": token_target(fake, template="a {{n}}")})
    d.drop("a", "x.ndjson", rows(3))
    wait_until(lambda: len(fake.requests()) >= 1, what="first request")
    d.kill9()
    fake.stop()
    fake2 = w.fake("--fault", "1:500", name="fake2")
    targets = {"a": token_target(fake2, template="a {{n}}")}
    d.write_config(targets)
    d.start()
    fake2.wait_posts(3)
    check("cannot tell whether" in d.log(), "lookup failure logged")
    check([p["message"] for p in fake2.posts()] == ["a 1", "a 2", "a 3"],
          repr(fake2.posts()))


@test
def digest_rows_and_header(w):
    """digest_rows: 50 rows per message with the header over {{count}}"""
    fake = w.fake()
    d = w.daemon({"d": token_target(fake, template="{{name}}",
                                    digest_rows=50, interval="250ms",
                                    digest_header="{{count}} new rows:")})
    d.drop("d", "x.ndjson", rows(1000))
    t0 = time.monotonic()
    posts = fake.wait_posts(20)
    took = time.monotonic() - t0
    wait_until(lambda: d.spool_empty("d"), what="drained")
    check(len(fake.posts()) == 20, "20 messages")
    lines = []
    for p in posts:
        msg = p["message"].split("\n")
        check(msg[0] == "%d new rows:" % (len(msg) - 1), repr(msg[0]))
        lines += msg[1:]
    check(lines == ["row-%d" % i for i in range(1, 1001)], "every row in "
          "order")
    check(took < 30, "1000 rows at 4 msg/s in %.1f s" % took)
    check(d.status()["targets"]["d"]["sent"] == 1000, "sent counts rows")


@test
def digest_closes_at_the_limit(w):
    """A digest never exceeds 16383 characters: it closes early"""
    fake = w.fake()
    d = w.daemon({"d": token_target(fake, template="{{pad}}",
                                    digest_rows=10)})
    big = "é" * 5000
    d.drop("d", "x.ndjson", [{"pad": big} for _ in range(7)])
    wait_until(lambda: d.spool_empty("d"), what="drained")
    posts = fake.posts()
    sizes = [len(p["message"]) for p in posts]
    check(all(s <= 16383 for s in sizes), repr(sizes))
    check([p["message"].count("\n") + 1 for p in posts] == [3, 3, 1],
          repr(sizes))


@test
def digest_set_aside_whole(w):
    """A digest refused with a 400 sets every row aside, each with its
    line"""
    fake = w.fake("--fault", "2:400")
    d = w.daemon({"d": token_target(fake, template="{{name}}",
                                    digest_rows=4)})
    d.drop("d", "x.ndjson", rows(10))
    wait_until(lambda: d.spool_empty("d") and "x.errors" in d.failed("d"),
               what="drained")
    errs = errors_of(d, "d", "x.errors")
    check([e["line"] for e in errs] == [5, 6, 7, 8], repr(errs))
    check(all(e["status"] == 400 for e in errs), repr(errs))
    with open(os.path.join(d.failed_dir("d"), "x.ndjson")) as f:
        kept = [json.loads(line)["n"] for line in f]
    check(kept == [5, 6, 7, 8], repr(kept))
    check(d.status()["targets"]["d"]["failed"] == 4, "4 rows failed")


@test
def per_row_channels(w):
    """channel: "{{ch}}" posts each row to its channel; a bad one is set
    aside; one pacing for the target"""
    fake = w.fake("--channel", CHANNEL, "--channel", CHANNEL2)
    d = w.daemon({"c": token_target(fake, template="{{name}}",
                                    channel="{{ch}}", interval="100ms")})
    batch = []
    for i in range(1, 9):
        batch.append({"name": "row-%d" % i,
                      "ch": CHANNEL if i % 2 else CHANNEL2})
    batch.insert(4, {"name": "bad", "ch": "town-square"})
    d.drop("c", "x.ndjson", batch)
    posts = fake.wait_posts(8)
    check([p["channel_id"] for p in posts] ==
          [CHANNEL if i % 2 else CHANNEL2 for i in range(1, 9)],
          repr([p["channel_id"] for p in posts]))
    wait_until(lambda: "x.errors" in d.failed("c"), what="bad row")
    errs = errors_of(d, "c", "x.errors")
    check(len(errs) == 1 and "26-character" in errs[0]["reason"],
          repr(errs))
    t = [r["t"] for r in fake.requests()]
    check(min(b - a for a, b in zip(t, t[1:])) >= 95, "pace held")


@test
def attachments_rest_and_webhook(w):
    """attachment: rendered templates as props.attachments (REST) and
    attachments (webhook); template may be omitted"""
    fake = w.fake()
    att = {"fallback": "Lead {{name}}", "color": "#36a64f",
           "title": "{{name}}", "title_link": "https://crm/{{id}}",
           "text": "score {{score}}", "footer": "mmsyncd",
           "fields": [{"title": "Email", "value": "{{email}}",
                       "short": True}]}
    d = w.daemon({"r": token_target(fake, template="New lead",
                                    attachment=att),
                  "h": {k: v for k, v in webhook_target(
                      fake, attachment=att).items() if k != "template"}})
    row = {"name": "Ada \"A\"", "id": 7, "score": 9.5, "email": "a@x"}
    d.drop("r", "x.ndjson", [row])
    d.drop("h", "x.ndjson", [row])
    posts = fake.wait_posts(2)
    rest = [p for p in posts if p["kind"] == "rest"][0]
    hook = [p for p in posts if p["kind"] == "webhook"][0]
    a = rest["props"]["attachments"][0]
    check(a["title"] == 'Ada "A"' and a["title_link"] == "https://crm/7"
          and a["text"] == "score 9.5" and a["color"] == "#36a64f",
          repr(a))
    check(a["fields"] == [{"title": "Email", "value": "a@x",
                           "short": True}], repr(a["fields"]))
    check(rest["message"] == "New lead", repr(rest["message"]))
    check(hook["attachments"][0] == a, repr(hook["attachments"]))


if __name__ == "__main__":
    run_tests()
