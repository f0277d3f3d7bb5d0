#!/usr/bin/env python3
"""Grains (virtual actors) between real troupe-node processes, each on its
own loopback address, with the grains test plugin (test/plugins/grains.cpp):
a counter grain called from each of three nodes sees one value; 1,000
concurrent first calls to 10 identities make exactly 10 activations; a
constructor that throws is an error for its callers at once; a grain
passivates when idle (its own timer does not keep it) or when it asks, and
comes back on its next call; the SDK's ctx.grain() calls from a plugin's
actor; the owner killed with kill -9: calls made meanwhile are retried and
answered by a new activation elsewhere; a node paused past its dead verdict
has stopped its activations before it serves again.

usage: grains_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import concurrent.futures
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import nodes as nodes_mod
from harness import check, finish
from nodes import free_port, metric, poll

NODE, CTL, BUILD_ROOT = sys.argv[1:4]

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", "grains.so"), w.plugin_dir)
key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
hosts = [f"127.0.0.{i}" for i in range(2, 9)]
ports = {h: free_port(h) for h in hosts}
addr = {h: f"{h}:{ports[h]}" for h in hosts}
# A short idle timeout for grains.counter would race the checks below: the
# counter keeps the default (10 minutes); grains.brief has 1 s from its plugin.
KINDS = "grains.counter: { grain: { idle_timeout: 10m } }"


def start(name, host, seeds, cluster="rt", extra=""):
    return nodes_mod.node(w, name, key=key, listen=addr[host], seeds=[addr[s] for s in seeds], cluster=cluster,
                          plugins=("echo", "thrower", "remote_probe", "grains"), kinds=KINDS, extra=extra)


def call(n, kind, identity, type_, message, timeout_ms=5000):
    return n.call("POST", f"/v1/grains/{kind}/{identity}/{type_}?timeout_ms={timeout_ms}", message)


def value(n, kind, identity, type_="grains.Get", message=None, timeout_ms=5000):
    status, body = call(n, kind, identity, type_, message or {}, timeout_ms)
    return status, body.get("message", {}) if status == 200 else body


def all_alive(ns, names, timeout=20.0):
    def ok():
        return all({k for k, m in n.members().items() if m["status"] == "alive"} == set(names) for n in ns)
    deadline = time.time() + timeout
    while time.time() < deadline and not ok():
        time.sleep(0.1)
    return ok()


def activations(ns, kind):
    return sum(metric(n.scrape(), "troupe_grain_activations_total", f'{{kind="{kind}"}}') or 0 for n in ns)


def node_of(pid):
    """The node whose address starts the PID."""
    return next(n for n in w.nodes if n.p.poll() is None and pid.startswith(n.address + "/"))


try:
    a = start("a", hosts[0], [hosts[0]])
    b = start("b", hosts[1], [hosts[0]])
    c = start("c", hosts[2], [hosts[0]])
    three = [a, b, c]
    check("three nodes with the grains plugin form one cluster", all_alive(three, "abc"),
          str({n.name: n.members() for n in three}))
    check("each member says which grain kinds it hosts, in which version",
          all({g["kind"]: g["version"] for g in m["grains"]}.get("grains.counter") == "1.0.0"
              for m in a.members().values()), str(a.members()))

    # ---- one counter, called from every node
    seen = []
    for n in three:
        seen.append(value(n, "grains.counter", "c42", "grains.Add", {"by": 1}))
    check("a counter grain called from each of three nodes sees one value",
          [s for s, _ in seen] == [200] * 3 and [v.get("value") for _, v in seen] == [1, 2, 3]
          and len({v.get("pid") for _, v in seen}) == 1, str(seen))
    check("the grain knows its identity", seen[0][1].get("identity") == "c42", str(seen[0]))
    owner = node_of(seen[0][1]["pid"])
    r = a.ctl("call", "grains.counter/c42", "grains.Get", "{}")
    check("troupectl call prints the grain's reply as JSON",
          r.returncode == 0 and json.loads(r.stdout).get("value") == 3, r.stdout + r.stderr)
    status, body = owner.call("GET", "/v1/grains?kind=grains.counter")
    check("GET /v1/grains lists the activation on its owner",
          status == 200 and [(g["kind"], g["identity"]) for g in body["grains"]] == [("grains.counter", "c42")],
          str(body))
    others = [n for n in three if n is not owner]
    check("and no other node has one",
          all(n.call("GET", "/v1/grains")[1]["total"] == 0 for n in others), "")
    r = owner.ctl("grains")
    check("troupectl grains shows it", r.returncode == 0 and "grains.counter" in r.stdout and "c42" in r.stdout,
          r.stdout + r.stderr)

    # ---- errors a client can act on
    status, body = call(a, "grains.counter", "c42", "grains.Nope", {})
    check("an unknown message type is a 400", status == 400 and body["error"]["code"] == "unknown_type", str(body))
    status, body = call(a, "no.such.kind", "x", "grains.Get", {})
    check("a kind no member hosts is a 404 that says so",
          status == 404 and body["error"]["code"] == "no_host" and "no.such.kind" in body["error"]["message"],
          str(body))
    t0 = time.time()
    status, body = call(b, "grains.broken", "x", "grains.Get", {}, timeout_ms=10000)
    took = time.time() - t0
    check("a grain whose constructor throws is an error for its caller at once, saying why",
          status == 500 and body["error"]["code"] == "activation_failed"
          and "broken on purpose" in body["error"]["message"] and took < 2.0, f"{took:.2f}s {status} {body}")

    # ---- the SDK: a plugin's actor calls grains with ctx.grain()
    status, body = b.spawn("grains.caller", "caller")
    check("a plain actor of the plugin spawns", status == 201, str(body))
    status, body = b.request("caller", "grains.CallGrain", {"kind": "grains.counter", "identity": "c42", "by": 10})
    check("ctx.grain().request() reaches the grain; on_reply answers the caller's own asker",
          status == 200 and body["type"] == "grains.Value" and body["message"]["value"] == 13, str(body))
    status, body = b.request("caller", "grains.CallGrain", {"kind": "grains.broken", "identity": "y", "by": 1})
    check("ctx.grain().request() to a failing grain: on_reply gets the error",
          status == 200 and body["type"] == "grains.CallFailed" and "broken on purpose" in body["message"]["error"]
          and body["message"]["status"] == 3, str(body))

    # ---- 1,000 concurrent first calls to 10 identities: 10 activations
    before = activations(three, "grains.counter")
    jobs = [(three[i % 3], f"many-{i % 10}") for i in range(1000)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=48) as pool:
        results = list(pool.map(lambda j: value(j[0], "grains.counter", j[1], "grains.Add", {"by": 1}, 20000), jobs))
    made = activations(three, "grains.counter") - before
    finals = [value(a, "grains.counter", f"many-{i}")[1].get("value") for i in range(10)]
    check("1,000 concurrent first calls to 10 identities make exactly 10 activations, and none is lost",
          all(s == 200 for s, _ in results) and made == 10 and finals == [100] * 10,
          f"made {made}, finals {finals}, errors {[r for r in results if r[0] != 200][:3]}")

    # ---- passivation: idle (timers do not count), and on request
    status, v1 = value(c, "grains.brief", "b1", "grains.Tick", {"every_ms": 100})
    brief_owner = node_of(v1["pid"]) if status == 200 else c
    passivated = poll(lambda: metric(brief_owner.scrape(), "troupe_grain_passivations_total",
                                     '{kind="grains.brief",reason="idle"}') or 0, lambda v: v >= 1, 8)
    check("a grain idle past its kind's timeout is passivated, though its own timer ticks", passivated >= 1,
          str(passivated))
    status, v2 = value(a, "grains.brief", "b1", "grains.Add", {"by": 5})
    check("its next call activates it again, afresh", status == 200 and v2.get("value") == 5, str(v2))
    value(a, "grains.counter", "p1", "grains.Add", {"by": 7})
    status, v3 = value(a, "grains.counter", "p1", "grains.Passivate")
    time.sleep(0.3)
    status, v4 = value(b, "grains.counter", "p1")
    p1_owner = node_of(v3["pid"])
    check("a grain that asks to be passivated is, and its next call activates it again",
          v3.get("value") == 7 and v4.get("value") == 0 and v4.get("pid") != v3.get("pid")
          and (metric(p1_owner.scrape(), "troupe_grain_passivations_total",
                      '{kind="grains.counter",reason="requested"}') or 0) >= 1, f"{v3} {v4}")

    text = a.scrape()
    check("metrics: calls by kind and result, the activation time histogram",
          (metric(text, "troupe_grain_calls_total", '{kind="grains.counter",result="ok"}') or 0) >= 300
          and (metric(text, "troupe_grain_calls_total", '{kind="no.such.kind",result="no_host"}') or 0) == 1
          and "troupe_grain_activation_seconds_bucket" in text, "")

    # ---- the activation limit and the memory budget (clusters of one node)
    solo = start("solo", hosts[5], [hosts[5]], cluster="solo", extra="cluster: { max_activations: 5 }\n")
    for i in range(8):
        value(solo, "grains.counter", f"l{i}", "grains.Add", {"by": 1})
        time.sleep(0.05)  # so that their last activity is in this order
    kept = poll(lambda: sorted(g["identity"] for g in solo.call("GET", "/v1/grains")[1]["grains"]),
                lambda v: len(v) <= 5, 5)
    text = solo.scrape()
    check("over the activation limit, the oldest idle grains are passivated",
          kept == [f"l{i}" for i in range(3, 8)]
          and metric(text, "troupe_grain_passivations_total", '{kind="grains.counter",reason="limit"}') == 3
          and metric(text, "troupe_grains_active", '{kind="grains.counter"}') == 5, f"{kept}")
    lean = start("lean", hosts[6], [hosts[6]], cluster="lean", extra="cluster: { max_memory_mb: 1 }\n")
    for i in range(20):
        value(lean, "grains.counter", f"m{i}", "grains.Add", {"by": 1})
    by_memory = poll(lambda: metric(lean.scrape(), "troupe_grain_passivations_total",
                                    '{kind="grains.counter",reason="memory"}') or 0, lambda v: v >= 4, 8)
    check("over the memory budget, idle grains are passivated a tenth at a time", by_memory >= 4, str(by_memory))
    solo.stop()
    lean.stop()

    # ---- five members from here on (one killed and one paused leave a majority)
    d = start("d", hosts[3], [hosts[0]])
    e = start("e", hosts[4], [hosts[0]])
    five = [a, b, c, d, e]
    check("five members", all_alive(five, "abcde"), str({n.name: n.members() for n in five}))

    def owned_elsewhere(prefix, caller):
        """An identity whose activation (made now, at 100) is not on `caller`."""
        for i in range(100):
            status, v = value(caller, "grains.counter", f"{prefix}{i}", "grains.Add", {"by": 100})
            if status == 200 and not v["pid"].startswith(caller.address + "/"):
                return f"{prefix}{i}", v["pid"], node_of(v["pid"])
        raise AssertionError("every identity landed on " + caller.name)

    # ---- the owner killed with kill -9
    ident, old, victim = owned_elsewhere("k", a)
    retries = metric(a.scrape(), "troupe_grain_call_retries_total") or 0
    victim.p.kill()
    victim.p.wait()
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        res = list(pool.map(lambda _: value(a, "grains.counter", ident, "grains.Add", {"by": 1}, 30000), range(3)))
    took = time.time() - t0
    check("the owner killed with kill -9: calls made meanwhile are retried, then answered by a new "
          "activation elsewhere after the dead verdict",
          [s for s, _ in res] == [200] * 3 and sorted(v.get("value") for _, v in res) == [1, 2, 3]
          and not any(v["pid"].startswith(victim.address + "/") for _, v in res) and a.said_dead(victim.name)
          and (metric(a.scrape(), "troupe_grain_call_retries_total") or 0) > retries,
          f"{took:.1f}s {res}")
    live = [n for n in five if n is not victim]

    # ---- a node paused past its dead verdict
    ident, old, paused = owned_elsewhere("s", a)
    paused.p.send_signal(signal.SIGSTOP)
    try:
        verdict = poll(lambda: a.members().get(paused.name, {}).get("status"), lambda s: s == "dead", 30)
        status, moved = value(a, "grains.counter", ident, "grains.Add", {"by": 1}, 20000)
    finally:
        paused.p.send_signal(signal.SIGCONT)
    # At once, on the node that was paused: its old activation (at 100) must not answer.
    status2, after = value(paused, "grains.counter", ident, "grains.Get", None, 20000)
    check("while a node is paused past its dead verdict, its grains are activated elsewhere",
          verdict == "dead" and status == 200 and moved.get("value") == 1, f"{verdict} {status} {moved}")
    check("a node paused past its dead verdict has stopped its activations before it serves again",
          status2 == 200 and after.get("value", 100) < 100 and after.get("pid") != old, f"{status2} {after}")
    fenced = poll(lambda: metric(paused.scrape(), "troupe_grain_passivations_total",
                                 '{kind="grains.counter",reason="fenced"}') or 0, lambda v: v >= 1, 10)
    check("it says it was fenced, and counts the activations it stopped",
          fenced >= 1 and paused.err.has("grains: fenced", 5), str(fenced))
    status, body = paused.call("GET", "/v1/grains")
    check("and its old activation is gone from its list",
          status == 200 and old.split("/", 1)[1] not in [g["id"] for g in body["grains"]], str(body))

finally:
    w.stop_all()

finish()
