#!/usr/bin/env python3
"""Start-up: time from process start to READY=1 with a full spool.

The spool is made the way it happens in real life:
  1. mmsyncd delivers a 1,000-row batch to the fake Mattermost at
     --latency 50 (interval 0) and is killed with SIGKILL after ~200 posts:
     a half-done batch stays in active/ with its progress file;
  2. 10,000 batch files (one row each) are put in incoming/;
  3. mmsyncd is started again: the time from just before exec to the
     READY=1 datagram on NOTIFY_SOCKET, and to the first request of the
     resumed batch at the server; then SIGKILL again right after READY.
     Repeated (5 times, --quick 3); the same with an empty spool as the
     baseline.
Finally the daemon runs for 3 s more and the posts are checked: the
resumed batch goes on where it stopped, rows 1..N with none missing, in
order, and at most one row sent twice per SIGKILL (the row in flight).
"""

import os
import sys
import time

import benchlib as B


def main():
    ap = B.quick_flag()
    args = ap.parse_args()
    B.header("start-up", args.quick)
    reps = 3 if args.quick else 5
    nfiles = 10000
    out = {"problems": []}

    # baseline: empty spool
    base = []
    with B.Work() as w:
        fake = w.fake()
        d = w.daemon({"s": B.webhook_target(fake)}, start=False)
        for _ in range(reps):
            base.append(d.start())
            d.kill9()

    with B.Work() as w:
        fake = w.fake("--latency", "50")
        d = w.daemon({"s": B.webhook_target(fake)})
        d.drop("s", "half.ndjson", B.ndjson_rows(1, 1000))
        fake.wait_posts(200, 60, alive=d.alive)
        d.kill9()
        first_kill = len(fake.posts.poll())
        active = os.listdir(os.path.join(d.spool, "s", "active"))
        print("killed (SIGKILL) after %d posts; active/ holds: %s"
              % (first_kill, " ".join(sorted(active))))
        inc = d.incoming("s")
        for i in range(nfiles):
            with open(os.path.join(inc, "w%06d.ndjson" % i), "w") as f:
                f.write(B.ndjson_rows(100000 + i, 1))
        os.sync()
        print("%d files in incoming/; restarting %d times ..."
              % (len(os.listdir(inc)), reps))
        sys.stdout.flush()

        ready, first_req = [], []
        kills = 1
        for _ in range(reps):
            n0 = len(fake.requests.poll())
            t_exec = time.time()
            ready.append(d.start(timeout=120))
            st = d.status()
            try:
                B.wait_until(lambda: len(fake.requests.poll()) > n0, 10,
                             "first request after restart", every=0.0005)
                first_req.append(fake.requests.items[n0]["t"] / 1000.0
                                 - t_exec)
            except TimeoutError:
                out["problems"].append("no request within 10 s of a restart")
            d.kill9()
            kills += 1
        if st is not None:
            t = st["targets"]["s"]
            out["status_after_restart"] = {k: t.get(k) for k in (
                "state", "queued_batches", "queued_rows", "sent")}

        # let it run on a little: check the resumed batch so far
        d.start(timeout=120)
        time.sleep(3)
        d.stop()
        index = {B.render(B.row(i)): i for i in range(1, 1001)}
        seq = [index[p["message"]] for p in fake.posts.poll()
               if p["message"] in index]
        top = max(seq)
        missing = sorted(set(range(1, top + 1)) - set(seq))
        dups = len(seq) - len(set(seq))
        order_ok = all(b - a in (0, 1) for a, b in zip(seq, seq[1:]))
        out.update({"posts_at_first_kill": first_kill, "kills": kills,
                    "rows_checked": top,
                    "missing_rows": len(missing), "duplicate_rows": dups,
                    "in_order": order_ok})
        if missing:
            out["problems"].append("rows missing from the resumed batch: "
                                   "%s" % missing[:10])
        if not order_ok:
            out["problems"].append("rows out of order after a restart")
        if dups > kills:
            out["problems"].append("%d rows sent twice for %d SIGKILLs"
                                   % (dups, kills))

    out.update({"reps": reps, "files": nfiles,
                "ready_s_empty": base, "ready_s_full": ready,
                "first_request_s": first_req})
    rows = [["empty spool", reps, min(base) * 1e3, B.median(base) * 1e3,
             max(base) * 1e3, None],
            ["10,000 files + half-done batch", reps, min(ready) * 1e3,
             B.median(ready) * 1e3, max(ready) * 1e3,
             B.median(first_req) * 1e3 if first_req else None]]
    B.table(["spool", "starts", "min ms", "median ms", "max ms",
             "1st request ms"], rows,
            "exec -> READY=1 (and -> first request of the resumed batch)")
    print()
    if "status_after_restart" in out:
        print("status after a restart: %s" % out["status_after_restart"])
    print("resumed batch, rows 1..%d: %d missing, %d sent twice after %d "
          "SIGKILLs (at most one each allowed), order kept: %s"
          % (out["rows_checked"], out["missing_rows"],
             out["duplicate_rows"], kills,
             "yes" if out["in_order"] else "NO"))
    for p in out["problems"]:
        print("PROBLEM: " + p)
    B.result_line("startup", out)


if __name__ == "__main__":
    main()
