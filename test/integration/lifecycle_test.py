#!/usr/bin/env python3
"""troupe-node under systemd's protocol, with this test in systemd's place:
it owns NOTIFY_SOCKET and checks READY/STATUS, WATCHDOG, RELOADING around a
good and a rejected SIGHUP reload, STOPPING on SIGTERM; plus --check-config,
journald priority prefixes and JSON log lines.

usage: lifecycle_test.py TROUPE_NODE BUILD_ROOT
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import check, copy_plugins, finish, http, listening_url, run_until_ready, stderr_reader, wait_or_kill

NODE, BUILD_ROOT = sys.argv[1], sys.argv[2]




class systemd:
    """Receives what the node sends to NOTIFY_SOCKET."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []

    def wait_for(self, field, timeout=10.0, after=0):
        """Waits for a datagram holding `field` (e.g. READY=1) among those
        from index `after` on; returns its index or -1."""
        deadline = time.time() + timeout
        while True:
            for i in range(after, len(self.messages)):
                if field in self.messages[i].split("\n"):
                    return i
            if time.time() > deadline:
                return -1
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass


tmp = tempfile.mkdtemp()
plugin_dir = os.path.join(tmp, "plugins")
copy_plugins(BUILD_ROOT, plugin_dir, ["echo", "counter"])


def write_config(text, name="node.yaml"):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


base = (f"node: {{ name: life, cluster: test, drain_timeout: 5 }}\n"
        f"plugins: {{ dir: {plugin_dir}, load: [counter] }}\n"
        "metrics: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\n")
cfg = write_config(base)

# ---- --check-config
r = subprocess.run([NODE, "--check-config", cfg], capture_output=True, text=True, timeout=20)
check("--check-config accepts a good file", r.returncode == 0 and "configuration is valid" in r.stdout,
      r.stdout + r.stderr)
bad = os.path.join(tmp, "bad.yaml")
with open(bad, "w") as f:
    f.write("node:\n  name: x\nplugins:\n  dir: /nonexistent/plugins\n  load: [counter]\n")
r = subprocess.run([NODE, "--check-config", bad], capture_output=True, text=True, timeout=20)
check("--check-config names an unreadable plugin dir with file:line and exits 78",
      r.returncode == 78 and f"{bad}:4: 'plugins.dir' /nonexistent/plugins is not a readable directory"
      in r.stderr, r.stderr)
# What the start would refuse, the check finds too: a required plugin
# whose file is not there (a start exits 78 for it).
missing = write_config(base.replace("load: [counter]", "load: [counter], required: [kv]"), "missing.yaml")
r = subprocess.run([NODE, "--check-config", missing], capture_output=True, text=True, timeout=20)
check("--check-config finds a required plugin that is missing, as the start would, and exits 78",
      r.returncode == 78 and f"{missing}: plugins.required: 'kv' has no readable kv.so in plugins.dir" in r.stderr
      and "configuration is valid" not in r.stdout, r.stdout + r.stderr)
r = subprocess.run([NODE, "--config", missing], capture_output=True, text=True, timeout=20)
check("and the start refuses it with the same status", r.returncode == 78, r.stderr[-600:])

# ---- the systemd protocol
sd = systemd(tmp)
env = dict(os.environ, NOTIFY_SOCKET=sd.path, WATCHDOG_USEC="200000")
env.pop("JOURNAL_STREAM", None)
p = subprocess.Popen([NODE, "--config", cfg], stderr=subprocess.PIPE, text=True, env=env)
err = stderr_reader(p)
ready = sd.wait_for("READY=1")
check("READY=1 once started, with a STATUS", ready >= 0 and any(
    l.startswith("STATUS=") and "1 plugins" in l for l in sd.messages[ready].split("\n")),
    f"{sd.messages}\n{err.text()}")
w1 = sd.wait_for("WATCHDOG=1", after=ready + 1)
w2 = sd.wait_for("WATCHDOG=1", after=w1 + 1) if w1 >= 0 else -1
check("WATCHDOG=1 at half the interval", w1 >= 0 and w2 >= 0, f"{sd.messages}")

write_config(base.replace("load: [counter]", "load: [counter, echo]") + "log: { level: debug }\n")
mark = len(sd.messages)
p.send_signal(signal.SIGHUP)
rl = sd.wait_for("RELOADING=1", after=mark)
rd = sd.wait_for("READY=1", after=rl + 1) if rl >= 0 else -1
check("SIGHUP: RELOADING=1 then READY=1, and a newly listed plugin loads",
      rl >= 0 and rd >= 0 and err.has("plugin echo 1.0.0 loaded"), f"{sd.messages}\n{err.text()}")
check("after the reload READY=1 comes with the new STATUS, and log.level: debug applies",
      rd >= 0 and "STATUS=2 plugins, 2 kinds, 0 actors" in sd.messages[rd].split("\n") and
      err.has("debug troupe-node: log: level debug, format text"), f"{sd.messages}\n{err.text()}")

write_config(base + "colour: blue\n")
mark = len(sd.messages)
p.send_signal(signal.SIGHUP)
rl = sd.wait_for("RELOADING=1", after=mark)
rd = sd.wait_for("READY=1", after=rl + 1) if rl >= 0 else -1
admin = listening_url(err, "admin API")
status, body = http("GET", admin + "/v1/plugins") if admin else (0, None)
check("a reload with errors names file:line, is rejected, and the node runs on as it was",
      rl >= 0 and rd >= 0 and err.has(f"{cfg}:5: unknown key 'colour'") and err.has("reload rejected") and
      p.poll() is None and status == 200 and sorted(x["name"] for x in body["plugins"]) == ["counter", "echo"],
      f"{status} {body}\n{err.text()}")

# Two files holding the same plugin used to deadlock the node, at start and
# on reload.
shutil.copy(os.path.join(plugin_dir, "counter.so"), os.path.join(plugin_dir, "counter-again.so"))
write_config(base.replace("load: [counter]", "load: [counter, echo, counter-again]"))
mark = len(sd.messages)
p.send_signal(signal.SIGHUP)
rl = sd.wait_for("RELOADING=1", after=mark)
rd = sd.wait_for("READY=1", after=rl + 1) if rl >= 0 else -1
same_name = "counter-again.so: a plugin named 'counter' is already loaded from"
check("a reload listing a second file of a loaded plugin refuses it and carries on",
      rd >= 0 and err.has(same_name, 5) and http("GET", admin + "/healthz")[0] == 200,
      f"{sd.messages}\n{err.text()[-1500:]}")
twice = write_config(base.replace("load: [counter]", "load: [counter, counter-again]")
                     .replace("name: life", "name: twice"))
ok, rc, twice_err = run_until_ready(NODE, twice)
check("a node started with two files of one plugin gets ready, says which it refused, stops cleanly",
      ok and rc == 0 and twice_err.has(same_name, 1), twice_err.text()[-1500:])
cfg = write_config(base.replace("load: [counter]", "load: [counter, echo]"))

# Files that used to throw out of the parser and kill a running node.
def rejected_count(n, timeout=10.0):
    """Waits until the log holds `n` "reload rejected" lines; their count."""
    deadline = time.time() + timeout
    while True:
        count = sum("reload rejected" in l for l in err.lines)
        if count >= n or time.time() > deadline:
            return count
        time.sleep(0.02)


for i, (label, text, what) in enumerate((
        ("a mapping used as a key", base + "? {x: 1}\n: 2\n", "a mapping is used as a key"),
        ("a second admin section", base + "admin:\n  token_file: /etc/hostname\n", "duplicate key 'admin'"))):
    write_config(text)
    mark = len(sd.messages)
    p.send_signal(signal.SIGHUP)
    rl = sd.wait_for("RELOADING=1", after=mark)
    rd = sd.wait_for("READY=1", after=rl + 1) if rl >= 0 else -1
    check(f"a reload of a file with {label} is rejected with file:line; the node runs on",
          rl >= 0 and rd >= 0 and rejected_count(i + 2) >= i + 2 and err.has(what, 5)
          and err.has(f"{cfg}:", 1) and p.poll() is None, err.text()[-1500:])

mark = len(sd.messages)
p.send_signal(signal.SIGTERM)
st = sd.wait_for("STOPPING=1", after=mark)
rc = wait_or_kill(p)
check("SIGTERM: STOPPING=1, every actor stopped, exit 0",
      st >= 0 and rc == 0 and err.has("all actors stopped", 1), f"rc={rc}\n{err.text()}")

# ---- how lines look
def journal_run(args, stop_after=None):
    """Runs the node with stderr on a file that JOURNAL_STREAM names, as
    systemd does with the journal's stream; returns (exit status, lines)."""
    path = os.path.join(tmp, "journal.log")
    with open(path, "w") as f:
        st = os.fstat(f.fileno())
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        env.pop("NOTIFY_SOCKET", None)
        p = subprocess.Popen([NODE] + args, stderr=f, env=env)
        if stop_after:
            deadline = time.time() + 20
            while time.time() < deadline and stop_after not in open(path).read():
                time.sleep(0.05)
            p.send_signal(signal.SIGTERM)
        rc = wait_or_kill(p)
    return rc, [l for l in open(path).read().split("\n") if l.strip()]


write_config(base)
rc, lines = journal_run(["--config", cfg], stop_after="ready:")
check("under journald every line starts with its syslog priority",
      rc == 0 and lines and all(l[0] == "<" and l[2] == ">" for l in lines) and
      any(l.startswith("<6>info") for l in lines), "\n".join(lines))

bad = os.path.join(tmp, "bad.yaml")
with open(bad, "w") as f:
    f.write("node:\n  colour: blue\n")
rc, lines = journal_run(["--check-config", bad])
check("under journald a configuration error is logged as an error (<3>)",
      rc == 78 and lines and all(l.startswith("<3>error") for l in lines) and
      any(f"{bad}:2:" in l for l in lines), f"rc={rc}\n" + "\n".join(lines))

# A JOURNAL_STREAM inherited by a process whose stderr went elsewhere.
env = dict(os.environ, JOURNAL_STREAM="8:1234")
env.pop("NOTIFY_SOCKET", None)
ok, _, err = run_until_ready(NODE, cfg, env)
lines = [l for l in err.lines if l.strip()]
check("JOURNAL_STREAM naming another stream: plain lines, no priority prefix",
      ok and lines and all(not l.startswith("<") for l in lines) and
      any(l.startswith("info troupe-node: ") for l in lines), err.text())

write_config(base + "log: { format: json }\n")
env.pop("JOURNAL_STREAM", None)
ok, _, err = run_until_ready(NODE, cfg, env)
parsed = []
try:
    parsed = [json.loads(l) for l in err.lines if l.strip()]
except ValueError:
    parsed = []
check("log.format: json writes one JSON object a line",
      ok and parsed and all({"time", "level", "message"} <= set(o) for o in parsed), err.text())

# ---- signals while the node is still starting (a plugin's init takes 1.5 s)
shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", "slow_init.so"), plugin_dir)
write_config(base.replace("load: [counter]", "load: [counter, slow_init]"))
env = dict(os.environ)
env.pop("NOTIFY_SOCKET", None)
p = subprocess.Popen([NODE, "--config", cfg], stderr=subprocess.PIPE, text=True, env=env)
err = stderr_reader(p)
loading = err.has("starting with", 10)
time.sleep(0.3)
p.send_signal(signal.SIGHUP)  # as `systemctl reload` during a slow start
ready = err.has("ready:", 10)
reloaded = err.has("reloaded:", 5)
alive = p.poll() is None
p.send_signal(signal.SIGTERM)
rc = wait_or_kill(p)
check("a SIGHUP while the node starts is a reload once it is ready, not the end of it",
      loading and ready and reloaded and alive and rc == 0, f"rc={rc}\n{err.text()}")
p = subprocess.Popen([NODE, "--config", cfg], stderr=subprocess.PIPE, text=True, env=env)
err = stderr_reader(p)
loading = err.has("starting with", 10)
time.sleep(0.3)
t0 = time.time()
p.send_signal(signal.SIGTERM)
rc = wait_or_kill(p)
check("a SIGTERM while the node starts stops it cleanly once the start is over (status 0)",
      loading and rc == 0 and err.has("received SIGTERM", 1) and err.has("stopped", 1) and time.time() - t0 < 5,
      f"rc={rc}\n{err.text()}")

# ---- stopping while actors are busy
shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", "thrower.so"), plugin_dir)
busy = (base.replace("load: [counter]", "load: [counter, thrower]")
        .replace("drain_timeout: 5", "drain_timeout: 4") + "demo: true\n")
env = dict(os.environ)
env.pop("NOTIFY_SOCKET", None)


def start_busy(sleep_ms):
    """A node running the demo ring, with an actor asleep in its handler for
    `sleep_ms` and two more messages waiting behind it."""
    write_config(busy)
    p = subprocess.Popen([NODE, "--config", cfg], stderr=subprocess.PIPE, text=True, env=env)
    err = stderr_reader(p)
    admin = listening_url(err, "admin API")
    ok = admin is not None and err.has("ready:")
    if ok:
        ok = http("POST", admin + "/v1/actors", {"kind": "sleep.receive", "name": "sleepy"})[0] == 201
        for _ in range(3):
            ok = ok and http("POST", admin + "/v1/actors/sleepy/send",
                             {"type": "troupe.test.Num", "message": {"n": sleep_ms}})[0] == 202
        time.sleep(0.3)  # the first handler is asleep now
    return p, err, ok


p, err, ok = start_busy(1500)
t0 = time.time()
p.send_signal(signal.SIGTERM)
rc = wait_or_kill(p, 30)
took = time.time() - t0
check("SIGTERM with busy actors waits for the running handler, then exits 0",
      ok and rc == 0 and err.has("all actors stopped", 1) and 1.0 < took < 4.0,
      f"rc={rc} took={took:.1f}s\n{err.text()}")

p, err, ok = start_busy(60000)
t0 = time.time()
p.send_signal(signal.SIGTERM)
stopping = err.has("received SIGTERM", 10)
time.sleep(0.2)
p.send_signal(signal.SIGINT)
rc = wait_or_kill(p, 10)
check("a second signal forces the exit at once",
      ok and stopping and rc == 1 and err.has("second SIGINT: exiting now", 1) and time.time() - t0 < 3,
      f"rc={rc}\n{err.text()}")

# Exiting while a worker is stuck is the point here: a thread sanitizer
# must not count that thread as leaked.
env["TSAN_OPTIONS"] = (os.environ.get("TSAN_OPTIONS", "") + " report_thread_leaks=0").strip()
p, err, ok = start_busy(60000)
t0 = time.time()
p.send_signal(signal.SIGTERM)
rc = wait_or_kill(p, 30)
took = time.time() - t0
check("a handler that never returns: the node names it and gives up after the drain timeout",
      ok and rc == 1 and 5.5 < took < 9 and err.has("actors have not stopped: sleepy (sleep.receive)", 1)
      and err.has("a handler does not return; exiting now", 1), f"rc={rc} took={took:.1f}s\n{err.text()}")

shutil.rmtree(tmp)
finish()
