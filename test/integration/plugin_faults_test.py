#!/usr/bin/env python3
"""Plugins that fail, seen from a real troupe-node: a handler that throws
is logged (at most a line a second per kind, with what went unlogged) and
its actor restarts; a handler that crashes the process (a bad pointer, an
abort, a stack overflow) still gets one log line naming the signal, the
plugin, the kind and the actor before the node dies of that signal.

usage: plugin_faults_test.py TROUPE_NODE BUILD_ROOT
"""
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from harness import check, finish, http, listening_url, stderr_reader, wait_or_kill

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

shutil.rmtree(tmp, ignore_errors=True)
finish()
