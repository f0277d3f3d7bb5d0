#!/usr/bin/env python3
"""Plugins that fail, seen from a real troupe-node: a handler that throws
is logged (at most a line a second per kind, with what went unlogged) and
its actor restarts; a handler that crashes the process (a bad pointer, an
abort, a stack overflow) still gets one log line naming the signal, the
plugin, the kind and the actor before the node dies of that signal.

Plugin code never runs on the event loop thread, and a node whose workers
are all stuck in handlers says so: /healthz answers 503 and the systemd
watchdog is no longer fed.

usage: plugin_faults_test.py TROUPE_NODE BUILD_ROOT
"""
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import check, finish, http, listening_url, stderr_reader, wait_or_kill
from nodes import node, world

NODE, BUILD_ROOT = os.path.abspath(sys.argv[1]), sys.argv[2]
tmp = tempfile.mkdtemp()
plugin_dir = os.path.join(tmp, "plugins")
os.makedirs(plugin_dir)
for so in ("thrower.so", "crasher.so"):
    shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", so), plugin_dir)


def no_core():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def start(name):
    cfg = os.path.join(tmp, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(f"node: {{ name: {name}, cluster: test }}\n"
                f"plugins: {{ dir: {plugin_dir}, load: [thrower, crasher] }}\n"
                "admin: { listen: 127.0.0.1:0 }\nmetrics: { listen: 127.0.0.1:0 }\n")
    p = subprocess.Popen([NODE, "--config", cfg], stderr=subprocess.PIPE, text=True,
                         preexec_fn=no_core, cwd=tmp)
    err = stderr_reader(p)
    admin = listening_url(err, "admin API")
    err.has("ready:", 20)
    return p, err, admin


def spawn(admin, kind, name):
    return http("POST", admin + "/v1/actors", {"kind": kind, "name": name})[0]


def send(admin, actor, n):
    return http("POST", f"{admin}/v1/actors/{actor}/send",
                {"type": "troupe.test.Num", "message": {"n": n}})[0]


# ---- a throwing handler: logged, throttled, restarted
p, err, admin = start("throws")
# Five actors of one kind fail three times each: well inside their
# supervisors' restart budget (10), far beyond one log line.
check("a throwing kind spawns",
      all(spawn(admin, "throw.receive", f"t{i}") == 201 for i in range(5)))
for _ in range(3):
    for i in range(5):
        send(admin, f"t{i}", -1)
failed = "(kind throw.receive, plugin thrower) failed: negative number -1"
err.has(failed, 5)
time.sleep(0.3)
first = [l for l in err.lines if failed in l]
check("a handler that throws is logged with actor, kind, plugin and reason, once for a burst",
      len(first) == 1 and "actor t" in first[0], err.text()[-2000:])
time.sleep(1.2)
send(admin, "t0", -1)
later = err.has("(14 more failures of this kind in the last second went unlogged)", 5)
check("the next line a second later says how many went unlogged", later, err.text()[-2000:])
status, body = http("POST", admin + "/v1/actors/t0/request",
                    {"type": "troupe.test.Num", "message": {"n": 1}})
check("the actor was restarted and answers", status == 200 and body["message"]["n"] == 1,
      f"{status} {body}")
p.send_signal(signal.SIGTERM)
check("the node stops cleanly", wait_or_kill(p) == 0, err.text()[-1500:])

# ---- handlers that kill the process
for n, sig, what in ((1, signal.SIGSEGV, "fatal signal SIGSEGV (invalid memory access) at address 0x10"),
                     (2, signal.SIGABRT, "fatal signal SIGABRT (aborted)"),
                     (3, signal.SIGSEGV, "fatal signal SIGSEGV (invalid memory access)")):
    label = {1: "a bad pointer", 2: "an abort", 3: "a stack overflow"}[n]
    p, err, admin = start(f"crash{n}")
    spawn(admin, "crash.receive", "boom")
    try:
        send(admin, "boom", n)
    except OSError:
        pass  # the node may die before it answers
    rc = wait_or_kill(p, 20)
    err.has("the node exits", 5)
    line = [l for l in err.lines if "the node exits" in l]
    check(f"{label} in a handler: one line names the signal, plugin, kind and actor, "
          f"then the node dies of {sig.name}",
          rc == -sig and len(line) == 1 and what in line[0] and line[0].rstrip().endswith(
              " while running plugin crasher, kind crash.receive, actor boom; the node exits"),
          f"rc={rc}\n{err.text()[-1500:]}")

# ---- plugin code never runs on the event loop thread
# A reply from a plugin handler that sleeps 3 s, asked from another node:
# run on the loop, it stopped the heartbeats and the link (1 s timeout) fell.
os.makedirs(os.path.join(tmp, "remote"))
w = world(NODE, None, BUILD_ROOT, os.path.join(tmp, "remote"))
key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
a, b = node(w, "a", key=key), node(w, "b", key=key)
b.spawn("sleep.receive", "sleeper")
a.spawn("probe.relay", "relay")
t0 = time.monotonic()
status, body = a.relay(f"{b.address}/sleeper", 3000, timeout_ms=15000)
check("a plugin handler busy for 3 s with a peer's message answers it; the link stays up",
      status == 200 and body.get("message", {}).get("n") == 3000 and not a.err.has("lost", 0.1)
      and not b.err.has("lost", 0.1), f"{status} {body}\n{a.err.text()[-800:]}\n{b.err.text()[-800:]}")
w.stop_all()

# ---- every worker blocked: /healthz and the watchdog say so
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify_path = os.path.join(tmp, "notify.sock")
notify.bind(notify_path)
notify.settimeout(0.2)
cfg = os.path.join(tmp, "wedged.yaml")
with open(cfg, "w") as f:
    f.write("node: { name: wedged, cluster: test, stall_timeout: 2 }\n"
            f"plugins: {{ dir: {plugin_dir}, load: [thrower] }}\n"
            "dispatcher: { threads: 2 }\n"
            "admin: { listen: 127.0.0.1:0 }\nmetrics: { listen: 127.0.0.1:0 }\n")
env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="1000000")
env.pop("WATCHDOG_PID", None)
p = subprocess.Popen([NODE, "--config", cfg], stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
err = stderr_reader(p)
admin = listening_url(err, "admin API")
err.has("ready:", 20)


def pings(seconds):
    """WATCHDOG=1 datagrams received within `seconds`."""
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            n += "WATCHDOG=1" in notify.recv(4096).decode().split("\n")
        except socket.timeout:
            pass
    return n


check("a healthy node feeds the watchdog", pings(1.5) >= 2)
for i in range(2):
    spawn(admin, "sleep.receive", f"stuck{i}")
    send(admin, f"stuck{i}", 600000)  # ten minutes: longer than the test
stalled = err.has("stalled: all 2 workers have been inside one handler", 10)
status, body = http("GET", admin + "/healthz")
check("with both workers inside handlers past stall_timeout, the log and /healthz say stalled",
      stalled and status == 503 and body.get("status") == "stalled", f"{status} {body}\n{err.text()[-800:]}")
pings(0.6)  # one may have been on its way
check("and the watchdog is no longer fed, so that systemd restarts the node", pings(2.5) == 0)
p.kill()
p.wait()
notify.close()

shutil.rmtree(tmp, ignore_errors=True)
finish()
