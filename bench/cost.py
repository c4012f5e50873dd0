#!/usr/bin/env python3
"""Cost per row: rows/s, CPU time per row, instructions per row, syscalls.

mmsyncd with interval 0 sends one batch to the fake Mattermost on loopback
(webhook target, the same endpoint the peers use):
  - N rows (100,000; --quick 20,000) with the spool on the usual disk
    (ext4 here: every row's progress is fsync'ed, that is the durability
    promise) and again with the spool on tmpfs (/dev/shm: same code, the
    fsyncs cost nothing, so the figure is the CPU-bound rate);
  - CPU = user+sys of the daemon from /proc/PID/schedstat (ns) before the
    drop and after the last post; the user/sys split from /proc/PID/stat;
  - instructions per row under valgrind --tool=callgrind: two runs (200 and
    2,000 rows), (Ir(2000) - Ir(200)) / 1800 removes start-up and shut-down;
    the top 10 functions by inclusive cost go to bench/results/;
  - syscalls per row under strace -c -f (1,000 rows, attached after READY).
Peers, per message, CPU of the whole process tree (wait4 rusage):
  - a shell loop of curl (no sleep), bodies pre-rendered (favours the loop);
  - apprise's CLI once per message (mmost://127.0.0.1:PORT/HOOK), which is
    how a shell script uses it;
  - apprise's Python API in one process (Apprise().notify per message;
    start-up removed by a run with 0 messages; its built-in 5.5 s wait
    between two notifications turned off): the most favourable form.
Goal (issue 6): at least 100x less CPU per row than either peer.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import benchlib as B

CURL_LOOP = r'''
while IFS= read -r body; do
  curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
       --data-binary "$body" "$1"
done < "$2"
'''

APPRISE_LOOP = r'''
while IFS= read -r msg; do
  apprise -b "$msg" "$1" || exit 1
done < "$2"
'''

APPRISE_API = r'''
import sys, apprise
a = apprise.Apprise()
a.add(sys.argv[1])
for s in a:
    # apprise waits 5.5 s between two notifications of one service by
    # default (NotifyBase.request_rate_per_sec): off, to time the CPU only
    s.request_rate_per_sec = 0
n = 0
for line in open(sys.argv[2]):
    if not a.notify(body=line.rstrip("\n")):
        sys.exit("apprise notify failed")
    n += 1
'''


def daemon_run(rows, base, timeout):
    probe = B.fsync_probe(20)[0] if base is None else None
    with B.Work(base=base) as w:
        fake = w.fake()
        d = w.daemon({"cost": B.webhook_target(fake)})
        time.sleep(0.2)
        c0 = d.cpu_ns()
        u0, s0 = B.cpu_split(d.pid)
        text = B.ndjson_rows(1, rows)
        t0 = d.drop("cost", "big.ndjson", text)
        fake.wait_posts(rows, timeout, every=0.2, alive=d.alive)
        c1 = d.cpu_ns()
        u1, s1 = B.cpu_split(d.pid)
        ts = [r["t"] for r in fake.requests.poll() if r.get("method")]
        wall = ts[-1] / 1000.0 - t0
        hwm = d.hwm_kb()
        spool_fs = B.fs_type(w.path)
        st = d.status()
        sent = None
        if st is not None:
            sent = st["targets"]["cost"]["sent"]
        return {"rows": rows, "fs": spool_fs, "wall_s": wall,
                "disk_probe_ms": probe,
                "rows_per_s": rows / wall,
                "cpu_us_per_row": (c1 - c0) / 1000.0 / rows,
                "user_s": u1 - u0, "sys_s": s1 - s0,
                "requests": len(ts), "hwm_kb": hwm, "status_sent": sent}


def batches_run(n, base):
    """N one-row batch files dropped at once: batches/s, CPU per batch."""
    probe = B.fsync_probe(20)[0] if base is None else None
    with B.Work(base=base) as w:
        fake = w.fake()
        d = w.daemon({"cost": B.webhook_target(fake)})
        inc = d.incoming("cost")
        for i in range(n):
            with open(os.path.join(inc, ".f%06d.tmp" % i), "w") as f:
                f.write(B.ndjson_rows(i, 1))
        os.sync()
        time.sleep(0.2)
        c0 = d.cpu_ns()
        for i in range(n):
            os.rename(os.path.join(inc, ".f%06d.tmp" % i),
                      os.path.join(inc, "f%06d.ndjson" % i))
        fake.wait_posts(n, 60 + n * 0.1, every=0.2, alive=d.alive)
        c1 = d.cpu_ns()
        ts = [r["t"] for r in fake.requests.poll() if r.get("method")]
        return {"batches": n, "fs": B.fs_type(w.path),
                "disk_probe_ms": probe,
                "batches_per_s": B.rate(ts),
                "cpu_us_per_batch": (c1 - c0) / 1000.0 / n}


def callgrind_run(rows, out):
    with B.Work(base="/dev/shm") as w:
        fake = w.fake()
        d = w.daemon({"cg": B.webhook_target(fake)}, start=False,
                     wrapper=["valgrind", "--tool=callgrind",
                              "--callgrind-out-file=" + out, "-q"])
        d.start(timeout=120)
        d.drop("cg", "cg.ndjson", B.ndjson_rows(1, rows))
        fake.wait_posts(rows, 60 + rows * 0.05, every=0.2, alive=d.alive)
        rc = d.stop(timeout=120)
        if rc != 0:
            raise RuntimeError("mmsyncd under callgrind exited %s: %s"
                               % (rc, d.log_tail()))
    ir = None
    with open(out) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                ir = int(line.split()[1])
    return ir


WRAPPERS = ("(below main)", "libc_start", "main.c:main", "event_base_",
            "ld-linux", "libevent-2.1.so")


def annotate(out, inclusive=True):
    try:
        text = subprocess.run(["callgrind_annotate", "--inclusive=%s" % (
            "yes" if inclusive else "no"), out], capture_output=True,
            text=True, timeout=120).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return "callgrind_annotate failed: %s" % e, []
    top = []
    seen = set()
    for line in text.splitlines():
        if line.startswith("-- Auto-annotated source"):
            break
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*([\d.]+)%\))?\s*(\S.*)$", line)
        if m and ":" in m.group(3) and not line.lstrip().startswith(
                ("Ir", "--")):
            name = m.group(3)
            if "PROGRAM TOTALS" in name:
                continue
            key = (m.group(1), name.split(":")[-1].split(" [")[0])
            if key in seen:
                continue
            seen.add(key)
            top.append((int(m.group(1).replace(",", "")), m.group(2), name))
    return text, top


def strace_run(rows, out):
    with B.Work(base="/dev/shm") as w:
        fake = w.fake()
        d = w.daemon({"st": B.webhook_target(fake)})
        s = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p",
                              str(d.pid)], stderr=subprocess.DEVNULL)
        time.sleep(1.0)     # attached
        d.drop("st", "st.ndjson", B.ndjson_rows(1, rows))
        fake.wait_posts(rows, 120, every=0.2, alive=d.alive)
        s.send_signal(signal.SIGINT)
        s.wait(20)
    calls = {}
    with open(out) as f:
        for line in f:
            p = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(p) >= 5 and p[0][0].isdigit() and p[-1] != "total":
                try:
                    calls[p[-1]] = int(p[3])
                except ValueError:
                    pass
    return calls


def peer_run(script, args, n):
    rc, wall, u, s = B.run_rusage(["sh", script] + args)
    if rc != 0:
        raise RuntimeError("%s exited %s" % (script, rc))
    return {"messages": n, "wall_s": wall, "user_s": u, "sys_s": s,
            "cpu_us_per_msg": (u + s) * 1e6 / n, "msgs_per_s": n / wall}


def main():
    ap = B.quick_flag()
    ap.add_argument("--rows", type=int, help="rows of the big batch")
    args = ap.parse_args()
    B.header("cost per row", args.quick)
    nbig = args.rows or (20000 if args.quick else 100000)
    ncurl = 200 if args.quick else 500
    napp = 10 if args.quick else 30
    napi = 100 if args.quick else 300
    cg_small, cg_big = (100, 1000) if args.quick else (200, 2000)
    res = {"problems": []}

    print("mmsyncd: %d rows, spool on %s ..." % (nbig, B.tempfile.gettempdir()))
    sys.stdout.flush()
    res["disk"] = daemon_run(nbig, None, 60 + nbig * 0.01)
    print("mmsyncd: %d rows, spool on /dev/shm ..." % nbig)
    sys.stdout.flush()
    res["tmpfs"] = daemon_run(nbig, "/dev/shm", 60 + nbig * 0.005)
    nb = 100 if args.quick else 300
    print("mmsyncd: %d one-row batch files, on %s and on /dev/shm ..."
          % (nb, B.tempfile.gettempdir()))
    sys.stdout.flush()
    res["batches_disk"] = batches_run(nb, None)
    res["batches_tmpfs"] = batches_run(nb, "/dev/shm")
    for k in ("disk", "tmpfs"):
        if res[k]["requests"] != nbig:
            res["problems"].append("%s run: %d requests for %d rows" % (
                k, res[k]["requests"], nbig))

    # callgrind
    os.makedirs(B.RESULTS, exist_ok=True)
    if shutil.which("valgrind"):
        print("callgrind: %d and %d rows ..." % (cg_small, cg_big))
        sys.stdout.flush()
        outs = os.path.join(B.RESULTS, "callgrind.out.small")
        outb = os.path.join(B.RESULTS, "callgrind.out.big")
        ir_s = callgrind_run(cg_small, outs)
        ir_b = callgrind_run(cg_big, outb)
        text, top = annotate(outb)
        B.save_result_file("callgrind-inclusive.txt",
                           text.split("-- Auto-annotated source")[0])
        text, self_top = annotate(outb, inclusive=False)
        B.save_result_file("callgrind-self.txt",
                           text.split("-- Auto-annotated source")[0])
        os.unlink(outs)
        os.unlink(outb)     # the annotations above are what is kept
        inner = [t for t in top if not any(x in t[2] for x in WRAPPERS)]
        res["callgrind"] = {"rows_small": cg_small, "rows_big": cg_big,
                            "ir_small": ir_s, "ir_big": ir_b,
                            "ir_per_row": (ir_b - ir_s) / (cg_big - cg_small),
                            "top_inclusive": [
                                {"ir": t[0], "pct": t[1], "fn": t[2]}
                                for t in top[:10]],
                            "top_inclusive_below_loop": [
                                {"ir": t[0], "pct": t[1], "fn": t[2]}
                                for t in inner[:10]],
                            "own_inclusive": [
                                {"ir": t[0], "pct": t[1], "fn": t[2]}
                                for t in top if "/src/" in t[2] and
                                not any(x in t[2] for x in WRAPPERS)][:15],
                            "top_self": [
                                {"ir": t[0], "pct": t[1], "fn": t[2]}
                                for t in self_top[:10]]}
    else:
        B.note("valgrind is not installed: no instruction counts "
               "(apt-get install valgrind)")

    if shutil.which("strace"):
        print("strace: 1,000 rows ...")
        sys.stdout.flush()
        calls = strace_run(1000, os.path.join(B.RESULTS, "strace-c.txt"))
        res["syscalls_per_row"] = {k: v / 1000.0 for k, v in calls.items()}
    else:
        B.note("strace is not installed: no syscall counts")

    # peers
    with B.Work() as w:
        fake = w.fake(name="peer")
        bodies = w.file("bodies.ndjson")
        msgs = w.file("msgs.txt")
        with open(bodies, "w") as f, open(msgs, "w") as g:
            for i in range(1, max(ncurl, napp, napi) + 1):
                m = B.render(B.row(i))
                f.write(json.dumps({"text": m}) + "\n")
                g.write(m + "\n")

        def head(src, n):
            p = w.file("%s.%d" % (os.path.basename(src), n))
            with open(src) as f, open(p, "w") as g:
                for _ in range(n):
                    g.write(f.readline())
            return p

        loop = w.file("curl.sh")
        with open(loop, "w") as f:
            f.write(CURL_LOOP)
        print("peer: curl loop, %d messages ..." % ncurl)
        sys.stdout.flush()
        before = fake.posts.count()
        res["curl"] = peer_run(loop, [fake.hook_url, head(bodies, ncurl)],
                               ncurl)
        fake.wait_posts(before + ncurl, 10)

        apprise = shutil.which("apprise")
        if apprise:
            url = "mmost://127.0.0.1:%d/%s" % (fake.port, B.HOOK)
            aloop = w.file("apprise.sh")
            with open(aloop, "w") as f:
                f.write(APPRISE_LOOP)
            print("peer: apprise CLI, %d messages ..." % napp)
            sys.stdout.flush()
            before = fake.posts.count()
            res["apprise_cli"] = peer_run(aloop, [url, head(msgs, napp)],
                                          napp)
            fake.wait_posts(before + napp, 10)
            # the API: the interpreter apprise is installed for
            py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
                else sys.executable
            api = w.file("apprise_api.py")
            with open(api, "w") as f:
                f.write(APPRISE_API)
            print("peer: apprise Python API, %d messages ..." % napi)
            sys.stdout.flush()
            before = fake.posts.count()
            r0 = B.run_rusage([py, api, url, "/dev/null"])
            r1 = B.run_rusage([py, api, url, head(msgs, napi)])
            if r0[0] != 0 or r1[0] != 0:
                res["problems"].append("apprise API run failed")
            fake.wait_posts(before + napi, 10)
            cpu = (r1[2] + r1[3]) - (r0[2] + r0[3])
            res["apprise_api"] = {
                "messages": napi, "wall_s": r1[1] - r0[1],
                "cpu_us_per_msg": cpu * 1e6 / napi,
                "msgs_per_s": napi / max(1e-9, r1[1] - r0[1]),
                "startup_cpu_s": r0[2] + r0[3]}
        else:
            B.note("apprise is not installed (apt-get install apprise): "
                   "that peer is skipped")

    dk, tf = res["disk"], res["tmpfs"]
    rows = [["mmsyncd (spool on %s, fsync per row)" % dk["fs"], dk["rows"],
             dk["rows_per_s"], dk["cpu_us_per_row"],
             1e6 * dk["user_s"] / dk["rows"], 1e6 * dk["sys_s"] / dk["rows"],
             "1.0x"],
            ["mmsyncd (spool on %s)" % tf["fs"], tf["rows"], tf["rows_per_s"],
             tf["cpu_us_per_row"], 1e6 * tf["user_s"] / tf["rows"],
             1e6 * tf["sys_s"] / tf["rows"],
             "%.2fx" % B.ratio(tf["cpu_us_per_row"], dk["cpu_us_per_row"])]]
    for k, name in (("curl", "peer: curl loop (1 process/msg)"),
                    ("apprise_cli", "peer: apprise CLI (1 process/msg)"),
                    ("apprise_api", "peer: apprise Python API (1 process)")):
        if k in res:
            p = res[k]
            rows.append([name, p["messages"], p["msgs_per_s"],
                         p["cpu_us_per_msg"],
                         1e6 * p["user_s"] / p["messages"] if "user_s" in p
                         else None,
                         1e6 * p["sys_s"] / p["messages"] if "sys_s" in p
                         else None,
                         "%.0fx" % B.ratio(p["cpu_us_per_msg"],
                                           dk["cpu_us_per_row"])])
    print()
    print("disk probe just before the ext4 run (write + fsync + rename + "
          "directory fsync of a small file, what each row costs): median "
          "%.2f ms" % dk["disk_probe_ms"])
    B.table(["who", "rows", "rows/s", "CPU us/row", "user us", "sys us",
             "CPU vs mmsyncd"], rows,
            "CPU per message (user+sys; ratios against mmsyncd with fsync)")

    B.table(["spool on", "batches", "batches/s", "ms/batch", "CPU us/batch",
             "disk probe ms"],
            [[r["fs"], r["batches"], r["batches_per_s"],
              1000.0 / r["batches_per_s"], r["cpu_us_per_batch"],
              r["disk_probe_ms"]]
             for r in (res["batches_disk"], res["batches_tmpfs"])],
            "Many small batches: one-row batch files, dropped at once")
    if "callgrind" in res:
        cg = res["callgrind"]
        print()
        print("instructions per row (callgrind, (Ir(%d)-Ir(%d))/%d): %s"
              % (cg["rows_big"], cg["rows_small"],
                 cg["rows_big"] - cg["rows_small"],
                 "{:,.0f}".format(cg["ir_per_row"])))
        n = cg["rows_big"]
        B.table(["Ir incl", "%", "Ir/row", "function"],
                [[t["ir"], t["pct"] or "", t["ir"] / n, t["fn"][:100]]
                 for t in cg["top_inclusive"]],
                "top 10 by inclusive cost, %d-row run "
                "(bench/results/callgrind-inclusive.txt)" % n)
        B.table(["Ir incl", "%", "Ir/row", "function"],
                [[t["ir"], t["pct"] or "", t["ir"] / n, t["fn"][:100]]
                 for t in cg["top_inclusive_below_loop"]],
                "the same below the event loop (main, libevent and the "
                "dynamic loader left out)")
        B.table(["Ir incl", "%", "Ir/row", "function"],
                [[t["ir"], t["pct"] or "", t["ir"] / n,
                  t["fn"].split(" [")[0].split("/src/")[-1]]
                 for t in cg["own_inclusive"]],
                "mmsyncd's own functions, inclusive (Ir/row over the whole "
                "run, so start-up is spread in)")
        B.table(["Ir self", "%", "Ir/row", "function"],
                [[t["ir"], t["pct"] or "", t["ir"] / n, t["fn"][:100]]
                 for t in cg["top_self"]],
                "top 10 by self cost (bench/results/callgrind-self.txt; "
                "Debian's libcurl has no symbols: ???:0x... in it)")
    if "syscalls_per_row" in res:
        sc = sorted(res["syscalls_per_row"].items(), key=lambda kv: -kv[1])
        total = sum(v for _, v in sc)
        B.table(["syscall", "per row"], [[k, v] for k, v in sc[:16]]
                + [["(all)", total]],
                "syscalls per row (strace -c -f, 1,000 rows; "
                "bench/results/strace-c.txt)")
        res["syscalls_total_per_row"] = total

    print()
    for k in ("curl", "apprise_cli", "apprise_api"):
        if k in res:
            r = B.ratio(res[k]["cpu_us_per_msg"], dk["cpu_us_per_row"])
            print("goal: >=100x less CPU per row than %-12s %s (%.0fx)"
                  % (k + ":", "MET" if r >= 100 else "MISSED", r))
    for p in res["problems"]:
        print("PROBLEM: " + p)
    B.result_line("cost", res)


if __name__ == "__main__":
    main()
