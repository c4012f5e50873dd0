#!/usr/bin/env python3
"""Memory: peak RSS (VmHWM) of mmsyncd, idle and under big spools.

Each scenario is a fresh daemon (VmHWM is a lifetime peak), webhook target,
interval 0, against the fake Mattermost on loopback:
  1. idle: empty spool, 1 s after READY (the floor: libraries, buffers);
  2. a 1,000,000-row .ndjson batch (about 110 MB), drained with the spool
     on tmpfs so that the whole batch fits in the run (the batch is read
     with pread in chunks: the file system does not change the heap);
     VmRSS sampled all along: growth per 100,000 rows;
  3. the same rows as one .json array: checked whole (streamed) before
     the first row goes, then drained for a few seconds;
  4. 10,000 batch files (1 row each) waiting in incoming/ at start,
     drained until all are delivered (spool on tmpfs: on this disk a
     batch costs about 7 fsyncs, ~30 ms, see cost.py, and 10,000 of them
     would take minutes; memory does not depend on it).
Goal (issue 6): flat, independent of spool size, under 16 MB.
"""

import os
import sys
import time

import benchlib as B

GOAL_KB = 16 * 1024


def sent_counter(d, fake, target):
    lc = B.LineCount(fake.requests_path)

    def sent():
        st = d.status()
        if st is not None and target in st.get("targets", {}):
            return st["targets"][target]["sent"]
        return lc.count()
    return sent


def drain(d, sent, want, seconds, every=0.5):
    """Sample (elapsed s, sent, VmRSS kB) until WANT sent or SECONDS."""
    t0 = time.monotonic()
    samples = []
    while True:
        d.alive()
        n = sent()
        samples.append((time.monotonic() - t0, n, d.rss_kb()))
        if n >= want or time.monotonic() - t0 > seconds:
            return samples
        time.sleep(every)


def growth_per_100k(samples):
    """Least-squares slope of RSS (kB) over rows sent, per 100,000 rows,
    from the samples after the first 1% of the rows."""
    if not samples:
        return float("nan")
    top = samples[-1][1]
    pts = [(n, r) for _, n, r in samples if n >= max(1000, top / 100)]
    if len(pts) < 3:
        return float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return float("nan")
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pts)
    return sxy / sxx * 100000


def main():
    ap = B.quick_flag()
    args = ap.parse_args()
    B.header("memory", args.quick)
    nbig = 1000000
    nfiles = 10000
    drain_s = 20 if args.quick else 240
    json_s = 5
    files_s = 30 if args.quick else 90
    out = {}
    rows = []

    # 1. idle
    with B.Work() as w:
        fake = w.fake()
        d = w.daemon({"m": B.webhook_target(fake)})
        time.sleep(1)
        out["idle"] = {"hwm_kb": d.hwm_kb(), "rss_kb": d.rss_kb()}
        out["idle"]["rss_anon_kb"] = B.proc_status(d.pid, "RssAnon")
        out["idle"]["rss_file_kb"] = B.proc_status(d.pid, "RssFile")
        rows.append(["idle, empty spool", "-", "-", "-",
                     d.rss_kb(), d.hwm_kb(), "-",
                     out["idle"]["rss_anon_kb"]])

    # 2. 1M-row ndjson
    with B.Work(base="/dev/shm") as w:
        fake = w.fake()
        d = w.daemon({"m": B.webhook_target(fake)})
        inc = d.incoming("m")
        tmp = os.path.join(inc, ".big.tmp")
        print("writing a %d-row .ndjson batch ..." % nbig)
        sys.stdout.flush()
        t = time.monotonic()
        B.write_rows(tmp, 1, nbig)
        size = os.path.getsize(tmp)
        print("  %.0f MB in %.1f s; draining (at most %d s) ..."
              % (size / 1e6, time.monotonic() - t, drain_s))
        sys.stdout.flush()
        hwm0 = d.hwm_kb()
        os.rename(tmp, os.path.join(inc, "big.ndjson"))
        samples = drain(d, sent_counter(d, fake, "m"), nbig, drain_s)
        hwm = d.hwm_kb()
        done = samples[-1][1]
        slope = growth_per_100k(samples)
        out["ndjson_1m"] = {"rows": nbig, "bytes": size, "sent": done,
                            "seconds": samples[-1][0], "hwm_kb": hwm,
                            "hwm_before_kb": hwm0,
                            "rss_first_kb": samples[0][2],
                            "rss_last_kb": samples[-1][2],
                            "growth_kb_per_100k_rows": slope,
                            "samples": samples[::max(1, len(samples) // 40)]}
        rows.append(["1,000,000-row .ndjson (%.0f MB)" % (size / 1e6),
                     "%d (%.0f%%)" % (done, 100.0 * done / nbig),
                     samples[-1][0], done / max(1e-9, samples[-1][0]),
                     samples[-1][2], hwm, slope,
                     B.proc_status(d.pid, "RssAnon")])

    # 3. 1M-row .json array
    with B.Work(base="/dev/shm") as w:
        fake = w.fake()
        d = w.daemon({"m": B.webhook_target(fake)})
        inc = d.incoming("m")
        tmp = os.path.join(inc, ".big.tmp")
        print("writing the same rows as a .json array ...")
        sys.stdout.flush()
        B.write_rows(tmp, 1, nbig, json_array=True)
        size = os.path.getsize(tmp)
        t0 = time.time()
        os.rename(tmp, os.path.join(inc, "big.json"))
        rss = []
        first = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            d.alive()
            rss.append(d.rss_kb())
            r = fake.requests.poll()
            if r:
                first = r[0]["t"] / 1000.0 - t0
                break
            time.sleep(0.1)
        hwm_valid = d.hwm_kb()
        sent = sent_counter(d, fake, "m")
        samples = drain(d, sent, nbig, json_s)
        out["json_1m"] = {"rows": nbig, "bytes": size,
                          "validate_s": first, "hwm_after_check_kb":
                          hwm_valid, "sent": samples[-1][1],
                          "hwm_kb": d.hwm_kb(),
                          "max_rss_during_check_kb": max(rss)}
        rows.append(["1,000,000-row .json (%.0f MB), whole-file check "
                     "+ %d s" % (size / 1e6, json_s),
                     samples[-1][1],
                     (first or float("nan")) + samples[-1][0], None,
                     samples[-1][2], d.hwm_kb(), None,
                     B.proc_status(d.pid, "RssAnon")])
        if first is None:
            out["json_1m"]["problem"] = "no request within 120 s"

    # 4. 10,000 files waiting
    with B.Work(base="/dev/shm") as w:
        fake = w.fake()
        d = w.daemon({"m": B.webhook_target(fake)}, start=False)
        inc = d.incoming("m")
        os.makedirs(inc, exist_ok=True)
        print("writing %d batch files ..." % nfiles)
        sys.stdout.flush()
        for i in range(nfiles):
            with open(os.path.join(inc, "f%06d.ndjson" % i), "w") as f:
                f.write(B.ndjson_rows(i, 1))
        ready = d.start(timeout=120)
        hwm_ready = d.hwm_kb()
        anon_ready = B.proc_status(d.pid, "RssAnon")
        st = d.status()
        queued = None
        if st is not None:
            queued = st["targets"]["m"]["queued_batches"]
        samples = drain(d, sent_counter(d, fake, "m"), nfiles, files_s)
        done = samples[-1][1]
        rows.append(["10,000 files waiting (at READY)", "-", "-", "-",
                     hwm_ready, hwm_ready, None, anon_ready])
        out["files_10k"] = {"files": nfiles, "ready_s": ready,
                            "queued_at_ready": queued,
                            "hwm_at_ready_kb": hwm_ready,
                            "sent": done, "seconds": samples[-1][0],
                            "hwm_kb": d.hwm_kb(),
                            "rss_last_kb": samples[-1][2]}
        rows.append(["10,000 files, drained (spool on %s)"
                     % B.fs_type(w.path),
                     "%d (%.0f%%)" % (done, 100.0 * done / nfiles),
                     samples[-1][0], done / max(1e-9, samples[-1][0]),
                     samples[-1][2], d.hwm_kb(), growth_per_100k(samples),
                     B.proc_status(d.pid, "RssAnon")])

    B.table(["scenario", "rows sent", "seconds", "rows/s", "RSS end kB",
             "VmHWM kB", "kB/100k rows", "RssAnon kB"], rows,
            "Resident memory of mmsyncd (VmHWM: peak over the process life; "
            "RssAnon: its own heap and stacks, the rest is shared "
            "libraries)")
    print()
    peak = max(out["ndjson_1m"]["hwm_kb"], out["json_1m"]["hwm_kb"],
               out["files_10k"]["hwm_kb"])
    idle = out["idle"]["hwm_kb"]
    print("peak over the big-spool scenarios: %d kB = %.1f MB (idle: %.1f "
          "MB; above idle: %d kB)" % (peak, peak / 1024.0, idle / 1024.0,
                                     peak - idle))
    print("goal: peak RSS under 16 MB: %s (%.1f MB, %s by %.1f MB)"
          % ("MET" if peak < GOAL_KB else "MISSED", peak / 1024.0,
             "under" if peak < GOAL_KB else "over",
             abs(GOAL_KB - peak) / 1024.0))
    sl = out["ndjson_1m"]["growth_kb_per_100k_rows"]
    print("goal: flat while draining: %s (%.1f kB per 100,000 rows over "
          "%d rows)" % ("MET" if abs(sl) < 64 else "MISSED", sl,
                        out["ndjson_1m"]["sent"]))
    B.result_line("memory", out)


if __name__ == "__main__":
    main()
