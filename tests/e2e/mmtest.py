"""End-to-end test harness: the real daemon against the fake Mattermost,
in a temporary tree, on loopback.  Python 3 standard library only.

A test file defines functions decorated with @test and ends with
run_tests().  Each test prints one TAP line.  Waiting is always on a
condition with a deadline (wait_until), never a bare sleep.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BUILD_MMSYNCD = os.environ.get("MMSYNCD", "src/mmsyncd")
BUILD_MMSYNCCTL = os.environ.get("MMSYNCCTL", "src/mmsyncctl")
FAKE_MATTERMOST = os.environ.get("FAKE_MATTERMOST", "tests/fake-mattermost")

TOKEN = "test-token"
CHANNEL = "4xp9fdt77pncbef59f4k1qe83o"
HOOK = "hook1234567890abcdefghijkl"

# Shared machines are noisy: every deadline is generous.
DEFAULT_TIMEOUT = float(os.environ.get("MMS_TEST_TIMEOUT", "30"))

# A command put before the daemon (MMS_DAEMON_WRAPPER) or the fake server
# (MMS_FAKE_WRAPPER), split on spaces: "valgrind --error-exitcode=99 ...".
DAEMON_WRAPPER = os.environ.get("MMS_DAEMON_WRAPPER", "").split()
FAKE_WRAPPER = os.environ.get("MMS_FAKE_WRAPPER", "").split()

_tests = []


def test(fn):
    _tests.append(fn)
    return fn


class TestFailure(AssertionError):
    pass


def check(cond, what="check failed"):
    if not cond:
        raise TestFailure(what)


def wait_until(pred, timeout=DEFAULT_TIMEOUT, what="condition", every=0.01):
    """Poll PRED until it returns a true value; fail after TIMEOUT s."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %.0f s waiting for %s"
                              % (timeout, what))
        time.sleep(every)


def run_tests():
    only = os.environ.get("MMS_ONLY")
    failed = 0
    n = 0
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
        except Exception:  # noqa: BLE001 - report every failure as TAP
            failed += 1
            print("not ok %d - %s" % (n, name))
            for line in traceback.format_exc().splitlines():
                print("#   " + line)
        sys.stdout.flush()
    print("1..%d" % n)
    sys.exit(1 if failed else 0)


def read_jsonl(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass    # a line being written right now
    except FileNotFoundError:
        pass
    return out


class Workdir:
    """A temporary tree that holds one test's servers, daemons and spool.
    Everything started in it is stopped when the test ends."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="mms-e2e-")
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        problems = []
        for p in reversed(self.procs):
            problems += p.cleanup()
        if exc[0] is None and problems:
            raise TestFailure("; ".join(problems))
        if exc[0] is None or not os.environ.get("MMS_KEEP"):
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            print("# kept %s" % self.path)
        return False

    def file(self, name):
        return os.path.join(self.path, name)

    def fake(self, *args, **kw):
        s = FakeServer(self, list(args), **kw)
        self.procs.append(s)
        return s

    def daemon(self, targets, **kw):
        d = Daemon(self, targets, **kw)
        self.procs.append(d)
        return d


def sanitizer_problems(log_path):
    try:
        with open(log_path, errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    bad = []
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:"):
        if marker in text:
            bad.append("%s reported %r (see %s)" % (
                os.path.basename(log_path), marker, log_path))
    return bad


class FakeServer:
    def __init__(self, w, args, tls=None, name="fake"):
        self.w = w
        self.args = args
        self.tls = tls
        self.name = name
        self.posts_path = w.file(name + "-posts.jsonl")
        self.requests_path = w.file(name + "-requests.jsonl")
        self.log_path = w.file(name + ".log")
        self.proc = None
        self.port = 0
        self.start()

    def start(self, port=None):
        port_file = self.w.file(self.name + ".port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        cmd = FAKE_WRAPPER + [
            FAKE_MATTERMOST, "--listen", "127.0.0.1:%d" % (port or 0),
            "--port-file", port_file, "--posts", self.posts_path,
            "--requests", self.requests_path] + self.args
        if self.tls:
            cmd += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.logf,
                                     stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise TestFailure("fake server exited: %s"
                                  % open(self.log_path).read()[-2000:])
            try:
                with open(port_file) as f:
                    return int(f.read().strip() or "0")
            except (FileNotFoundError, ValueError):
                return 0
        self.port = wait_until(ready, what="fake server port")

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http",
                                      self.port)

    @property
    def hook_url(self):
        return "%s/hooks/%s" % (self.url, HOOK)

    def posts(self):
        return read_jsonl(self.posts_path)

    def requests(self):
        return [r for r in read_jsonl(self.requests_path) if "method" in r]

    def wait_posts(self, n, timeout=DEFAULT_TIMEOUT):
        wait_until(lambda: len(self.posts()) >= n, timeout,
                   "%d posts at the fake server (have %d)"
                   % (n, len(self.posts())))
        return self.posts()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()

    def cleanup(self):
        self.stop()
        return sanitizer_problems(self.log_path)


def yaml_str(s):
    return json.dumps(s)    # JSON strings are valid YAML scalars


class Daemon:
    """mmsyncd with a generated config.  TARGETS maps a name to a dict of
    target keys (values written as YAML scalars)."""

    def __init__(self, w, targets, extra="", start=True, log_level="debug",
                 env=None):
        self.w = w
        self.spool = w.file("spool")
        self.socket = w.file("mmsyncd.sock")
        self.config_path = w.file("mmsyncd.yaml")
        self.log_path = w.file("mmsyncd.log")
        self.notify_path = w.file("notify.sock")
        self.env = env or {}
        self.proc = None
        self.notes = []
        self.notes_lock = threading.Lock()
        self.write_config(targets, extra, log_level)
        if start:
            self.start()

    def write_config(self, targets, extra="", log_level="debug"):
        lines = ["spool_dir: %s" % yaml_str(self.spool),
                 "status_socket: %s" % yaml_str(self.socket),
                 "log_level: %s" % log_level]
        if extra:
            lines.append(extra.rstrip("\n"))
        lines.append("targets:")
        for name, keys in targets.items():
            lines.append("  %s:" % name)
            for k, v in keys.items():
                if isinstance(v, (dict, list)):
                    v = json.dumps(v)
                elif not isinstance(v, str):
                    v = str(v)
                else:
                    v = yaml_str(v)
                lines.append("    %s: %s" % (k, v))
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, wait_ready=True):
        if os.path.exists(self.notify_path):
            os.unlink(self.notify_path)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notes = []
        self.notes_lock = threading.Lock()
        threading.Thread(target=self._read_notes, args=(self.notify,),
                         daemon=True).start()
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env["NOTIFY_SOCKET"] = self.notify_path
        env.update(self.env)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(DAEMON_WRAPPER +
                                     [BUILD_MMSYNCD, "-c", self.config_path],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=env)
        if wait_ready:
            self.wait_note("READY=1")

    def _read_notes(self, sock):
        # Drained all the time: an unread datagram queue fills (10 deep on
        # Linux) and would block the daemon's sd_notify.
        while True:
            try:
                data = sock.recv(65536).decode()
            except OSError:
                return
            if not data:
                return
            with self.notes_lock:
                self.notes.append(data)

    def wait_note(self, what, timeout=DEFAULT_TIMEOUT, after=0):
        """Wait for a notification line WHAT among notes[after:]; its
        index."""
        def seen():
            with self.notes_lock:
                for i, n in enumerate(self.notes[after:], after):
                    if what in n.split("\n"):
                        return i + 1
            if self.proc.poll() is not None:
                raise TestFailure("mmsyncd exited (%s) before %s: %s" % (
                    self.proc.returncode, what, self.log_tail()))
            return 0
        return wait_until(seen, timeout, "mmsyncd to say " + what) - 1

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=3000):
        return self.log()[-n:]

    def incoming(self, target):
        return os.path.join(self.spool, target, "incoming")

    def failed_dir(self, target):
        return os.path.join(self.spool, target, "failed")

    def drop(self, target, name, rows=None, text=None):
        """Put a batch in place the way producers must: write under a
        dot name, then rename into incoming/."""
        inc = self.incoming(target)
        os.makedirs(inc, exist_ok=True)
        if text is None:
            text = "".join(json.dumps(r) + "\n" for r in rows)
        tmp = os.path.join(inc, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        os.rename(tmp, os.path.join(inc, name))

    def failed(self, target):
        d = self.failed_dir(target)
        try:
            return sorted(os.listdir(d))
        except FileNotFoundError:
            return []

    def spool_empty(self, target):
        for sub in ("incoming", "active"):
            d = os.path.join(self.spool, target, sub)
            if os.path.isdir(d) and [n for n in os.listdir(d)
                                     if not n.startswith(".")]:
                return False
        return True

    def command(self, line, timeout=10):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.socket)
        s.sendall(line.encode() + b"\n")
        chunks = []
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
        s.close()
        return b"".join(chunks).decode()

    def status(self):
        return json.loads(self.command("status"))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM and wait; the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("mmsyncd did not stop within %d s" % timeout)
        self._close()
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self._close()

    def _close(self):
        try:
            self.logf.close()
            self.notify.shutdown(socket.SHUT_RDWR)
            self.notify.close()
        except Exception:  # noqa: BLE001
            pass

    def cleanup(self):
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            rc = self.stop()
            if rc != 0:
                problems.append("mmsyncd exited %s at the end: %s"
                                % (rc, self.log_tail(1500)))
        return problems + sanitizer_problems(self.log_path)


def token_target(fake, template="{{name}}", **kw):
    t = {"auth": "token", "server_url": fake.url, "token": TOKEN,
         "channel": CHANNEL, "template": template, "interval": "0",
         "timeout": "3s", "connect_timeout": "2s", "backoff_min": "100ms",
         "backoff_max": "500ms", "blocked_retry": "30s"}
    t.update(kw)
    return t


def webhook_target(fake, template="{{name}}", **kw):
    t = {"auth": "webhook", "webhook_url": fake.hook_url,
         "template": template, "interval": "0", "timeout": "3s",
         "connect_timeout": "2s", "backoff_min": "100ms",
         "backoff_max": "500ms", "blocked_retry": "30s"}
    t.update(kw)
    return t


def errors_of(d, target, name):
    return read_jsonl(os.path.join(d.failed_dir(target), name))
