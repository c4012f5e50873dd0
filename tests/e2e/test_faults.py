"""Fault matrix: the real daemon against a fake Mattermost that misbehaves
on purpose, by request number.  Every outcome class of the contract one
after another, then all of them mixed at random with a fixed seed over a
few hundred rows, the server down for a while, and answers of absurd size
or with absurd waits.

What the fake server saw (each request with the fault that hit it, the
message it carried, the posts it created) is the yardstick: at the end
every row was delivered exactly once (the server's pending_post_id dedupe
is on) or set aside with the reason its last answer gave, in order, and
the daemon's counters match the faults that reached it.

MMS_FAULT_SEED, MMS_FAULT_ROWS and MMS_DOWN_S change the random mix, its
size and how long the server stays down (bench/ may scale them up)."""

import json
import os
import random
import time
from datetime import datetime

import mmtest
from mmtest import (check, read_jsonl, run_tests, test, token_target,
                    wait_until, webhook_target)

SEED = int(os.environ.get("MMS_FAULT_SEED", "20261126"))
MIX_ROWS = int(os.environ.get("MMS_FAULT_ROWS", "300"))
DOWN_S = float(os.environ.get("MMS_DOWN_S", "30"))

# Every request gets this long; a "hang" costs it, a "slow:2000" fits in it.
TIMEOUT = "2500ms"

_injected = [0]      # faults that hit a request, over the whole file
_rows = [0]          # rows whose fate was checked


def rows(n, start=1, prefix="row"):
    return [{"name": "%s-%04d" % (prefix, i)}
            for i in range(start, start + n)]


def names(rs):
    return [r["name"] for r in rs]


def fault_args(schedule):
    """--fault options from {request number: kind}."""
    out = []
    for n in sorted(schedule):
        out += ["--fault", "%d:%s" % (n, schedule[n])]
    return out


def fault_class(kind, auth="token"):
    """What the daemon must make of an answer, by the contract:
    ok (delivered), rate (429: resend after a wait), transient (resend
    after a backoff), block (stop the target, keep the row), aside (set
    the row aside), or created (the post was created but the answer
    broke: resending it is safe thanks to pending_post_id)."""
    if kind is None:
        return "ok"
    base = kind.split(":")[0]
    if base == "429":
        return "rate"
    if base in ("400", "413"):
        return "aside"
    if base in ("401", "403", "501") or (base == "404" and auth == "webhook"):
        return "block"
    if base in ("slow", "garbage2xx", "remaining0"):
        return "ok"
    if base in ("halfbody", "bigheader", "manyheaders", "bigbody2xx"):
        # Made, then the answer broke (or libcurl gave up on its
        # headers): resent or not, the row must end up posted once.
        return "created"
    return "transient"      # 5xx, notjson, hang, reset, halfbody500...


def analyse(fake, d, target, want, auth="token", exact=True):
    """Check where every row of WANT (messages, in order) ended, against
    what the fake server saw; return (faults hit, rows checked)."""
    reqs = [r for r in fake.requests() if r["method"] == "POST"]
    posts = [p["message"] for p in fake.posts()]
    faults_hit = sum(1 for r in reqs if r.get("fault"))
    retries = rate_limited = 0
    last = {}
    for i, r in enumerate(reqs):
        msg = r.get("message")
        nxt = reqs[i + 1] if i + 1 < len(reqs) else None
        again = nxt is not None and nxt.get("message") == msg
        cls = fault_class(r.get("fault"), auth)
        last[msg] = cls
        if cls == "transient" and r.get("fault") == "reset" and again and \
                nxt["t"] - r["t"] < 95:
            # libcurl itself resends at once when a reused connection
            # breaks before any answer: the daemon never saw this one.
            continue
        if cls == "transient" or (cls == "created" and again):
            retries += 1
        elif cls == "rate":
            retries += 1
            rate_limited += 1
    aside = [m for m in want if last.get(m) == "aside"]
    delivered = [m for m in want if m not in aside]
    check(set(last) <= set(want), "requests for rows never dropped: %r"
          % sorted(set(last) - set(want))[:5])
    missing = [m for m in want if m not in last]
    check(not missing, "rows never sent: %r" % missing[:5])
    # Every row delivered or set aside, nothing else.
    check(set(posts) == set(delivered), "delivered: missing %r, extra %r"
          % (sorted(set(delivered) - set(posts))[:5],
             sorted(set(posts) - set(delivered))[:5]))
    dups = len(posts) - len(set(posts))
    if exact:
        check(dups == 0, "%d duplicate posts" % dups)
    # Order held: the first copy of each row comes in batch order.
    first = []
    for m in posts:
        if m not in first:
            first.append(m)
    check(first == delivered, "order: first divergence at %r" % next(
        ((a, b) for a, b in zip(first, delivered) if a != b), None))
    # Set aside, with the status of the answer that refused it.
    errs, kept = [], []
    for name in d.failed(target):
        path = os.path.join(d.failed_dir(target), name)
        if name.endswith(".errors"):
            errs += read_jsonl(path)
        else:
            kept += [json.loads(line)["name"] for line in open(path)]
    check(sorted(kept) == sorted(aside), "failed/ holds %r, want %r"
          % (sorted(kept)[:5], sorted(aside)[:5]))
    check(len(errs) == len(aside), "%d error lines for %d rows"
          % (len(errs), len(aside)))
    check(all(e["status"] in (400, 413) and e["reason"] and e["error_id"]
              for e in errs), "reasons: %r" % errs[:3])
    wait_until(lambda: d.spool_empty(target), what="spool empty")
    st = d.status()["targets"][target]
    got = (st["sent"], st["failed"], st["retries"], st["rate_limited"])
    exp = (len(delivered), len(aside), retries, rate_limited)
    check(got == exp, "counters (sent, failed, retries, rate_limited) "
          "%r, the fake server saw %r" % (got, exp))
    _injected[0] += faults_hit
    _rows[0] += len(want)
    return faults_hit, len(want)


def status_quickly(d, limit=1.0):
    """The status answer, which must come within LIMIT seconds."""
    t0 = time.monotonic()
    st = d.status()
    took = time.monotonic() - t0
    check(took < limit, "status took %.2f s" % took)
    return st


def memory_limit_kb():
    """The daemon's peak memory must stay under 64 MB, except where a
    wrapper (valgrind) or AddressSanitizer (its quarantine keeps up to
    256 MB of freed memory) adds a footprint of its own."""
    if mmtest.DAEMON_WRAPPER:
        return None
    try:
        with open(mmtest.BUILD_MMSYNCD, "rb") as f:
            if b"__asan_init" in f.read():
                return 400 * 1024
    except OSError:
        pass
    return 64 * 1024


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


# One request per line: the kinds of answer the contract names, in turn.
CLASSES = [
    None,                   # delivered
    "429:1", None,          # rate limited, Retry-After 1 s
    "500", "502", "503", "504", None,   # server errors, a burst
    "reset", None,          # connection reset before the answer
    "halfbody500", None,    # a 500 cut mid-body by a reset
    "hang", None,           # no answer within the timeout
    "slow:2000",            # a slow answer, still within the timeout
    "notjson", None,        # a 500 that is an HTML page
    "garbage2xx",           # a 2xx whose body is garbage: delivered
    "401", None,            # blocked, then tried again
    "400",                  # the row is refused: set aside
    "413",                  # too large: set aside
    "remaining0:1",         # delivered, the next one held 1 s
    None,
]


def class_schedule():
    return {i + 1: k for i, k in enumerate(CLASSES) if k is not None}


@test
def every_outcome_class_in_turn_rest(w):
    """REST: every outcome class in turn; rows once or set aside; counters
    Each row is delivered exactly once or set aside with the status of
    its last answer, and the daemon's counters match the fake server's."""
    fake = w.fake(*fault_args(class_schedule()))
    d = w.daemon({"t": token_target(fake, timeout=TIMEOUT,
                                    blocked_retry="1s")})
    rs = rows(14)
    d.drop("t", "classes.ndjson", rs)
    wait_until(lambda: "classes.errors" in d.failed("t") and
               d.spool_empty("t"), timeout=60, what="batch handled")
    hit, n = analyse(fake, d, "t", names(rs))
    check(hit == len(class_schedule()), "%d faults hit" % hit)
    check("blocked:" in d.log(), "the 401 blocked the target")
    errs = read_jsonl(os.path.join(d.failed_dir("t"), "classes.errors"))
    check([e["status"] for e in errs] == [400, 413], repr(errs))
    reqs = fake.requests()
    held = [b["t"] - a["t"] for a, b in zip(reqs, reqs[1:])
            if a.get("fault") in ("429:1", "remaining0:1")]
    check(all(h >= 950 for h in held), "waits %r" % held)


@test
def every_outcome_class_in_turn_webhook(w):
    """Webhook: every outcome class in turn (404 blocks too)
    Each row is delivered exactly once or set aside."""
    sched = class_schedule()
    sched[len(CLASSES) + 1] = "404"
    fake = w.fake(*fault_args(sched))
    d = w.daemon({"h": webhook_target(fake, timeout=TIMEOUT,
                                      blocked_retry="1s")})
    rs = rows(15)
    d.drop("h", "classes.ndjson", rs)
    wait_until(lambda: "classes.errors" in d.failed("h") and
               d.spool_empty("h"), timeout=60, what="batch handled")
    hit, n = analyse(fake, d, "h", names(rs), auth="webhook")
    check(hit == len(sched), "%d faults hit" % hit)


def mix_schedule(rng, nrows):
    """A random fault plan over the requests of NROWS rows: most requests
    answered normally; 5xx bursts, resets (also mid-body), hangs past the
    timeout, slow answers, a 429 storm with Retry-After 1-5 s, pages that
    are not JSON, garbage 2xx, refusals and blocks.  Each kind comes at
    least once; the slow kinds are rationed so that the whole plan stays
    well under a minute."""
    sched = {}

    def free(n, length=1):
        return all(m not in sched and 1 <= m <= nrows
                   for m in range(n - 1, n + length + 1))

    def place(kinds):
        while True:
            n = rng.randint(2, nrows - len(kinds))
            if free(n, len(kinds)):
                for i, k in enumerate(kinds):
                    sched[n + i] = k
                return

    # At least once each, wherever the seed puts them.
    place(["429:%d" % rng.randint(1, 2) for _ in range(3)])   # a storm
    place(["429:%d" % rng.randint(3, 5)])
    for _ in range(2):
        place([rng.choice(["500", "502", "503", "504"])
               for _ in range(rng.randint(3, 5))])             # 5xx bursts
    for kind in ("hang", "hang", "slow:2000", "slow:2000", "401", "401",
                 "remaining0:1", "bigheader:200", "reset", "halfbody",
                 "halfbody500", "notjson", "garbage2xx", "400", "413",
                 "503:raw:1", "429:0"):
        place([kind])
    # And many more of the quick ones.
    quick = ["500", "502", "503", "504", "reset", "reset", "halfbody500",
             "halfbody", "notjson", "garbage2xx", "400", "413"]
    for n in range(1, nrows + 1):
        if rng.random() < 0.10 and free(n):
            sched[n] = rng.choice(quick)
    # A refusal right after an answer that broke after the post was made
    # would set aside a row that exists: not something the daemon can
    # see through, so not something this plan does.
    for n in sorted(sched):
        if sched[n] in ("400", "413") and sched.get(n - 1) in (
                "halfbody", "bigheader:200"):
            del sched[n]
    return sched


@test
def random_fault_mix(w):
    """Random fault mix, fixed seed, 300 rows: once or set aside, in order
    The counters in status match what the fake server saw."""
    rng = random.Random(SEED)
    sched = mix_schedule(rng, MIX_ROWS)
    fake = w.fake(*fault_args(sched))
    d = w.daemon({"t": token_target(fake, timeout=TIMEOUT,
                                    blocked_retry="1s")}, log_level="info")
    rs = rows(MIX_ROWS)
    third = MIX_ROWS // 3
    d.drop("t", "mix-1.ndjson", rs[:third])
    d.drop("t", "mix-2.ndjson", rs[third:2 * third])
    d.drop("t", "mix-3.ndjson", rs[2 * third:])
    deadline = time.monotonic() + 150
    while not d.spool_empty("t"):
        check(time.monotonic() < deadline, "not done after 150 s: %r"
              % d.status()["targets"]["t"])
        status_quickly(d)
        time.sleep(0.2)
    hit, n = analyse(fake, d, "t", names(rs))
    kinds = sorted({k.split(":")[0] for k in
                    (r.get("fault") for r in fake.requests()) if k})
    rss = vm_hwm_kb(d.proc.pid)
    limit = memory_limit_kb()
    check(limit is None or rss < limit, "peak memory %d kB" % rss)
    print("# random mix (seed %d): %d rows, %d faults hit of %d planned: %s;"
          " peak memory %d kB" % (SEED, n, hit, len(sched), " ".join(kinds),
                                  rss))


@test
def server_down_then_back_on_the_same_port(w):
    """Server down 30 s mid-batch, back on the same port: all rows once
    (MMS_DOWN_S sets how long.)  The daemon backs off, status answers,
    and once the server is back every row arrives once, in order."""
    fake = w.fake("--latency", "5")
    d = w.daemon({"t": token_target(fake, timeout=TIMEOUT,
                                    backoff_max="2s")}, log_level="info")
    rs = rows(400)
    d.drop("t", "down.ndjson", rs)
    fake.wait_posts(100)
    port = fake.port
    fake.stop()
    t0 = time.monotonic()
    wait_until(lambda: d.status()["targets"]["t"]["state"] == "backoff",
               what="backoff while the server is down")
    while time.monotonic() - t0 < DOWN_S:
        st = status_quickly(d)["targets"]["t"]
        check(st["state"] in ("backoff", "sending"), repr(st))
        time.sleep(0.5)
    st = d.status()["targets"]["t"]
    check("connection refused" in (st["last_error"] or ""), repr(st))
    retries_down = st["retries"]
    # 30 s of refusals with backoff_max 2 s: some tens of tries, not
    # thousands (a busy loop) and not one (given up).
    check(DOWN_S / 3 <= retries_down <= DOWN_S * 10 + 10,
          "%d tries while down" % retries_down)
    fake.start(port=port)
    fake.wait_posts(len(rs), timeout=60)
    wait_until(lambda: d.spool_empty("t"), what="spool empty")
    posts = [p["message"] for p in fake.posts()]
    check(posts == names(rs), "exactly once, in order (%d posts)"
          % len(posts))
    st = d.status()["targets"]["t"]
    check(st["sent"] == len(rs) and st["failed"] == 0, repr(st))
    _injected[0] += retries_down
    _rows[0] += len(rs)
    print("# server down %.0f s: %d refused tries, then %d rows delivered"
          % (DOWN_S, retries_down, len(rs)))


@test
def lookup_after_kill9_meets_faults(w):
    """kill -9, then the lookup fails (hang, 5xx, huge, garbage): no loss
    After a hard stop the daemon asks whether the row in flight was
    posted; when that lookup cannot be answered the row is sent anyway
    (the server's dedupe collapses it): every row once, in order."""
    kinds = ["hang", "500", "garbage2xx", "bigbody2xx:20", "429:1",
             "halfbody", "reset", "401", "manyheaders:100000"]
    args = ["--latency", "5"]
    for i, k in enumerate(kinds):
        args += ["--fault-get", "%d:%s" % (i + 1, k)]
    fake = w.fake(*args)
    d = w.daemon({"t": token_target(fake, timeout=TIMEOUT)},
                 log_level="info")
    rs = rows(500)
    d.drop("t", "k.ndjson", rs)

    def gets():
        return [r for r in fake.requests() if r["method"] == "GET"]
    for i in range(len(kinds)):
        fake.wait_posts(30 * (i + 1))
        d.kill9()
        d.start()
        wait_until(lambda: len(gets()) > i, what="lookup %d" % (i + 1))
    fake.wait_posts(len(rs), timeout=60)
    wait_until(lambda: d.spool_empty("t"), what="spool empty")
    posts = [p["message"] for p in fake.posts()]
    check(posts == names(rs), "every row once, in order (%d posts, %d "
          "distinct)" % (len(posts), len(set(posts))))
    hit = [r.get("fault") for r in gets()]
    check(hit == kinds, "lookup faults %r" % hit)
    check(d.log().count("cannot tell whether") >= len(kinds),
          "each unanswered lookup logged")
    _injected[0] += len(kinds)
    _rows[0] += len(rs)


@test
def webhook_2xx_broken_after_the_status_line_not_resent(w):
    """Webhook: a 2xx broken after its status line is not sent again
    A 2xx cut mid-body, or with a 200 KB header libcurl refuses: the
    post exists (outcome.c says so too), and no dedupe would save a
    second copy."""
    fake = w.fake("--fault", "2:halfbody", "--fault", "4:bigheader:200",
                  "--fault", "6:halfbody500")
    d = w.daemon({"h": webhook_target(fake)})
    rs = rows(5)
    d.drop("h", "half.ndjson", rs)
    wait_until(lambda: d.spool_empty("h") and len(fake.posts()) >= 5,
               what="batch handled")
    _injected[0] += 3
    _rows[0] += len(rs)
    posts = [p["message"] for p in fake.posts()]
    check(posts == names(rs), "posts %r (requests: %r)" % (
        posts, [(r.get("message"), r.get("fault")) for r in
                fake.requests()]))


# --------------------------------------------------------- absurd answers


@test
def absurd_headers(w):
    """Headers of 200 KB and 1 MB, 10,000 and 100,000 of them: no harm
    No crash, status answers, each row delivered once."""
    fake = w.fake("--fault", "2:bigheader:200", "--fault",
                  "4:manyheaders:10000", "--fault", "6:bigheader:1024",
                  "--fault", "8:manyheaders:100000")
    d = w.daemon({"t": token_target(fake, timeout="5s")})
    rs = rows(6)
    d.drop("t", "h.ndjson", rs)
    wait_until(lambda: d.spool_empty("t"), what="batch handled")
    status_quickly(d)
    analyse(fake, d, "t", names(rs))
    check(d.proc.poll() is None, "still running")


@test
def absurd_bodies(w):
    """50 MB bodies (500s and a 2xx): small memory, each row once
    Status answers meanwhile."""
    fake = w.fake("--fault", "2:bigbody500:50", "--fault",
                  "4:bigbody2xx:50", "--fault", "5:bigbody500:50")
    d = w.daemon({"t": token_target(fake, timeout="10s")})
    rs = rows(4)
    d.drop("t", "b.ndjson", rs)
    while not d.spool_empty("t"):
        status_quickly(d)
        time.sleep(0.05)
    analyse(fake, d, "t", names(rs))
    hwm = vm_hwm_kb(d.proc.pid)
    limit = memory_limit_kb()
    check(limit is None or hwm < limit, "peak memory %d kB" % hwm)
    st = d.status()["targets"]["t"]
    check(st["sent"] == 4, repr(st))
    print("# 3 answers of 50 MB: peak memory of the daemon %d kB" % hwm)


def next_send_in(d, target):
    """Seconds from now to the target's next_send, or None."""
    st = d.status()["targets"][target]
    ns = st.get("next_send")
    if ns is None:
        return None
    if isinstance(ns, str):
        when = datetime.fromisoformat(ns.replace("Z", "+00:00")).timestamp()
    else:
        when = float(ns)
        if when > 1e11:
            when /= 1000.0
    return when - time.time()


@test
def absurd_retry_after_values_clamped(w):
    """Retry-After -1, garbage, empty, 1.5, a past date: short waits
    Also X-RateLimit-Reset garbage or negative: never a stall."""
    kinds = ["429:raw:-1", "429:raw:soon", "429:raw:Sun, 06 Nov 1994 "
             "08:49:37 GMT", "429:raw:", "429:raw:1.5", "429:rawreset:-5",
             "429:rawreset:garbage", "503:raw:-1",
             "remaining0:raw:garbage", "remaining0:raw:-1",
             "429:raw:Sun, 06 Nov 1994 08:49:37 GMT, 5"]
    sched = {2 * i + 1: k for i, k in enumerate(kinds)}
    fake = w.fake(*fault_args(sched))
    d = w.daemon({"t": token_target(fake, backoff_max="500ms")})
    rs = rows(len(kinds) + 1)
    d.drop("t", "ra.ndjson", rs)
    wait_until(lambda: d.spool_empty("t"), timeout=30, what="done")
    reqs = fake.requests()
    gaps = [(a.get("fault"), round(b["t"] - a["t"]))
            for a, b in zip(reqs, reqs[1:]) if a.get("fault")]
    check(all(g < 1500 for _, g in gaps), "waits %r" % gaps)
    analyse(fake, d, "t", names(rs))
    log = d.log()
    check("429" in log, "logged")


@test
def zero_wait_429_storm_is_no_busy_loop(w):
    """A 429 storm saying "retry now" is no busy loop against the server
    Retry-After 0 or a date in the past, again and again: the resends
    still back off."""
    past = "429:raw:Sun, 06 Nov 1994 08:49:37 GMT"
    fake = w.fake("--fault", "1-6:429:0", "--fault", "7-12:" + past)
    d = w.daemon({"t": token_target(fake)})     # interval 0
    d.drop("t", "s.ndjson", rows(2))
    wait_until(lambda: d.spool_empty("t") and len(fake.posts()) == 2,
               what="delivered")
    reqs = fake.requests()
    _injected[0] += 12
    span = reqs[12]["t"] - reqs[0]["t"]
    check(len(reqs) == 14, "%d requests" % len(reqs))
    # 12 refusals in a row: even with nothing to wait for, the resends
    # should space out like any backoff (backoff_min is 100 ms here).
    check(span >= 900, "12 zero-wait 429s answered in %.0f ms: %r" % (
        span, [round(b["t"] - a["t"], 1) for a, b in zip(reqs, reqs[1:])]))


@test
def huge_waits_clamped_to_an_hour(w):
    """Waits of 999999999 s or until 2999 are clamped to an hour
    Retry-After, X-RateLimit-Reset (on a 429 and a 2xx), a 503's
    Retry-After; the daemon stays responsive."""
    kinds = {"ra": "429:raw:999999999",
             "date": "429:raw:Fri, 01 Jan 2999 00:00:00 GMT",
             "reset": "429:rawreset:999999999",
             "rem0": "remaining0:raw:999999999",
             "s503": "503:raw:999999999",
             "huge": "429:raw:99999999999999999999999999999999"}
    fakes = {t: w.fake("--fault", "1:" + k, name="fake-" + t)
             for t, k in kinds.items()}
    d = w.daemon({t: token_target(f) for t, f in fakes.items()})
    for t in kinds:
        d.drop(t, "x.ndjson", rows(2))
    for t, f in fakes.items():
        wait_until(lambda: len(f.requests()) >= 1, what="%s asked" % t)
    _injected[0] += len(kinds)

    def settled():
        st = d.status()["targets"]
        return all(st[t]["state"] not in ("sending", "idle") and
                   st[t].get("next_send") is not None for t in kinds)
    wait_until(settled, what="every target waiting")
    for t in kinds:
        left = next_send_in(d, t)
        check(left is not None and left <= 3600 + 5,
              "%s: next send in %r s" % (t, left))
        check(left > 60, "%s: the wait was honoured, not dropped (%r s)"
              % (t, left))
    status_quickly(d, 0.5)
    check(d.log().count("3600 s") >= 4, "the clamped waits are logged")
    st = d.status()["targets"]
    check(st["ra"]["state"] == "rate_limited", repr(st["ra"]))
    for t, f in fakes.items():
        n = len(f.requests())
        check(n == 1, "%s: %d requests during the wait" % (t, n))
    # The hold after a 2xx is no retry: the first row was delivered.
    check(st["rem0"]["sent"] == 1 and st["rem0"]["retries"] == 0,
          repr(st["rem0"]))


if __name__ == "__main__":
    t0 = time.monotonic()
    try:
        run_tests()
    finally:
        print("# faults injected: %d, rows checked: %d (%.0f s)"
              % (_injected[0], _rows[0], time.monotonic() - t0))
