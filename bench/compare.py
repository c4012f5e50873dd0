#!/usr/bin/env python3
"""Two builds of mmsyncd side by side: throughput and pacing.

    python3 bench/compare.py OLD/src/mmsyncd NEW/src/mmsyncd [--rounds N]

For each build, alternating, N rounds (default 2; the best round counts,
the machine may be shared): interval 0, one 20,000-row batch with the
spool on tmpfs and on the usual disk (rows/s, CPU us/row); interval 10 ms,
500 rows at latency 0 (achieved rate, gaps); one-row batches (batches/s).
The fake Mattermost is the one found as usual ($FAKE_MATTERMOST, ...).
Made to check a change before and after (e.g. git archive COMMIT | tar -x
into a temp dir, configure CFLAGS="-O2 -g", make src/mmsyncd).
"""

import argparse
import os
import sys
import time

import benchlib as B


def throughput(rows, base):
    with B.Work(base=base) as w:
        fake = w.fake()
        d = w.daemon({"c": B.webhook_target(fake)})
        time.sleep(0.2)
        c0 = d.cpu_ns()
        d.drop("c", "b.ndjson", B.ndjson_rows(1, rows))
        fake.wait_posts(rows, 300, every=0.1, alive=d.alive)
        c1 = d.cpu_ns()
        ts = [r["t"] for r in fake.requests.poll() if r.get("method")]
        return B.rate(ts), (c1 - c0) / 1000.0 / rows


def pacing(rows, interval):
    with B.Work() as w:
        fake = w.fake()
        d = w.daemon({"c": B.webhook_target(fake, interval="%dms"
                                            % interval)})
        d.drop("c", "b.ndjson", B.ndjson_rows(1, rows))
        fake.wait_posts(rows, 60 + rows * interval / 500.0, every=0.05,
                        alive=d.alive)
        ts = [r["t"] for r in fake.requests.poll() if r.get("method")]
        g = B.gaps(ts)
        return B.rate(ts), B.median(g), min(g), sum(1 for x in g
                                                    if x < interval)


def batches(n):
    with B.Work(base="/dev/shm") as w:
        fake = w.fake()
        d = w.daemon({"c": B.webhook_target(fake)})
        for i in range(n):
            d.drop("c", "f%06d.ndjson" % i, B.ndjson_rows(i, 1))
        fake.wait_posts(n, 120, every=0.1, alive=d.alive)
        ts = [r["t"] for r in fake.requests.poll() if r.get("method")]
        return B.rate(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    builds = [os.path.abspath(args.old), os.path.abspath(args.new)]
    os.environ["MMSYNCD"] = builds[0]
    B.header("two builds side by side")
    print("old: %s\nnew: %s" % tuple(builds))
    best = {b: {} for b in builds}

    def keep(b, key, val, higher=True):
        cur = best[b].get(key)
        if cur is None or (val[0] > cur[0] if higher else val[0] < cur[0]):
            best[b][key] = val

    for r in range(args.rounds):
        for b in builds:
            os.environ["MMSYNCD"] = b
            print("round %d, %s ..." % (r + 1, b))
            sys.stdout.flush()
            keep(b, "tmpfs", throughput(20000, "/dev/shm"))
            keep(b, "disk", throughput(20000, None))
            keep(b, "pace", pacing(500, 10))
            keep(b, "batches", (batches(300),))
    rows = []
    for name, b in (("old", builds[0]), ("new", builds[1])):
        x = best[b]
        rows.append([name, x["tmpfs"][0], x["tmpfs"][1], x["disk"][0],
                     x["disk"][1], x["batches"][0], x["pace"][0],
                     x["pace"][1], x["pace"][2], x["pace"][3]])
    B.table(["build", "tmpfs rows/s", "CPU us/row", "disk rows/s",
             "CPU us/row", "batches/s tmpfs", "10ms: rate/s", "med gap ms",
             "min gap ms", "gaps<10"], rows,
            "best of %d rounds each (interval 0 unless said)" % args.rounds)
    B.result_line("compare", {"old": builds[0], "new": builds[1],
                              "best": {("old" if b == builds[0] else "new"):
                                       v for b, v in best.items()}})


if __name__ == "__main__":
    main()
