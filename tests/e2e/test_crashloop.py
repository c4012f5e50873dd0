"""Crash loop: kill -9 the daemon at random moments while it delivers a
few thousand rows to several targets, restart it each time, and prove
that every row ended delivered (at most once more per kill, never twice
for REST thanks to pending_post_id) or set aside exactly once, in order.

MMS_CRASH_KILLS and MMS_CRASH_ROWS scale it up (bench/ uses them)."""

import json
import os
import random
import time

from mmtest import (check, read_jsonl, run_tests, test, token_target,
                    wait_until, webhook_target)

KILLS = int(os.environ.get("MMS_CRASH_KILLS", "30"))
ROWS = int(os.environ.get("MMS_CRASH_ROWS", "1200"))     # per target
FILES = 4                                                # per target
BAD_EVERY = 97                                           # a bad row


def batch_text(target, f, per_file):
    lines = []
    for i in range(per_file):
        n = f * per_file + i + 1
        if n % BAD_EVERY == 0:
            lines.append("not json %s %d" % (target, n))
        else:
            lines.append(json.dumps({"t": target, "n": n}))
    return "\n".join(lines) + "\n"


@test
def crash_loop(w):
    """kill -9 at random moments: nothing lost, order held, REST never
    duplicated, at most one duplicate per kill for webhooks"""
    rng = random.Random(20261126)
    fake = w.fake("--latency", "5")
    targets = {
        "rest1": token_target(fake, template="{{t}} {{n}}"),
        "rest2": token_target(fake, template="{{t}} {{n}}"),
        "hook": webhook_target(fake, template="{{t}} {{n}}"),
    }
    d = w.daemon(targets, log_level="info")
    per_file = ROWS // FILES
    for name in targets:
        for f in range(FILES):
            d.drop(name, "batch-%02d.ndjson" % f,
                   text=batch_text(name, f, per_file))
    total = per_file * FILES
    good = total - total // BAD_EVERY

    kills = 0
    while kills < KILLS:
        time.sleep(rng.uniform(0.02, 0.25))   # a random moment, not a wait
        if all(d.spool_empty(n) for n in targets):
            break
        d.kill9()
        kills += 1
        d.start()
    for name in targets:
        wait_until(lambda: d.spool_empty(name), timeout=120,
                   what="%s drained" % name)
    check(d.stop() == 0, "clean stop at the end")

    posts = fake.posts()
    for name in targets:
        msgs = [p["message"] for p in posts
                if p["message"].startswith(name + " ")]
        nums = [int(m.split()[1]) for m in msgs]
        want = [n for n in range(1, total + 1) if n % BAD_EVERY]
        check(set(nums) == set(want), "%s: every good row delivered "
              "(missing %r)" % (name, sorted(set(want) - set(nums))[:10]))
        dups = len(nums) - len(set(nums))
        if name.startswith("rest"):
            check(dups == 0, "%s: %d duplicates" % (name, dups))
        else:
            check(dups <= kills, "%s: %d duplicates for %d kills"
                  % (name, dups, kills))
        # Order: the first time each row appears is ascending.
        first = []
        seen = set()
        for n in nums:
            if n not in seen:
                seen.add(n)
                first.append(n)
        check(first == sorted(first), "%s: order held" % name)

        # Every bad row set aside exactly once, beside its batch.
        failed = d.failed(name)
        check(all(f.startswith("batch-") for f in failed), repr(failed))
        bad = []
        for f in failed:
            if f.endswith(".ndjson"):
                with open(os.path.join(d.failed_dir(name), f)) as fh:
                    bad += [l for l in fh.read().splitlines() if l]
        want_bad = ["not json %s %d" % (name, n)
                    for n in range(1, total + 1) if n % BAD_EVERY == 0]
        check(sorted(bad) == sorted(want_bad), "%s: set aside once each: "
              "%d vs %d" % (name, len(bad), len(want_bad)))
        errs = []
        for f in failed:
            if f.endswith(".errors"):
                errs += read_jsonl(os.path.join(d.failed_dir(name), f))
        check(len(errs) == len(want_bad), "%s: one reason per row" % name)
    print("# %d kills, %d rows checked per target, %d posts"
          % (kills, total, len(posts)))
    check(kills >= min(KILLS, 10), "enough kills happened: %d" % kills)
    check(good > 0, "rows")


if __name__ == "__main__":
    run_tests()
