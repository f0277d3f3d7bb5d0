#!/usr/bin/env python3
"""Grains with cluster.moved_activations: keep, between real troupe-node
processes on their own loopback addresses (test/plugins/grains.cpp's
counter): when a fourth node joins, no activation stops; the grains whose
partitions moved to it keep their activation (and its state) where it runs,
and a caller with an empty cache, on the new node, reaches that one; one of
them that passivates is activated afresh by its new owner on its next call;
a node that leaves with SIGTERM stops what it kept, and its grains answer
from elsewhere; never two activations of one identity.

usage: grains_keep_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time
from collections import Counter

import nodes as nodes_mod
from harness import check, finish
from nodes import free_port, metric, poll

NODE, CTL, BUILD_ROOT = sys.argv[1:4]
KIND = "grains.counter"
N = 300

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", "grains.so"), w.plugin_dir)
key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
hosts = [f"127.0.0.{i}" for i in range(2, 6)]
addr = {h: f"{h}:{free_port(h)}" for h in hosts}


def start(name, host):
    return nodes_mod.node(w, name, key=key, listen=addr[host], seeds=[addr[hosts[0]]], plugins=("grains",),
                          kinds=f"{KIND}: {{ grain: {{ idle_timeout: 10m }} }}",
                          extra="cluster: { moved_activations: keep }\n")


def value(n, identity, type_="grains.Get", message=None, timeout_ms=10000):
    status, body = n.call("POST", f"/v1/grains/{KIND}/{identity}/{type_}?timeout_ms={timeout_ms}", message or {})
    return status, body.get("message", {}) if status == 200 else body


def call_all(n, type_="grains.Get", message=None):
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(range(N), pool.map(lambda i: value(n, f"k{i}", type_, message), range(N))))


def alive(ns):
    names = {n.name for n in ns}
    return all({k for k, m in n.members().items() if m["status"] == "alive"} == names for n in ns)


def settled(ns):
    return sum(metric(n.scrape(), "troupe_grain_partitions", '{state="moving"}') or 0 for n in ns) == 0


def moved(ns):
    return sum(metric(n.scrape(), "troupe_grain_passivations_total", f'{{kind="{KIND}",reason="moved"}}') or 0
               for n in ns)


def listed(ns):
    """Identity -> how many nodes list an activation of it."""
    seen = Counter()
    for n in ns:
        status, body = n.call("GET", f"/v1/grains?kind={KIND}&limit=100000")
        for g in body.get("grains", []) if status == 200 else []:
            seen[g["identity"]] += 1
    return seen


try:
    a, b, c = start("a", hosts[0]), start("b", hosts[1]), start("c", hosts[2])
    three = [a, b, c]
    check("three nodes form one cluster", poll(lambda: alive(three), lambda ok: ok, 30), "")
    first = call_all(a, "grains.Add", {"by": 1})
    check(f"{N} grains activated, each at 1", all(s == 200 and v.get("value") == 1 for s, v in first.values()),
          str([x for x in first.values() if x[0] != 200][:3]))
    pid = {i: v["pid"] for i, (s, v) in first.items()}

    d = start("d", hosts[3])
    four = three + [d]
    def held(n):
        return metric(n.scrape(), "troupe_grain_partitions", '{state="held"}') or 0

    check("a fourth node joins, and every partition settles",
          poll(lambda: alive(four) and held(d) > 0 and settled(four), lambda ok: ok, 60), "")
    check("the join stopped no activation", moved(four) == 0, str(moved(four)))
    total = sum(held(n) for n in four)
    check("the new node holds its share of the partitions (of every grain kind)",
          total / 8 < held(d) < total / 2, f"{held(d)} of {total}")

    def kept(n, where):
        return metric(n.scrape(), "troupe_grain_activations_kept", f'{{where="{where}"}}') or 0

    counts = poll(lambda: (sum(kept(n, "here") for n in three), kept(d, "elsewhere")),
                  lambda v: v[0] > 0 and v[0] == v[1], 5)
    check("the old nodes keep the activations of the partitions the new one holds, and it answers for them",
          N / 8 < counts[0] < N / 2 and counts[0] == counts[1], f"{counts[0]} kept, {counts[1]} answered for")

    # From the new node, whose cache is empty: each grain answers from the
    # activation it had, with its state.
    again = call_all(d, "grains.Add", {"by": 1})
    check("from the new node, every grain answers from the activation it had, with its state (2)",
          all(s == 200 and v.get("value") == 2 and v.get("pid") == pid[i] for i, (s, v) in again.items()),
          str([(i, x) for i, x in again.items() if x[0] != 200 or x[1].get("value") != 2][:3]))
    check("no activation on the new node yet", not any(p.startswith(d.address + "/") for p in pid.values()), "")

    # One whose directory moved to d passivates: d activates it afresh.
    kept = None
    for i in range(N):
        s, v = value(d, f"k{i}", "grains.Passivate")
        if s == 200:
            time.sleep(0.3)
            s2, v2 = value(d, f"k{i}")
            if s2 == 200 and v2.get("pid", "").startswith(d.address + "/"):
                kept = (i, v, v2)
                break
    check("a kept activation that passivates is activated again, afresh, by the partition's new holder",
          kept is not None and kept[2].get("value") == 0, str(kept))

    # b leaves: what it ran (kept or held) stops, and answers from elsewhere.
    on_b = [i for i, p in pid.items() if p.startswith(b.address + "/")]
    b.stop()
    w.nodes.remove(b)
    rest = [a, c, d]
    check("b leaves with SIGTERM", poll(lambda: alive(rest) and settled(rest), lambda ok: ok, 60), "")
    after = call_all(a)
    check("after b left, every grain answers; those b ran start afresh elsewhere",
          all(s == 200 for s, v in after.values())
          and all(after[i][1].get("value") == 0 and not after[i][1]["pid"].startswith(b.address + "/")
                  for i in on_b)
          and all(after[i][1].get("value") in (1, 2) for i in range(N) if i not in on_b
                  and (kept is None or i != kept[0])),
          str([(i, after[i]) for i in on_b[:3]]))
    twice = {k: v for k, v in listed(rest).items() if v > 1}
    check("never two activations of one identity", len(on_b) > 0 and not twice, f"{len(on_b)} on b; {twice}")
finally:
    w.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)

finish()
