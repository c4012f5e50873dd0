"""The status socket and mmsyncctl end to end: answers and their shape,
operator commands, hostile and numerous clients, the socket's life cycle,
and mmsyncctl's output and exit codes."""

import grp
import json
import os
import re
import socket
import stat
import subprocess
import time

from mmtest import (BUILD_MMSYNCCTL, BUILD_MMSYNCD, check, run_tests, test,
                    token_target, wait_until, webhook_target)

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
TARGET_KEYS = {"state", "queued_batches", "queued_rows", "sent", "failed",
               "retries", "rate_limited", "last_error"}
STATES = {"idle", "sending", "waiting", "rate_limited", "backoff",
          "blocked", "paused"}


def rows(n, start=1):
    return [{"name": "row-%d" % i} for i in range(start, start + n)]


def connect(d, timeout=10):
    """A connected socket.  A Unix connect with a timeout does not wait
    for room in a full backlog (EAGAIN): try again until TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(d.socket)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def send_quietly(s, data):
    """Send what the daemon takes; it may have closed already."""
    try:
        s.sendall(data)
    except OSError:
        pass


def read_all(s):
    """Everything until the daemon closes; a reset after the answer counts
    as the end too."""
    chunks = []
    while True:
        try:
            c = s.recv(65536)
        except ConnectionResetError:
            break
        if not c:
            break
        chunks.append(c)
    return b"".join(chunks)


def raw(d, data, shut=False, timeout=10):
    """Send DATA as it is (bytes), read the answer until the daemon
    closes."""
    s = connect(d, timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        return read_all(s)
    finally:
        s.close()


def answer(d, data, **kw):
    """A one-line JSON answer to DATA."""
    out = raw(d, data, **kw)
    check(out.endswith(b"\n") and out.count(b"\n") == 1,
          "one line ending in a newline: %r" % out[:300])
    return json.loads(out)


def still_open(s):
    """True while the daemon has not closed S (nothing to read yet)."""
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def stays(pred, seconds, every=0.05):
    """PRED holds for SECONDS (for things that must NOT happen)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not pred():
            return False
        time.sleep(every)
    return True


def ctl(*args, env=None):
    p = subprocess.run([BUILD_MMSYNCCTL] + list(args), capture_output=True,
                       timeout=60, env=env)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def metric_values(text):
    """{'name{labels}': float} from a Prometheus text exposition, checking
    every sample has its # HELP and # TYPE first."""
    helped, typed, out = set(), {}, {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*'
                        r'="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*='
                        r'"(?:[^"\\\n]|\\.)*")*\})? (\S+)$')
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            check(kind in ("counter", "gauge"), line)
            typed[name] = kind
        else:
            m = sample.match(line)
            check(m is not None, "not a sample line: %r" % line)
            name = m.group(1)
            check(name in helped and name in typed,
                  "%s without HELP/TYPE before it" % name)
            out[name + (m.group(2) or "")] = float(m.group(3))
    return out, typed


# ------------------------------------------------------------ answers

@test
def status_shape_and_counts(w):
    """status: one JSON line, the documented keys, counts after delivery,
    targets in configuration order"""
    fake = w.fake("--fault", "3:400")
    d = w.daemon({"zeta": token_target(fake), "alpha": webhook_target(fake),
                  "mid": token_target(fake)})
    d.drop("zeta", "b.ndjson", rows(5))
    fake.wait_posts(4)
    wait_until(lambda: d.spool_empty("zeta") and "b.errors" in
               d.failed("zeta"), what="batch handled")
    wait_until(lambda: d.status()["targets"]["zeta"]["failed"] == 1,
               what="failed counted")
    out = raw(d, b"status\n")
    check(out.endswith(b"\n") and out.count(b"\n") == 1, repr(out[:200]))
    st = json.loads(out)
    check(set(st) == {"version", "pid", "uptime_s", "targets"}, repr(st))
    check(isinstance(st["version"], str) and st["version"], "version")
    check(st["pid"] == d.proc.pid, "pid %r" % st["pid"])
    check(isinstance(st["uptime_s"], int) and 0 <= st["uptime_s"] < 600,
          "uptime")
    # JSON objects keep their order on the wire: configuration order.
    names = list(json.loads(out, object_pairs_hook=lambda kv: kv)[3][1])
    check([k for k, _ in names] == ["zeta", "alpha", "mid"], repr(names))
    for name, t in st["targets"].items():
        check(TARGET_KEYS <= set(t), "%s keys %r" % (name, sorted(t)))
        check(t["state"] in STATES, t["state"])
        for k in ("queued_batches", "sent", "failed", "retries",
                  "rate_limited"):
            check(isinstance(t[k], int) and t[k] >= 0, "%s %s" % (name, k))
        check(t["queued_rows"] is None or isinstance(t["queued_rows"], int),
              "queued_rows")
        check(t["last_error"] is None or isinstance(t["last_error"], str),
              "last_error")
        for k in ("next_send", "last_success"):
            check(t.get(k) is None or RFC3339.match(t[k]), "%s %r"
                  % (k, t.get(k)))
    z = st["targets"]["zeta"]
    check(z["sent"] == 4 and z["failed"] == 1, repr(z))
    check(z["state"] == "idle" and z["queued_batches"] == 0, repr(z))
    check(z["last_success"] is not None, "last_success set")
    a = st["targets"]["alpha"]
    check(a["sent"] == 0 and a["last_success"] is None and
          a["last_error"] is None, repr(a))
    # The harmless variants of the same command.
    for variant in (b"status\r\n", b"  status \t\n", b"status"):
        check(set(answer(d, variant, shut=True)) ==
              {"version", "pid", "uptime_s", "targets"}, repr(variant))


@test
def metrics_exposition(w):
    """metrics: Prometheus text with HELP/TYPE, per-target counters and
    gauges that follow the daemon's state"""
    fake = w.fake()
    d = w.daemon({"leads": token_target(fake), "alerts":
                  webhook_target(fake)})
    d.drop("leads", "b.ndjson", rows(3))
    fake.wait_posts(3)
    wait_until(lambda: d.spool_empty("leads"), what="spool empty")
    text = raw(d, b"metrics\n").decode()
    check(text.endswith("\n"), "ends with a newline")
    m, typed = metric_values(text)
    check(m["mmsyncd_up"] == 1, "up")
    check(m["mmsyncd_uptime_seconds"] >= 0, "uptime")
    for name in ("mmsyncd_rows_sent_total", "mmsyncd_rows_failed_total",
                 "mmsyncd_retries_total", "mmsyncd_rate_limited_total"):
        check(typed[name] == "counter", name)
    for name in ("mmsyncd_queued_batches", "mmsyncd_target_blocked",
                 "mmsyncd_target_paused",
                 "mmsyncd_last_success_timestamp_seconds"):
        check(typed[name] == "gauge", name)
    check(m['mmsyncd_rows_sent_total{target="leads"}'] == 3, "sent")
    check(m['mmsyncd_rows_sent_total{target="alerts"}'] == 0, "sent 0")
    check(m['mmsyncd_rows_failed_total{target="leads"}'] == 0, "failed")
    check(m['mmsyncd_queued_batches{target="leads"}'] == 0, "queued")
    check(m['mmsyncd_target_blocked{target="leads"}'] == 0, "blocked")
    check(m['mmsyncd_target_paused{target="leads"}'] == 0, "paused")
    check(abs(m['mmsyncd_last_success_timestamp_seconds{target="leads"}']
              - time.time()) < 300, "last success is recent")
    check(m['mmsyncd_last_success_timestamp_seconds{target="alerts"}'] == 0,
          "never")
    check(answer(d, b"pause alerts\n") == {"ok": True}, "pause")
    m, _ = metric_values(raw(d, b"metrics\n").decode())
    check(m['mmsyncd_target_paused{target="alerts"}'] == 1, "paused now")


@test
def pause_resume_retry(w):
    """pause holds rows back, resume sends them, retry resends failed
    rows; unknown targets and missing arguments are refused"""
    fake = w.fake("--fault", "1:400")
    d = w.daemon({"t": token_target(fake), "u": token_target(fake)})
    check(answer(d, b"pause t\n") == {"ok": True}, "pause")
    check(answer(d, b"pause t\n") == {"ok": True}, "pause twice")
    wait_until(lambda: d.status()["targets"]["t"]["state"] == "paused",
               what="paused")
    d.drop("t", "p.ndjson", rows(2))
    check(stays(lambda: not fake.requests(), 1.0), "nothing sent paused")
    st = d.status()["targets"]["t"]
    check(st["state"] == "paused" and st["queued_batches"] == 1, repr(st))
    check(answer(d, b"resume t\n") == {"ok": True}, "resume")
    # Request 1 is the 400: row-1 is set aside, row-2 delivered.
    posts = fake.wait_posts(1)
    check([p["message"] for p in posts] == ["row-2"], repr(posts))
    wait_until(lambda: "p.ndjson" in d.failed("t") and d.spool_empty("t"),
               what="row-1 set aside")
    a = answer(d, b"retry t\n")
    check(a.get("ok") is True and a.get("moved", 1) == 1, repr(a))
    posts = fake.wait_posts(2)
    check([p["message"] for p in posts] == ["row-2", "row-1"], repr(posts))
    wait_until(lambda: d.spool_empty("t"), what="spool empty")
    a = answer(d, b"retry t\n")
    check(a.get("ok") is True and a.get("moved", 0) == 0, repr(a))
    for cmd in (b"pause nosuch\n", b"resume nosuch\n", b"retry nosuch\n",
                b"pause ../t\n", b"pause " + b"x" * 500 + b"\n"):
        a = answer(d, cmd)
        check(a["ok"] is False and isinstance(a["error"], str) and
              a["error"], "%r -> %r" % (cmd[:20], a))
        check(set(a) == {"ok", "error"}, repr(a))
    check("nosuch" in answer(d, b"pause nosuch\n")["error"], "names it")
    for cmd in (b"pause\n", b"resume\n", b"retry \n", b"pause t u\n"):
        a = answer(d, cmd)
        check(a["ok"] is False and "unknown command" in a["error"],
              "%r -> %r" % (cmd, a))
    check(d.status()["targets"]["u"]["state"] == "idle", "u untouched")


@test
def garbage_commands_refused_daemon_keeps_working(w):
    """Garbage, binary, overlong and empty commands get ok:false; the
    daemon keeps serving and delivering"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)})
    cases = [b"\n", b"   \n", b"\r\n", b"bogus\n", b"STATUS\n",
             b"status please\n", b"status\x00\n", b"\x00\x01\x02\xff\xfe\n",
             b"\xc3\x28 \xe2\x82\n", b"metrics metrics\n",
             b"\x1b[31mred\x1b[0m\n", bytes(range(1, 10)) + b"\n",
             b"x" * 1024 + b"\n"]
    for data in cases + [b"pause \x00t\n", b"retry t\xff\n"]:
        a = answer(d, data)
        check(a["ok"] is False and isinstance(a["error"], str),
              "%r -> %r" % (data[:30], a))
        check(data not in cases or "unknown command" in a["error"],
              "%r -> %r" % (data[:30], a))
        check(len(a["error"]) < 300, "error is short: %d" % len(a["error"]))
    # Longer than 1024 bytes, with or without a newline, text or binary.
    for data in (b"x" * 1025 + b"\n", b"status " + b"y" * 5000,
                 bytes(range(11, 256)) * 40, b"z" * (1 << 20)):
        s = connect(d)
        s.setblocking(False)
        try:
            s.send(data)    # whatever fits; the daemon stops reading
        except OSError:
            pass
        s.setblocking(True)
        s.settimeout(10)
        out = read_all(s)
        s.close()
        check(json.loads(out) == {"ok": False, "error": "command too long"},
              "%d bytes -> %r" % (len(data), out[:200]))
    # A half-closed client with no line at all just goes.
    check(raw(d, b"", shut=True) == b"", "nothing in, nothing out")
    d.drop("t", "a.ndjson", rows(3))
    fake.wait_posts(3)
    check(d.status()["targets"]["t"]["sent"] == 3, "still counting")
    check(d.proc.poll() is None, "still running")


# ------------------------------------------------------------ clients

@test
def many_and_idle_clients_do_not_delay_delivery(w):
    """20 silent clients and 200 at once: delivery goes on, every client
    is answered or refused at once, the silent ones are dropped later"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)})
    t0 = time.monotonic()
    idle = [connect(d) for _ in range(20)]
    check(d.status()["targets"]["t"]["state"] == "idle", "status works")

    burst = []
    t1 = time.monotonic()
    for _ in range(200):
        burst.append(connect(d))
    for s in burst:
        send_quietly(s, b"status\n")   # the refused are closed already
    served = refused = 0
    for s in burst:
        out = read_all(s)
        s.close()
        if not out:
            refused += 1
            continue
        a = json.loads(out)
        if "targets" in a:
            served += 1
        else:
            check(a == {"ok": False, "error": "too many clients"}, repr(a))
            refused += 1
    burst_s = time.monotonic() - t1
    check(served >= 1 and served + refused == 200, "%d served, %d refused"
          % (served, refused))
    # Refused clients are closed at once, not left to wait in the
    # backlog for the silent ones to time out (5 s).
    check(burst_s < 4, "the burst took %.1f s" % burst_s)

    d.drop("t", "b.ndjson", rows(20))
    fake.wait_posts(20)
    check(all(still_open(s) for s in idle),
          "delivered while the silent clients are still connected")

    for s in idle:
        s.settimeout(30)
        check(read_all(s) == b"", "dropped without an answer")
        s.close()
    waited = time.monotonic() - t0
    check(2 <= waited < 30, "silent clients dropped after %.1f s" % waited)
    check(d.status()["targets"]["t"]["sent"] == 20, "sent")
    check("sent no command" in d.log(), "logged at debug")


@test
def client_cap_and_recovery(w):
    """Past 64 clients a newcomer is told so and closed at once; service
    comes back when the silent ones are dropped"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)})
    hold = [connect(d) for _ in range(64)]
    # The daemon accepts asynchronously: once it has taken all 64, the
    # next one is refused.
    def refused():
        s = connect(d)
        send_quietly(s, b"status\n")
        out = read_all(s)
        s.close()
        return out == b'{"ok": false, "error": "too many clients"}\n'
    wait_until(refused, timeout=5, what="a refusal past 64 clients")
    d.drop("t", "b.ndjson", rows(5))
    fake.wait_posts(5)      # delivery does not care
    wait_until(lambda: not refused(), timeout=30, what="service back")
    for s in hold:
        s.close()
    check(d.status()["targets"]["t"]["sent"] == 5, "sent")


@test
def client_that_never_reads(w):
    """A client that never reads its (large) answer holds up nothing and
    is dropped after the write timeout"""
    fake = w.fake()
    # Enough targets that the metrics answer outgrows the socket buffers.
    targets = {"t%03d" % i: token_target(fake) for i in range(700)}
    d = w.daemon(targets, log_level="debug")
    slow = connect(d)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b"metrics\n")
    t0 = time.monotonic()
    # Meanwhile everything else goes on.
    d.drop("t000", "b.ndjson", rows(5))
    fake.wait_posts(5)
    check(d.status()["targets"]["t000"]["sent"] == 5, "status answered")
    wait_until(lambda: "did not read its answer" in d.log(), timeout=30,
               what="the non-reader dropped")
    check(time.monotonic() - t0 >= 5, "not dropped before the write "
          "timeout")
    slow.settimeout(10)
    got = read_all(slow)
    slow.close()
    full = raw(d, b"metrics\n")
    check(len(got) < len(full), "cut short: %d of %d" % (len(got),
                                                         len(full)))
    check(d.proc.poll() is None, "still running")


# ------------------------------------------------------------ the socket

def start_expect_failure(w, d):
    """Run another mmsyncd on D's configuration; its exit status and
    output (kept apart from D's log)."""
    p = subprocess.run([BUILD_MMSYNCD, "-c", d.config_path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=30,
                       env={k: v for k, v in os.environ.items()
                            if k != "NOTIFY_SOCKET"})
    return p.returncode, p.stdout.decode(errors="replace")


@test
def second_daemon_refused(w):
    """A second mmsyncd on the same socket refuses to start and leaves
    the first one's socket alone"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)})
    before = os.stat(d.socket).st_ino
    rc, out = start_expect_failure(w, d)
    check(rc != 0, "second daemon exit %r" % rc)
    check("another mmsyncd is running on %s" % d.socket in out, out[-500:])
    check(os.stat(d.socket).st_ino == before, "socket untouched")
    check(d.status()["pid"] == d.proc.pid, "first still answers")
    d.drop("t", "b.ndjson", rows(2))
    fake.wait_posts(2)


@test
def stale_socket_replaced_and_removed_at_stop(w):
    """A stale socket is replaced; the socket is 0660 and removed at a
    clean stop"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)}, start=False)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(d.socket)
    s.close()       # left behind, as by kill -9
    d.start()
    check(d.status()["pid"] == d.proc.pid, "answers on the old path")
    check("stale" in d.log(), "said so")
    mode = os.stat(d.socket).st_mode
    check(stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660,
          "mode %o" % stat.S_IMODE(mode))
    check(d.stop() == 0, "clean stop")
    check(not os.path.exists(d.socket), "removed at stop")


@test
def socket_not_ours_is_left_alone(w):
    """A regular file at the path stops the start (never deleted); a
    socket that replaced ours is not removed at stop"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake)}, start=False)
    with open(d.socket, "w") as f:
        f.write("precious\n")
    rc, out = start_expect_failure(w, d)
    check(rc != 0, "refused to start: %r" % rc)
    check("not a socket" in out, out[-500:])
    with open(d.socket) as f:
        check(f.read() == "precious\n", "file kept")
    os.unlink(d.socket)
    d.start()
    os.unlink(d.socket)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(d.socket)
    try:
        check(d.stop() == 0, "clean stop")
        check(os.path.exists(d.socket), "someone else's socket kept")
    finally:
        other.close()


@test
def socket_mode_group_and_new_directory(w):
    """socket_mode and socket_group apply; a missing parent directory is
    created"""
    fake = w.fake()
    names = [g.gr_name for g in grp.getgrall()]
    group = "nogroup" if "nogroup" in names else grp.getgrgid(
        os.getegid()).gr_name
    d = w.daemon({"t": token_target(fake)}, start=False)
    d.socket = w.file("run/sub/mm.sock")
    d.write_config({"t": token_target(fake)},
                   extra='socket_mode: "0600"\nsocket_group: %s' % group)
    d.start()
    st = os.stat(d.socket)
    check(stat.S_IMODE(st.st_mode) == 0o600, "mode %o"
          % stat.S_IMODE(st.st_mode))
    if os.geteuid() == 0:
        check(st.st_gid == grp.getgrnam(group).gr_gid, "group")
    check(d.status()["pid"] == d.proc.pid, "answers")


# ------------------------------------------------------------ mmsyncctl

@test
def mmsyncctl_table_json_and_commands(w):
    """mmsyncctl: an aligned table, --json as the daemon sent it, pause,
    resume, retry and metrics"""
    fake = w.fake("--fault", "1:400")
    d = w.daemon({"leads": token_target(fake), "audiences":
                  webhook_target(fake)})
    d.drop("leads", "b.ndjson", rows(3))
    fake.wait_posts(2)
    wait_until(lambda: d.spool_empty("leads") and d.failed("leads"),
               what="batch handled")
    rc, out, err = ctl("-s", d.socket, "status")
    check(rc == 0 and err == "", "rc %d %r" % (rc, err))
    lines = out.splitlines()
    check(re.match(r"^TARGET +STATE +QUEUED +SENT +FAILED +RETRIES +"
                   r"LAST ERROR$", lines[0]), repr(lines[0]))
    check(len(lines) == 3, repr(lines))
    check(lines[1].startswith("leads ") and
          lines[2].startswith("audiences "), "configuration order")
    state_col = lines[0].index("STATE")
    queued_col = lines[0].index("QUEUED")
    err_col = lines[0].index("LAST ERROR")
    for line in lines[1:]:
        check(line[state_col:].split()[0] in STATES, repr(line))
        check(re.match(r"\d+ batch(es)?( / \d+ rows?)?",
                       line[queued_col:]), repr(line))
        check(len(line) <= 120, "%d columns" % len(line))
        check(line[err_col - 2:err_col] == "  ", "aligned: %r" % line)
    cells = lines[1][queued_col:err_col].split()
    check(cells[-3:] == ["2", "1", "0"], "sent failed retries %r" % cells)
    check(lines[2][err_col:] == "-", "no error: %r" % lines[2])

    for args in (("status", "--json"), ("--json", "status"),
                 ("-j", "status")):
        rc, out, _ = ctl("-s", d.socket, *args)
        check(rc == 0 and out.endswith("\n") and out.count("\n") == 1,
              repr(out[:100]))
        check(json.loads(out)["targets"]["leads"]["sent"] == 2, "json")
    rc, out, _ = ctl("-c", d.config_path, "status", "--json")
    check(rc == 0 and json.loads(out)["pid"] == d.proc.pid, "via -c")

    rc, out, _ = ctl("-s", d.socket, "metrics")
    check(rc == 0 and 'mmsyncd_rows_sent_total{target="leads"} 2' in out,
          out[:300])
    rc, out, err = ctl("-s", d.socket, "pause", "audiences")
    check(rc == 0 and out == "audiences: paused\n", repr((rc, out, err)))
    rc, out, _ = ctl("-s", d.socket, "status")
    check(" paused " in out.splitlines()[2], repr(out))
    rc, out, _ = ctl("-s", d.socket, "resume", "audiences")
    check(rc == 0 and out == "audiences: resumed\n", repr(out))
    rc, out, _ = ctl("-s", d.socket, "retry", "leads")
    check(rc == 0 and out.startswith("leads: "), repr(out))
    fake.wait_posts(3)
    rc, out, err = ctl("-s", d.socket, "pause", "nosuch")
    check(rc == 1 and out == "" and err.startswith("mmsyncctl: ") and
          "nosuch" in err and err.count("\n") == 1, repr((rc, out, err)))


@test
def mmsyncctl_long_error_fits_120_columns(w):
    """A long last error is cut to fit 120 columns"""
    fake = w.fake()
    d = w.daemon({"t": token_target(fake, channel="a" * 26)})
    d.drop("t", "b.ndjson", rows(1))
    wait_until(lambda: d.status()["targets"]["t"]["state"] == "blocked",
               what="blocked")
    full = d.status()["targets"]["t"]["last_error"]
    rc, out, _ = ctl("-s", d.socket, "status")
    line = out.splitlines()[1]
    check(rc == 0 and " blocked " in line, repr(out))
    check(len(line) <= 120, "%d columns: %r" % (len(line), line))
    shown = line[out.splitlines()[0].index("LAST ERROR"):]
    check(shown == full or (shown.endswith("...") and
                            full.startswith(shown[:-3])), repr(shown))


@test
def mmsyncctl_exit_codes(w):
    """mmsyncctl: 1 with a reason when the daemon is not there, 2 on
    usage errors"""
    missing = w.file("nothing.sock")
    rc, out, err = ctl("-s", missing, "status")
    check(rc == 1 and out == "", "rc %d" % rc)
    check(err == "mmsyncctl: cannot connect to %s: No such file or "
          "directory (is mmsyncd running?)\n" % missing, repr(err))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(missing)     # a socket nobody listens on
    s.close()
    rc, _, err = ctl("-s", missing, "pause", "t")
    check(rc == 1 and "refused" in err.lower(), repr(err))
    for args in ((), ("bogus",), ("pause",), ("resume",), ("retry",),
                 ("status", "extra"), ("pause", "a", "b"),
                 ("--no-such-flag", "status"),
                 ("-s", missing, "-c", missing, "status"),
                 ("-s", missing, "metrics", "--json")):
        rc, out, err = ctl("-s", missing, *args) if "-s" not in args \
            else ctl(*args)
        check(rc == 2, "%r -> %d %r" % (args, rc, err))
        check(err.strip() != "", "%r says why" % (args,))
    rc, out, _ = ctl("-h")
    check(rc == 0 and "usage: mmsyncctl" in out, repr(out))
    rc, _, err = ctl("-c", w.file("no-such.yaml"), "status")
    check(rc == 1 and "no-such.yaml" in err, repr(err))


run_tests()
