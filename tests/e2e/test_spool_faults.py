"""Spool faults: the disk refusing writes or full, batch files deleted or
cut short while they are read, things that are not batch files dropped
into incoming/ under batch names, ten thousand batches at once, a file of
a gigabyte.  Nothing is lost, nothing blocks, nothing crashes.

The full-disk test mounts a small tmpfs (we run as root); where mount is
not allowed it is skipped (TAP "# SKIP").  MMS_BIG_FILE_MB and
MMS_SMALL_BATCHES change the sizes (bench/ may scale them)."""

import errno
import json
import os
import random
import shutil
import subprocess
import time

import mmtest
from mmtest import (check, read_jsonl, test, token_target, wait_until,
                    webhook_target)

BIG_MB = int(os.environ.get("MMS_BIG_FILE_MB", "1024"))
SMALL_BATCHES = int(os.environ.get("MMS_SMALL_BATCHES", "10000"))


class Skip(Exception):
    """Raised by a test that cannot run here; reported as TAP SKIP."""


def rows(n, start=1, prefix="row"):
    return [{"name": "%s-%05d" % (prefix, i)}
            for i in range(start, start + n)]


def names(rs):
    return [r["name"] for r in rs]


def messages(fake):
    return [p["message"] for p in fake.posts()]


def status_quickly(d, limit=1.0):
    t0 = time.monotonic()
    st = d.status()
    took = time.monotonic() - t0
    check(took < limit, "status took %.2f s" % took)
    return st


def active_batches(d, target):
    a = os.path.join(d.spool, target, "active")
    try:
        return sorted(os.path.join(a, n) for n in os.listdir(a)
                      if n.endswith(".batch"))
    except FileNotFoundError:
        return []


def failed_rows(d, target):
    """(rows kept in failed/*.ndjson files, lines of failed/*.errors)."""
    kept, errs = [], []
    for name in d.failed(target):
        path = os.path.join(d.failed_dir(target), name)
        if name.endswith(".errors"):
            errs += read_jsonl(path)
        elif name.endswith(".ndjson") and os.path.isfile(path) and \
                not os.path.islink(path):
            with open(path, errors="replace") as f:
                kept += [line.rstrip("\n") for line in f]
    return kept, errs



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


def vm_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# ------------------------------------------------------ the disk says no

@test
def failing_writes_lose_nothing_and_send_nothing_twice(w):
    """Every 2nd durable write fails: rows once, set-aside rows once
    (MMSYNCD_FAIL_WRITES=2, ENOSPC.)  Webhook rows (no dedupe) are
    delivered exactly once, bad rows and a bad .json set aside once."""
    fake = w.fake("--fault", "7:400", "--fault", "19:400")
    d = w.daemon({"h": webhook_target(fake)},
                 env={"MMSYNCD_FAIL_WRITES": "2"}, log_level="info")
    good = rows(30)
    text = ""
    for i, r in enumerate(good):
        text += json.dumps(r) + "\n"
        if i % 10 == 4:
            text += "not json %d\n" % i
    d.drop("h", "a.ndjson", text=text)
    d.drop("h", "b.json", text='[{"name": "x"}, ')
    d.drop("h", "c.ndjson", rows(5, 31))
    want = names(good) + names(rows(5, 31))
    wait_until(lambda: d.spool_empty("h") and "c.ndjson" not in
               os.listdir(d.incoming("h")) and len(fake.posts()) >=
               len(want) - 2, timeout=90, what="all handled")
    wait_until(lambda: not active_batches(d, "h"), what="active/ empty")
    msgs = messages(fake)
    refused = [r.get("message") for r in fake.requests()
               if r.get("fault") == "400"]
    check(len(msgs) == len(set(msgs)), "duplicates: %d posts, %d rows"
          % (len(msgs), len(set(msgs))))
    check(msgs == [m for m in want if m not in refused], "order/content")
    kept, errs = failed_rows(d, "h")
    check(sorted(d.failed("h")) == ["a.errors", "a.ndjson", "b.errors",
                                    "b.json"], repr(d.failed("h")))
    check(len([k for k in kept if k.startswith("not json")]) == 3 and
          len(kept) == 3 + len(refused), "failed/ rows %r" % kept)
    check("No space left on device" in d.log(), "logged")
    st = status_quickly(d)["targets"]["h"]
    check(st["sent"] == len(msgs), repr(st))
    problems = []
    if len(errs) != len(kept) + 1:
        problems.append("want one error line per row set aside and one for "
                        "b.json, got %r" % [e["reason"] for e in errs])
    # 3 bad lines, the refused rows, and b.json counted once.
    if st["failed"] != 3 + len(refused) + 1:
        problems.append("failed counter %d, want %d" % (
            st["failed"], 3 + len(refused) + 1))
    check(not problems, "; ".join(problems))


def try_mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755"
                            % size, "tmpfs", path], capture_output=True,
                           timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    if r.returncode != 0:
        return (r.stderr.decode(errors="replace").strip() or
                "mount exited %d" % r.returncode)
    return None


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True, timeout=20)


def fill(path):
    """Write PATH until the file system is full; the bytes written."""
    n = 0
    block = b"\0" * 4096
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return n


@test
def disk_full_on_a_small_tmpfs(w):
    """A full disk (1 MB tmpfs) mid-batch: stall, then every row once
    Sending stops, status says why; once space is back every row is
    delivered exactly once and bad rows are set aside once."""
    fake = w.fake("--latency", "10")
    d = w.daemon({"h": webhook_target(fake)}, start=False,
                 log_level="info")
    why = try_mount_tmpfs(d.spool, "1m")
    if why is not None:
        raise Skip("cannot mount a tmpfs here: %s" % why)
    filler = os.path.join(d.spool, "filler")
    try:
        d.start()
        good = rows(300)
        text = ""
        for i, r in enumerate(good):
            text += json.dumps(r) + "\n"
            if i % 50 == 25:
                text += "not json %d\n" % i
        d.drop("h", "full.ndjson", text=text)
        fake.wait_posts(40)
        fill(filler)
        # What was in flight may still land; then nothing moves.
        time.sleep(0.5)
        n0 = len(fake.posts())
        time.sleep(2)
        n1 = len(fake.posts())
        check(n1 <= n0 + 1, "posts went on on a full disk: %d -> %d"
              % (n0, n1))
        st = status_quickly(d)["targets"]["h"]
        check("No space left on device" in (st["last_error"] or ""),
              repr(st))
        check(st["state"] == "backoff", repr(st))
        check(n1 < len(good), "the disk filled too late to matter")
        os.unlink(filler)
        fake.wait_posts(len(good), timeout=60)
        wait_until(lambda: d.spool_empty("h") and
                   not active_batches(d, "h"), what="spool empty")
        msgs = messages(fake)
        check(msgs == names(good), "exactly once, in order: %d posts, "
              "%d rows" % (len(msgs), len(set(msgs))))
        kept, errs = failed_rows(d, "h")
        check(kept == ["not json %d" % i for i in range(25, 300, 50)],
              "failed/ %r" % kept)
        check(len(errs) == len(kept), "errors %r" % errs)
        print("# full disk at post %d: stalled, then all %d rows"
              % (n0, len(good)))
    finally:
        if d.proc is not None:
            d.stop()
        umount(d.spool)


# ------------------------------------------- batch files changed under us

def drop_and_catch(d, fake, target, name, rs, after):
    """Drop a batch and wait until AFTER rows of it are posted; the path
    of the batch in active/."""
    d.drop(target, name, rs)
    fake.wait_posts(after)
    act = active_batches(d, target)
    check(len(act) == 1, "one active batch: %r" % act)
    return act[0]


@test
def batch_deleted_while_being_read(w):
    """A batch deleted while read is read to its end; the next follows
    (The daemon holds it open.)"""
    fake = w.fake("--latency", "5")
    d = w.daemon({"t": token_target(fake)})
    rs = rows(300)
    path = drop_and_catch(d, fake, "t", "del.ndjson", rs, 20)
    os.unlink(path)
    d.drop("t", "next.ndjson", rows(5, 1001))
    want = names(rs) + names(rows(5, 1001))
    fake.wait_posts(len(want))
    wait_until(lambda: d.spool_empty("t"), what="spool empty")
    check(messages(fake) == want, "every row once, in order")
    check(d.failed("t") == [], "nothing set aside: %r" % d.failed("t"))


@test
def batch_truncated_while_being_read(w):
    """A batch truncated while read: rows before the cut, then the next
    Rows up to the cut go out in order, what follows is gone or set
    aside with a reason, nothing hangs."""
    fake = w.fake("--latency", "5")
    d = w.daemon({"t": token_target(fake)})
    # Far larger than what the reader reads ahead (64 KiB).
    rs = [dict(r, pad="p" * 1000) for r in rows(400)]
    text = "".join(json.dumps(r) + "\n" for r in rs)
    path = drop_and_catch(d, fake, "t", "cut.ndjson", rs, 20)
    cut = len(text) // 2 + 7            # in the middle of a line
    os.truncate(path, cut)
    rs2 = [dict(r, pad="p" * 1000) for r in rows(500, 5001)]
    d.drop("t", "cut2.ndjson", rs2)
    d.drop("t", "next.ndjson", rows(5, 9001))
    # Any post of the second batch will do: polling may miss the first.
    wait_until(lambda: any(p["message"].startswith("row-050")
                           for p in fake.posts()), timeout=60,
               what="second batch started")
    path2 = active_batches(d, "t")[0]
    os.truncate(path2, 0)               # to nothing at all
    wait_until(lambda: d.spool_empty("t") and not active_batches(d, "t"),
               timeout=60, what="all handled")
    msgs = messages(fake)
    tail = names(rows(5, 9001))
    check(msgs[-5:] == tail, "the next batch followed: %r" % msgs[-8:])
    first = [m for m in msgs if m < "row-05000"]
    check(first == names(rs)[:len(first)], "first batch: an in-order "
          "prefix")
    check(len(first) <= 200, "nothing past the cut: %d" % len(first))
    second = [m for m in msgs if "row-05000" < m < "row-09000"]
    check(second == names(rs2)[:len(second)], "second batch: a prefix")
    check(len(msgs) == len(set(msgs)), "no duplicates")
    kept, errs = failed_rows(d, "t")
    check(all(e["reason"] for e in errs), "reasons %r" % errs)
    print("# cut at byte %d: %d of %d rows went out; cut to 0: %d of %d; "
          "failed/ %r" % (cut, len(first), len(rs), len(second), len(rs2),
                          d.failed("t")))


# ------------------------------------------- not batch files, batch names

def make_oddities(w, where):
    """Things that are not regular files, under batch names, in WHERE."""
    os.makedirs(where, exist_ok=True)
    secret = w.file("secret.txt")
    with open(secret, "w") as f:
        f.write('{"name": "SECRET"}\n')
    sub = w.file("somedir")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "inside.ndjson"), "w") as f:
        f.write('{"name": "INSIDE"}\n')
    os.symlink(secret, os.path.join(where, "a-link.ndjson"))
    os.symlink("/nonexistent/x", os.path.join(where, "b-dangling.ndjson"))
    os.mkfifo(os.path.join(where, "c-fifo.ndjson"))
    os.makedirs(os.path.join(where, "d-dir.ndjson"))
    with open(os.path.join(where, "d-dir.ndjson", "x.ndjson"), "w") as f:
        f.write('{"name": "INSIDE"}\n')
    os.symlink(sub, os.path.join(where, "e-dirlink.jsonl"))
    os.mkfifo(os.path.join(where, "f-fifo.json"))
    return ["a-link.ndjson", "b-dangling.ndjson", "c-fifo.ndjson",
            "d-dir.ndjson", "e-dirlink.jsonl", "f-fifo.json"]


def check_set_aside(d, target, odd):
    failed = d.failed(target)
    for name in odd:
        stem = name.rsplit(".", 1)[0]
        check(name in failed and stem + ".errors" in failed,
              "%s set aside: %r" % (name, failed))
        errs = read_jsonl(os.path.join(d.failed_dir(target),
                                       stem + ".errors"))
        check(errs and errs[0]["reason"], "%s: reason %r" % (name, errs))
    p = os.path.join(d.failed_dir(target), "a-link.ndjson")
    check(os.path.islink(p), "the symlink itself was moved, not followed")


@test
def symlink_fifo_directory_never_followed_never_blocking(w):
    """Symlinks, FIFOs, a directory in incoming/: set aside, not followed
    Under batch names (links to a file, dangling, to a directory),
    renamed in or there at start: set aside with a reason, never read,
    never blocking the batches behind them."""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)})
    prep = w.file("prep")
    odd = make_oddities(w, prep)
    for name in sorted(odd):
        os.rename(os.path.join(prep, name),
                  os.path.join(d.incoming("t"), name))
    d.drop("t", "z-good.ndjson", rows(3))
    fake.wait_posts(3)
    wait_until(lambda: d.spool_empty("t"), what="spool empty")
    wait_until(lambda: all(n in d.failed("t") for n in odd),
               what="all set aside")
    check(messages(fake) == names(rows(3)), repr(messages(fake)))
    check_set_aside(d, "t", odd)
    check(d.proc.poll() is None, "still running")
    status_quickly(d)
    log = d.log()
    check("symbolic link" in log and "directory" in log, "logged")

    # Made in place while stopped: found by the scan at start.
    d.stop()
    inc = d.incoming("t")
    shutil.rmtree(d.failed_dir("t"))
    os.makedirs(d.failed_dir("t"))
    odd2 = make_oddities(w, w.file("prep2"))
    for name in odd2:
        os.rename(os.path.join(w.file("prep2"), name),
                  os.path.join(inc, name))
    d.drop("t", "z-more.ndjson", rows(2, 10))
    d.start()
    fake.wait_posts(5)
    wait_until(lambda: all(n in d.failed("t") for n in odd2),
               what="set aside after a restart")
    check_set_aside(d, "t", odd2)
    # A FIFO made in place while running (no rename) must not stall
    # anything either.
    os.mkfifo(os.path.join(inc, "g-fifo.ndjson"))
    d.drop("t", "zz-last.ndjson", rows(1, 20))
    fake.wait_posts(6)
    check(messages(fake)[-1] == "row-00020", "delivered after the FIFO")
    check(not any("SECRET" in m or "INSIDE" in m for m in messages(fake)),
          "nothing read through a link or a directory")


@test
def odd_files_set_aside_even_when_a_write_fails(w):
    """Symlink, FIFO, directory whose setting aside meets a failed write
    (Every 2nd write fails, injected.)  Still set aside in the end, and
    the batches behind them delivered."""
    fake = w.fake()
    prep = w.file("prep")
    odd = make_oddities(w, prep)[:4]
    d = w.daemon({"t": token_target(fake)},
                 env={"MMSYNCD_FAIL_WRITES": "2"}, log_level="info")
    for name in odd:
        os.rename(os.path.join(prep, name),
                  os.path.join(d.incoming("t"), name))
    d.drop("t", "z-good.ndjson", rows(3))
    try:
        fake.wait_posts(3, timeout=20)
        wait_until(lambda: all(n in d.failed("t") for n in odd),
                   timeout=20, what="all set aside")
    except Exception:
        st = d.status()["targets"]["t"]
        raise AssertionError("stuck: %s; failed/ %r; active/ %r; log: %s"
                             % (json.dumps(st), d.failed("t"), sorted(
                                 os.listdir(os.path.join(d.spool, "t",
                                                         "active"))),
                                "\n".join(l for l in d.log().splitlines()
                                          if "debug" not in l)[-1500:]))
    check_set_aside(d, "t", odd)
    check(messages(fake) == names(rows(3)), repr(messages(fake)))


# ------------------------------------------------------------- volume

@test
def ten_thousand_small_batches(w):
    """10,000 one-row batches at once: all delivered, in name order
    Dropped in random order while the target is paused."""
    n = SMALL_BATCHES
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)}, log_level="warning",
                 start=False)
    # Each batch costs a handful of fsyncs (some 30 ms on a VM's disk):
    # on a tmpfs this measures the daemon, not the disk.  Without one,
    # fewer batches.
    why = try_mount_tmpfs(d.spool, "512m")
    where = "tmpfs"
    if why is not None:
        n = min(n, 1000)
        where = "disk (no tmpfs: %s)" % why
    try:
        d.start()
        _many_batches(d, fake, n, where)
    finally:
        if why is None:
            if d.proc is not None:
                d.stop()
            umount(d.spool)


def _many_batches(d, fake, n, where):
    check(json.loads(d.command("pause t"))["ok"], "paused")
    order = list(range(n))
    random.Random(5).shuffle(order)
    inc = d.incoming("t")
    t0 = time.monotonic()
    for i in order:
        name = "b-%05d.ndjson" % i
        tmp = os.path.join(inc, "." + name)
        with open(tmp, "w") as f:
            f.write('{"name": "b-%05d"}\n' % i)
        os.rename(tmp, os.path.join(inc, name))
    dropped = time.monotonic() - t0
    wait_until(lambda: d.status()["targets"]["t"]["queued_batches"] == n,
               what="%d batches queued (have %r)" % (
                   n, d.status()["targets"]["t"]["queued_batches"]))
    status_quickly(d)
    t1 = time.monotonic()
    check(json.loads(d.command("resume t"))["ok"], "resumed")
    deadline = time.monotonic() + 240
    while len(fake.posts()) < n:
        check(time.monotonic() < deadline, "only %d of %d after 240 s"
              % (len(fake.posts()), n))
        status_quickly(d, 2.0)
        time.sleep(0.5)
    took = time.monotonic() - t1
    wait_until(lambda: d.spool_empty("t"), what="spool empty")
    msgs = messages(fake)
    check(msgs == ["b-%05d" % i for i in range(n)], "name order")
    st = d.status()["targets"]["t"]
    check(st["sent"] == n and st["queued_batches"] == 0, repr(st))
    hwm = vm_kb(d.proc.pid, "VmHWM")
    limit = memory_limit_kb()
    check(limit is None or hwm < limit, "peak memory %d kB" % hwm)
    print("# %d batches on %s: dropped in %.1f s, delivered in %.1f s "
          "(%.0f/s), peak memory %d kB" % (n, where, dropped, took,
                                           n / took, hwm))


@test
def one_gigabyte_file(w):
    """A 1 GB batch: taken at once, streamed, peak memory under 64 MB
    Rows go out in order at a steady rate; the test stops after 1000."""
    st = os.statvfs(w.path)
    need = BIG_MB * 1024 * 1024 * 2
    if st.f_bavail * st.f_frsize < need:
        raise Skip("needs %d MB free" % (need >> 20))
    fake = w.fake()
    d = w.daemon({"t": token_target(fake, template="{{name}} {{n}}")},
                 log_level="info")
    # One 1 MiB chunk of rows, written over and over.
    chunk = []
    size = i = 0
    while size < 1024 * 1024:
        line = json.dumps({"name": "big", "n": i, "pad": "p" * 80}) + "\n"
        chunk.append(line)
        size += len(line)
        i += 1
    per_chunk = len(chunk)
    data = "".join(chunk).encode()
    inc = d.incoming("t")
    tmp = os.path.join(inc, ".big.ndjson")
    t0 = time.monotonic()
    with open(tmp, "wb") as f:
        for _ in range(BIG_MB):
            f.write(data)
    wrote = time.monotonic() - t0
    try:
        os.rename(tmp, os.path.join(inc, "big.ndjson"))
        t1 = time.monotonic()
        fake.wait_posts(1, timeout=10)
        first = time.monotonic() - t1
        target = 1000
        t2 = time.monotonic()
        while len(fake.posts()) < target:
            check(time.monotonic() - t2 < 90, "only %d rows after 90 s"
                  % len(fake.posts()))
            status_quickly(d)
            time.sleep(0.2)
        rate = len(fake.posts()) / (time.monotonic() - t2)
        hwm = vm_kb(d.proc.pid, "VmHWM")
        msgs = messages(fake)
        want = ["big %d" % (k % per_chunk) for k in range(len(msgs))]
        check(msgs == want, "in order")
        limit = memory_limit_kb()
        check(limit is None or hwm < limit, "peak memory %d kB" % hwm)
        check(first < 5, "first row after %.1f s" % first)
        st = d.status()["targets"]["t"]
        check(st["queued_rows"] is None and st["state"] in (
            "sending", "waiting"), repr(st))
        check(d.stop() == 0, "clean stop")
        print("# %d MB file written in %.1f s; first row after %.2f s; "
              "%.0f rows/s; peak memory %d kB"
              % (BIG_MB, wrote, first, rate, hwm))
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
        shutil.rmtree(d.spool, ignore_errors=True)


def run():
    """mmtest.run_tests, except that a test raising Skip prints a TAP
    "ok N - name # SKIP reason" line."""
    import sys
    import traceback
    from mmtest import Workdir, _tests
    only = os.environ.get("MMS_ONLY")
    failed = n = 0
    for fn in _tests:
        if only and only not in fn.__name__:
            continue
        n += 1
        name = fn.__name__.replace("_", " ")
        if fn.__doc__:
            name = fn.__doc__.strip().splitlines()[0]
        t0 = time.monotonic()
        try:
            with Workdir() as w:
                fn(w)
            print("ok %d - %s (%.1f s)" % (n, name, time.monotonic() - t0))
        except Skip as e:
            print("ok %d - %s # SKIP %s" % (n, name, e))
        except Exception:  # noqa: BLE001 - report every failure as TAP
            failed += 1
            print("not ok %d - %s" % (n, name))
            for line in traceback.format_exc().splitlines():
                print("#   " + line)
        sys.stdout.flush()
    print("1..%d" % n)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    run()
