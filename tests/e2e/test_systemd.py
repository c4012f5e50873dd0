"""systemd integration end to end: the notification sequence, reload and
stop, and what reaches the log."""

import os
import re
import signal
import time

from mmtest import (TOKEN, check, run_tests, test, token_target, wait_until,
                    webhook_target)


def rows(n, start=1):
    return [{"name": "row-%d" % i} for i in range(start, start + n)]


def note_index(d, what, after=0):
    return d.wait_note(what, after=after)


@test
def notify_sequence(w):
    """NOTIFY_SOCKET sees READY, STATUS, WATCHDOG, RELOADING with
    MONOTONIC_USEC, READY, STOPPING in order"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)},
                 env={"WATCHDOG_USEC": "400000"}, start=False)
    d.start()
    ready = note_index(d, "READY=1")
    wait_until(lambda: any(n.startswith("STATUS=") or "\nSTATUS=" in n
                           for n in d.notes), what="STATUS=")
    check(any("target" in n for n in d.notes if "STATUS=" in n), "status")
    wd = note_index(d, "WATCHDOG=1")
    # Fed at half the period: several within a second.
    t0 = len([n for n in d.notes if n == "WATCHDOG=1"])
    wait_until(lambda: len([n for n in d.notes if n == "WATCHDOG=1"])
               >= t0 + 3, timeout=10, what="watchdog kept fed")
    d.signal(signal.SIGHUP)
    rel = note_index(d, "RELOADING=1", after=ready + 1)
    with d.notes_lock:
        reloading = d.notes[rel]
    m = re.search(r"MONOTONIC_USEC=(\d+)", reloading)
    check(m is not None, "MONOTONIC_USEC in %r" % reloading)
    now_us = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
    check(abs(now_us - int(m.group(1))) < 30e6, "MONOTONIC_USEC is now")
    ready2 = note_index(d, "READY=1", after=rel + 1)
    check(d.stop() == 0, "exit 0")
    stopping = note_index(d, "STOPPING=1", after=ready2 + 1)
    check(ready < rel < ready2 < stopping and wd >= 0, "order")


@test
def watchdog_off_without_usec(w):
    """No WATCHDOG=1 when the watchdog is not enabled"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)})
    d.drop("t", "a.ndjson", rows(2))
    fake.wait_posts(2)
    check(d.stop() == 0, "exit 0")
    check(not any("WATCHDOG=1" in n for n in d.notes), "no watchdog")


@test
def reload_adds_and_removes_targets(w):
    """A reload adds a target and removes one without losing a row"""
    fake = w.fake()
    d = w.daemon({"a": token_target(fake, template="a {{name}}")})
    d.drop("a", "1.ndjson", rows(2))
    fake.wait_posts(2)
    d.write_config({"b": webhook_target(fake, template="b {{name}}")})
    n = len(d.notes)
    d.signal(signal.SIGHUP)
    note_index(d, "READY=1", after=n)
    check(list(d.status()["targets"]) == ["b"], "only b now")
    d.drop("b", "1.ndjson", rows(2))
    d.drop("a", "2.ndjson", rows(1))    # kept for when a comes back
    posts = fake.wait_posts(4)
    check([p["message"] for p in posts][2:] == ["b row-1", "b row-2"],
          repr(posts))
    d.write_config({"a": token_target(fake, template="a {{name}}"),
                    "b": webhook_target(fake, template="b {{name}}")})
    n = len(d.notes)
    d.signal(signal.SIGHUP)
    note_index(d, "READY=1", after=n)
    posts = fake.wait_posts(5)
    check(posts[4]["message"] == "a row-1", repr(posts[4]))
    check("new target" in d.log(), "logged")


@test
def reload_with_broken_file_keeps_old(w):
    """A broken file on reload is reported with FILE:LINE:COLUMN and the
    old configuration keeps delivering"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)})
    with open(d.config_path, "a") as f:
        f.write("    bogus_key: 1\n")
    n = len(d.notes)
    d.signal(signal.SIGHUP)
    note_index(d, "READY=1", after=n)
    check(re.search(re.escape(d.config_path) + r":\d+:\d+: ", d.log()),
          "FILE:LINE:COLUMN in the log")
    check("keeping the running configuration" in d.log(), "kept")
    d.drop("t", "a.ndjson", rows(3))
    fake.wait_posts(3)


@test
def journal_prefixes_and_no_secrets(w):
    """Under journald every line has a <N> prefix; no token or hook id
    appears in the log"""
    fake = w.fake("--fault", "1:500")
    hook_id = "hook1234567890abcdefghijkl"
    d = w.daemon({"t": token_target(fake),
                  "h": webhook_target(fake)},
                 env={"JOURNAL_STREAM": "8:1234"})
    d.drop("t", "a.ndjson", rows(2))
    d.drop("h", "a.ndjson", rows(2))
    fake.wait_posts(4)
    check(d.stop() == 0, "exit 0")
    lines = [l for l in d.log().splitlines() if l]
    check(lines and all(re.match(r"<[0-7]>", l) for l in lines),
          "prefixes: %r" % lines[:3])
    check(any(l.startswith("<4>") for l in lines), "a warning at <4>")
    check(TOKEN not in d.log(), "token not logged")
    check(hook_id not in d.log(), "hook id not logged")


@test
def sigterm_exits_fast_with_request_in_flight(w):
    """SIGTERM with a request hanging: exit 0 within 10 s, the row is
    sent again after a restart"""
    fake = w.fake("--fault", "1:hang")
    d = w.daemon({"t": token_target(fake, timeout="60s")})
    d.drop("t", "a.ndjson", rows(2))
    wait_until(lambda: len(fake.requests()) >= 1, what="request in flight")
    t0 = time.monotonic()
    rc = d.stop(timeout=12)
    check(rc == 0 and time.monotonic() - t0 < 10, "exit %s in %.1f s"
          % (rc, time.monotonic() - t0))
    d.start()
    posts = fake.wait_posts(2)
    check([p["message"] for p in posts] == ["row-1", "row-2"], repr(posts))


if __name__ == "__main__":
    run_tests()
