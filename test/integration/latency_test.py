#!/usr/bin/env python3
"""The settings for latency-critical nodes, on real troupe-node processes:
dispatcher.busy_poll_us (the event loop polls before it sleeps, and stops
polling once traffic stops) and kinds.<kind>.on_event_loop (a plugin kind's
turns run on the loop thread that read the message), seen as an operator
sees them: answers, /metrics, and the refusals of bad values.

usage: latency_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import os
import subprocess
import sys
import tempfile
import time

from harness import check, finish
import nodes as nodes_mod
from nodes import metric, world

NODE, CTL, BUILD_ROOT = sys.argv[1], sys.argv[2], sys.argv[3]

tmp = tempfile.mkdtemp()
w = world(NODE, CTL, BUILD_ROOT, tmp)
key = w.secret("cluster.key", "a-long-enough-cluster-secret")
busy = "dispatcher: { busy_poll_us: 200 }\n"


def node(name, **kw):
    return nodes_mod.node(w, name, key=key, **kw)


def value(n, name):
    v = metric(n.scrape(), name)
    check(f"{n.name} exports {name}", v is not None)
    return v or 0.0


a = node("node-a")
on_loop = node("node-loop", extra=busy, kinds="echo: { on_event_loop: true }")
on_workers = node("node-workers", extra=busy)
up = all(n.address and n.admin and n.metrics for n in w.nodes)
check("three nodes start, two of them busy-polling", up, "".join(n.err.text() for n in w.nodes))
if not up:
    w.stop_all()
    finish()

a.spawn("probe.relay", "relay")
rounds = 100
for b in (on_loop, on_workers):
    b.spawn("echo", "echo")
    turns = value(b, "troupe_event_loop_turns_total")
    answers = [a.relay(f"{b.address}/echo", i) for i in range(rounds)]
    wrong = [(i, s, body) for i, (s, body) in enumerate(answers) if s != 200 or body.get("message") != {"n": i}]
    check(f"{b.name}: {rounds} requests from another node each get their own answer", not wrong, str(wrong[:3]))
    b.turns = value(b, "troupe_event_loop_turns_total") - turns

# More than half: a turn that loses its core for 0.5 ms (a busy host) sends
# the actor to the workers for a while, by design.
check("with kinds.echo.on_event_loop the loop thread ran the echo actor's turns itself",
      on_loop.turns > rounds / 2, f"{on_loop.turns} turns on the loop for {rounds} requests")
check("without it the plugin's turns stay on the workers",
      on_workers.turns < rounds / 10, f"{on_workers.turns} turns on the loop for {rounds} requests")

polled = {n.name: value(n, "troupe_event_loop_polling_seconds_total") for n in w.nodes}
check("the busy-polling nodes count the time their loop polled",
      polled["node-loop"] > 0 and polled["node-workers"] > 0, str(polled))
check("a node without busy_poll_us never polls", polled["node-a"] == 0, str(polled))

# Once traffic stops, a window after the last work, the loop sleeps again:
# an idle node does not keep a core busy.
time.sleep(0.5)
before = value(on_loop, "troupe_event_loop_polling_seconds_total")
time.sleep(2.0)
idle_polled = value(on_loop, "troupe_event_loop_polling_seconds_total") - before
check("an idle busy-polling node polls for a small part of the time only",
      idle_polled < 0.2, f"polled {idle_polled:.3f} s of 2 s without traffic")
w.stop_all()


def refused(name, text, expect):
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write("node: { name: bad, cluster: rt }\nadmin: { listen: 127.0.0.1:0 }\n"
                "metrics: { listen: 127.0.0.1:0 }\n" + text)
    r = subprocess.run([NODE, "--config", path], capture_output=True, text=True, timeout=20)
    check(f"a node refuses {text.strip()!r} and says where and why",
          r.returncode != 0 and f"{path}:" in r.stderr and all(e in r.stderr for e in expect),
          f"status {r.returncode}: {r.stderr}")


refused("too-long", "dispatcher: { busy_poll_us: 20000 }\n", ["dispatcher.busy_poll_us", "10000"])
refused("not-a-flag", "kinds: { echo: { on_event_loop: often } }\n", ["kinds.echo.on_event_loop"])
finish()
