"""Shared pieces of the mmsyncd benchmarks.  Python 3 standard library only.

Everything runs on loopback (127.0.0.1) against tests/fake-mattermost, in a
temporary tree that is removed at the end.  Every loop is bounded by a count
and a deadline.  The ideas are those of tests/e2e/mmtest.py (fake server with
--port-file/--posts/--requests, a generated config, a NOTIFY_SOCKET that is
read all the time), kept separate so that edits to the tests never break a
benchmark run half-way.

Binaries: $MMSYNCD and $FAKE_MATTERMOST, else the first of
_build/bench/, build/, . (relative to the source tree) that has them.
"""

import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

TOKEN = "test-token"
CHANNEL = "4xp9fdt77pncbef59f4k1qe83o"
HOOK = "hook1234567890abcdefghijkl"

# The rows every bench sends, and the template that renders them.
TEMPLATE = "New order: {{name}} <{{email}}> bought {{qty}} x {{item}} ({{total}} EUR)"


def row(i):
    return {"id": i, "name": "Customer %d" % i,
            "email": "c%d@example.com" % i, "qty": 1 + i % 7,
            "item": "SKU-%05d" % (i % 100000), "total": "%.2f" % (i % 997 * 1.5)}


def render(r):
    return ("New order: %s <%s> bought %s x %s (%s EUR)"
            % (r["name"], r["email"], r["qty"], r["item"], r["total"]))


def ndjson_rows(first, n):
    """N rows as ndjson text, built quickly (no json.dumps per row)."""
    parts = []
    for i in range(first, first + n):
        parts.append('{"id": %d, "name": "Customer %d", "email": '
                     '"c%d@example.com", "qty": %d, "item": "SKU-%05d", '
                     '"total": "%.2f"}\n'
                     % (i, i, i, 1 + i % 7, i % 100000, i % 997 * 1.5))
    return "".join(parts)


# ------------------------------------------------------------ binaries

def _find(env, rel):
    if os.environ.get(env):
        return os.path.abspath(os.environ[env])
    for d in ("_build/bench", "build", "."):
        p = os.path.join(SRC, d, rel)
        if os.access(p, os.X_OK):
            return p
    sys.exit("cannot find %s: build it (see bench/README) or set $%s"
             % (rel, env))


def mmsyncd_bin():
    return _find("MMSYNCD", "src/mmsyncd")


def fake_bin():
    return _find("FAKE_MATTERMOST", "tests/fake-mattermost")


# ------------------------------------------------------------ reporting

def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.1f GiB" % (int(f.readline().split()[1]) / 1048576)
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu": model,
            "kernel": platform.release(), "memory": mem}


def fs_type(path):
    """Filesystem type of PATH from /proc/mounts (longest mount prefix)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                p = line.split()
                if len(p) >= 3 and (path == p[1] or path.startswith(
                        p[1].rstrip("/") + "/")) and len(p[1]) > len(best):
                    best, kind = p[1], p[2]
    except OSError:
        pass
    return kind


def fsync_probe(n=40):
    """Median ms of what mmsyncd does per row on this disk: write a small
    file, fsync, rename over, fsync the directory (in the temp dir)."""
    d = tempfile.mkdtemp(prefix="mms-probe-")
    p = os.path.join(d, "x.state")
    times = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            fd = os.open(p + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o600)
            os.write(fd, b"x" * 160)
            os.fsync(fd)
            os.close(fd)
            os.rename(p + ".tmp", p)
            dfd = os.open(d, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
            times.append((time.perf_counter() - t) * 1000.0)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return statistics.median(times), max(times)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def source_state():
    """The commit the tree is at and how many files differ from it
    (read-only git commands)."""
    try:
        head = subprocess.run(["git", "-C", SRC, "rev-parse", "--short",
                               "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", SRC, "status", "--porcelain",
                                "--untracked-files=no", "--", "src"],
                               capture_output=True, text=True,
                               timeout=10).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    if not head:
        return "?"
    return head + (" + %d modified file(s) in src/" % len(dirty)
                   if dirty else "")


def header(title, quick=False):
    m = machine()
    print("=" * 78)
    print("mmsyncd benchmark: %s%s" % (title, " (--quick)" if quick else ""))
    print("machine: %d cpu, %s, kernel %s, %s RAM"
          % (m["nproc"], m["cpu"], m["kernel"], m["memory"]))
    print("date:    %s" % datetime.datetime.now(datetime.timezone.utc)
          .strftime("%Y-%m-%d %H:%M:%S UTC"))
    print("command: %s" % " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(sys.argv[0], SRC)]
                                   + sys.argv[1:]))
    print("source:  %s; daemon built %s" % (
        source_state(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(
            os.path.getmtime(mmsyncd_bin())))))
    print("daemon:  %s" % mmsyncd_bin())
    print("fake:    %s" % fake_bin())
    med, mx = fsync_probe()
    print("tmp:     %s (%s); atomic small-file write with 2 fsyncs: "
          "median %.2f ms, max %.2f ms" % (tempfile.gettempdir(),
                                           fs_type(tempfile.gettempdir()),
                                           med, mx))
    print("load:    %s (1/5/15 min; the machine may be shared)" % loadavg())
    print("=" * 78)
    sys.stdout.flush()


def table(headers, rows, title=None):
    """Print an aligned text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if title:
        print()
        print(title)
    line = "  ".join("-" * w for w in widths)
    for n, r in enumerate(cells):
        out = []
        for i, c in enumerate(r):
            if i > 0 and _numeric(c):
                out.append(c.rjust(widths[i]))
            else:
                out.append(c.ljust(widths[i]))
        print("  ".join(out).rstrip())
        if n == 0:
            print(line)
    sys.stdout.flush()


def _numeric(s):
    s = s.rstrip("%x").replace(",", "")
    try:
        float(s)
        return True
    except ValueError:
        return s in ("-", "n/a")


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        a = abs(v)
        if a >= 1000:
            return "{:,.0f}".format(v)
        if a >= 100:
            return "%.1f" % v
        if a >= 10:
            return "%.2f" % v
        if a >= 0.01 or a == 0:
            return "%.3f" % v
        return "%.2g" % v
    return str(v)


def result_line(bench, data):
    """The machine-readable line: RESULT <json>."""
    data = dict(data)
    data["bench"] = bench
    data["machine"] = machine()
    data["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    print()
    print("RESULT " + json.dumps(data, sort_keys=True))
    sys.stdout.flush()


def note(msg):
    print("note: " + msg)
    sys.stdout.flush()


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, p):
    """Nearest-rank percentile (P in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def ratio(a, b):
    try:
        return a / b
    except (TypeError, ZeroDivisionError):
        return float("nan")


def gaps(ts):
    return [b - a for a, b in zip(ts, ts[1:])]


def rate(ts):
    """Achieved rate (per second) of arrival times TS (ms): (n-1)/span."""
    if len(ts) < 2 or ts[-1] <= ts[0]:
        return float("nan")
    return (len(ts) - 1) * 1000.0 / (ts[-1] - ts[0])


def wait_until(pred, timeout, what="condition", every=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.0f s waiting for %s"
                               % (timeout, what))
        time.sleep(every)


# ------------------------------------------------------------ processes

class Tail:
    """Reads the JSON lines appended to a file, incrementally."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.partial = b""
        self.items = []

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except FileNotFoundError:
            return self.items
        self.off += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.strip():
                try:
                    self.items.append(json.loads(line))
                except ValueError:
                    pass
        return self.items

    def count(self):
        return len(self.poll())


class LineCount:
    """Counts the lines appended to a file, without parsing them."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.n = 0

    def count(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                while True:
                    data = f.read(1 << 20)
                    if not data:
                        break
                    self.off += len(data)
                    self.n += data.count(b"\n")
        except FileNotFoundError:
            pass
        return self.n


def write_rows(path, first, n, chunk=100000, json_array=False):
    """Write N generated rows to PATH as ndjson (or a JSON array)."""
    with open(path, "w") as f:
        if json_array:
            f.write("[\n")
        for start in range(first, first + n, chunk):
            k = min(chunk, first + n - start)
            text = ndjson_rows(start, k)
            if json_array:
                text = text.replace("}\n", "},\n")
                if start + k == first + n:
                    text = text[:-2] + "\n"
            f.write(text)
        if json_array:
            f.write("]\n")


def cpu_ns(pid):
    """On-CPU time (user+sys) of PID in ns: /proc/PID/schedstat, else
    /proc/PID/stat ticks."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1e9 / os.sysconf("SC_CLK_TCK")


def cpu_split(pid):
    """(user s, sys s) of PID from /proc/PID/stat (tick resolution)."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    hz = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / hz, int(fields[12]) / hz


def proc_status(pid, key):
    """A kB figure of /proc/PID/status (VmHWM, VmRSS...), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_rusage(cmd, **kw):
    """Run CMD to its end; (exit status, wall s, user s, sys s), the CPU
    including every descendant it waited for (wait4)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, **kw)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return (p.returncode, time.monotonic() - t0, ru.ru_utime, ru.ru_stime)


class Work:
    """A temporary tree; everything started in it is stopped at the end."""

    def __init__(self, base=None, keep=False):
        self.path = tempfile.mkdtemp(prefix="mms-bench-", dir=base)
        # The fake server's logs live on tmpfs: on the spool's disk their
        # writes would stall behind the daemon's fsyncs (journal commits)
        # and skew the arrival times they record.
        self.instr = tempfile.mkdtemp(
            prefix="mms-bench-fake-",
            dir="/dev/shm" if os.path.isdir("/dev/shm") else base)
        self.procs = []
        self.keep = keep or bool(os.environ.get("MMS_BENCH_KEEP"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            try:
                p.close()
            except Exception as e:  # noqa: BLE001 - clean up the rest
                print("warning: cleanup: %s" % e)
        if self.keep:
            print("kept %s and %s" % (self.path, self.instr))
        else:
            shutil.rmtree(self.path, ignore_errors=True)
            shutil.rmtree(self.instr, ignore_errors=True)
        return False

    def file(self, *name):
        return os.path.join(self.path, *name)

    def fake(self, *args, name="fake"):
        s = Fake(self, list(args), name)
        self.procs.append(s)
        return s

    def daemon(self, targets, **kw):
        d = Daemon(self, targets, **kw)
        self.procs.append(d)
        return d


def _nice_instrument():
    try:
        os.nice(-10)
    except OSError:
        pass


class Fake:
    def __init__(self, w, args, name):
        self.w = w
        self.posts_path = os.path.join(w.instr, name + "-posts.jsonl")
        self.requests_path = os.path.join(w.instr, name + "-requests.jsonl")
        self.log_path = os.path.join(w.instr, name + ".log")
        port_file = os.path.join(w.instr, name + ".port")
        cmd = [fake_bin(), "--listen", "127.0.0.1:0", "--port-file",
               port_file, "--posts", self.posts_path, "--requests",
               self.requests_path] + args
        self.logf = open(self.log_path, "ab")
        # The fake's arrival times are the measurement: give it priority
        # over whatever else runs on a shared machine (when allowed).
        self.proc = subprocess.Popen(cmd, stdout=self.logf,
                                     stderr=subprocess.STDOUT,
                                     preexec_fn=_nice_instrument)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("fake server exited: %s"
                                   % open(self.log_path).read()[-2000:])
            try:
                with open(port_file) as f:
                    return int(f.read().strip() or "0")
            except (FileNotFoundError, ValueError):
                return 0
        self.port = wait_until(ready, 10, "fake server port")
        self.posts = Tail(self.posts_path)
        self.requests = Tail(self.requests_path)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def hook_url(self):
        return "%s/hooks/%s" % (self.url, HOOK)

    def wait_posts(self, n, timeout, every=0.02, alive=None):
        def have():
            if alive is not None:
                alive()
            return self.posts.count() >= n
        wait_until(have, timeout, "%d posts at the fake server" % n, every)
        return self.posts.items

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def webhook_target(fake, interval="0", **kw):
    t = {"auth": "webhook", "webhook_url": fake.hook_url,
         "template": TEMPLATE, "interval": interval, "timeout": "30s",
         "connect_timeout": "2s", "backoff_min": "100ms",
         "backoff_max": "1s", "blocked_retry": "30s"}
    t.update(kw)
    return t


def token_target(fake, interval="0", **kw):
    t = {"auth": "token", "server_url": fake.url, "token": TOKEN,
         "channel": CHANNEL, "template": TEMPLATE, "interval": interval,
         "timeout": "30s", "connect_timeout": "2s", "backoff_min": "100ms",
         "backoff_max": "1s", "blocked_retry": "30s"}
    t.update(kw)
    return t


class Daemon:
    """mmsyncd with a generated config and a NOTIFY_SOCKET read all the
    time.  TARGETS maps a name to a dict of target keys."""

    def __init__(self, w, targets, spool=None, log_level="info",
                 wrapper=None, start=True):
        self.w = w
        self.spool = spool or w.file("spool")
        self.socket = w.file("mmsyncd.sock")
        self.config_path = w.file("mmsyncd.yaml")
        self.log_path = w.file("mmsyncd.log")
        self.notify_path = w.file("notify.sock")
        self.wrapper = wrapper or []
        self.proc = None
        self.notify = None
        lines = ["spool_dir: %s" % json.dumps(self.spool),
                 "status_socket: %s" % json.dumps(self.socket),
                 "log_level: %s" % log_level, "targets:"]
        for name, keys in targets.items():
            lines.append("  %s:" % name)
            for k, v in keys.items():
                lines.append("    %s: %s" % (k, json.dumps(v) if
                                             isinstance(v, str) else v))
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        if start:
            self.start()

    def start(self, wait_ready=True, timeout=60):
        """Start; returns seconds from just before exec to READY=1 (or
        None without waiting)."""
        if os.path.exists(self.notify_path):
            os.unlink(self.notify_path)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notes = []
        self.ready_at = None
        self.cond = threading.Condition()
        threading.Thread(target=self._read_notes, args=(self.notify,),
                         daemon=True).start()
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env["NOTIFY_SOCKET"] = self.notify_path
        self.logf = open(self.log_path, "ab")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(
            self.wrapper + [mmsyncd_bin(), "-c", self.config_path],
            stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        if wait_ready:
            return self.wait_ready(timeout)
        return None

    def _read_notes(self, sock):
        # Drained all the time: a full datagram queue would block the
        # daemon's sd_notify.
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            t = time.monotonic()
            text = data.decode(errors="replace")
            with self.cond:
                self.notes.append((t, text))
                if self.ready_at is None and "READY=1" in text.split("\n"):
                    self.ready_at = t
                self.cond.notify_all()

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.ready_at is None:
                if self.proc.poll() is not None:
                    raise RuntimeError("mmsyncd exited (%s) before READY: %s"
                                       % (self.proc.returncode,
                                          self.log_tail()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no READY=1 within %d s" % timeout)
                self.cond.wait(min(left, 0.1))
            return self.ready_at - self.t_start

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError("mmsyncd exited (%s): %s"
                               % (self.proc.returncode, self.log_tail()))
        return True

    def log_tail(self, n=2000):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def incoming(self, target):
        return os.path.join(self.spool, target, "incoming")

    def drop(self, target, name, text):
        """Write under a dot name, then rename into incoming/; the wall
        time (s) just before the rename."""
        inc = self.incoming(target)
        os.makedirs(inc, exist_ok=True)
        tmp = os.path.join(inc, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        t = time.time()
        os.rename(tmp, os.path.join(inc, name))
        return t

    def command(self, line, timeout=5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.socket)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
            return b"".join(chunks).decode()
        finally:
            s.close()

    def status(self):
        """The status JSON, or None when the socket does not answer."""
        try:
            return json.loads(self.command("status"))
        except (OSError, ValueError):
            return None

    def cpu_ns(self):
        return cpu_ns(self.proc.pid)

    def hwm_kb(self):
        return proc_status(self.proc.pid, "VmHWM")

    def rss_kb(self):
        return proc_status(self.proc.pid, "VmRSS")

    def stop(self, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            self._close()
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "killed after %d s" % timeout
        self._close()
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self):
        try:
            self.logf.close()
        except Exception:  # noqa: BLE001
            pass
        if self.notify is not None:
            try:
                self.notify.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.notify.close()
            self.notify = None

    def close(self):
        self.stop()


def quick_flag(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smaller, faster run (figures are noisier)")
    return ap


def save_result_file(name, text):
    os.makedirs(RESULTS, exist_ok=True)
    p = os.path.join(RESULTS, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def rusage_children():
    return resource.getrusage(resource.RUSAGE_CHILDREN)
