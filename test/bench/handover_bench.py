#!/usr/bin/env python3
"""What a join costs the grains, with each way a node gives up a partition
(cluster.moved_activations: stop, the default, then keep): five
troupe-node processes (TLS on) on their own loopback addresses, 10,000
active identities of a counter grain (test/plugins/grains.cpp), then a
sixth node joins. Prints bench= lines (medians of RUNS joins; the sixth
leaves with SIGTERM between them):

  grain_moves_on_join       activations stopped because their partition
                            moved, per join (5 -> 6 nodes, 10,000 active)
  grain_handover_join_p99   ms a call waits for an identity that moves,
                            under load: 32 callers call those 10,000
                            identities through the first five nodes' admin
                            APIs while the sixth joins; the p99 of the calls
                            to identities that end up on the new node, made
                            from the join until every partition has moved
                            (an HTTP round trip included)
  grain_join_call_p99       the p99 of every call made in that time
  ..._keep                  the same with moved_activations: keep. Nothing
                            moves to the new node then (its activations stay
                            where they run until they passivate), so there is
                            no grain_handover_join_p99_keep: every call of
                            the window counts in grain_join_call_p99_keep.

usage: handover_bench.py TROUPE_NODE BUILD_ROOT [PREFIX] [RUNS]
"""
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import nodes as nodes_mod  # noqa: E402
from nodes import free_port, metric  # noqa: E402

IDENTITIES, CALLERS = 10000, 32
KIND = "grains.counter"


def main(argv):
    node_bin, build_root = argv[:2]
    only = argv[2] if len(argv) > 2 else ""
    runs = int(argv[3]) if len(argv) > 3 else 3
    for mode, suffix in (("stop", ""), ("keep", "_keep")):
        names = [n + suffix for n in ("grain_moves_on_join", "grain_handover_join_p99", "grain_join_call_p99")]
        wanted = [n for n in names if not only or n.startswith(only) or only.startswith(n)]
        if wanted:
            measure(node_bin, build_root, mode, runs, suffix, wanted)
    return 0


def measure(node_bin, build_root, mode, runs, suffix, wanted):
    tmp = tempfile.mkdtemp()
    w = nodes_mod.world(node_bin, node_bin, build_root, tmp)
    shutil.copy(os.path.join(build_root, "test", "plugins", "grains.so"), w.plugin_dir)
    key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
    hosts = [f"127.0.0.{i}" for i in range(2, 8)]
    addr = {h: f"{h}:{free_port(h)}" for h in hosts}
    seeds = [addr[h] for h in hosts[:3]]

    def start(i):
        return nodes_mod.node(w, f"h{i}", key=key, listen=addr[hosts[i]], seeds=seeds, plugins=("echo", "grains"),
                              kinds=f"{KIND}: {{ grain: {{ idle_timeout: 1h }} }}",
                              extra=f"cluster: {{ moved_activations: {mode} }}\n")

    def alive(ns):
        return all(len([m for m in n.members().values() if m["status"] == "alive"]) == len(ns) for n in ns)

    def total(ns, name, labels):
        return sum(metric(n.scrape(), name, labels) or 0 for n in ns)

    def settled(ns):
        return total(ns, "troupe_grain_partitions", '{state="moving"}') == 0

    try:
        five = [start(i) for i in range(5)]
        nodes_mod.poll(lambda: alive(five), lambda ok: ok, 30)
        status, body = five[0].spawn("grains.driver", "driver")
        assert status == 201, body
        status, body = five[0].request("driver", "grains.Drive", {"kind": KIND, "prefix": "j-", "identities": IDENTITIES,
                                                                 "calls": IDENTITIES, "window": 1000},
                                       timeout_ms=60000)
        assert status == 200 and body["message"].get("errors", 0) == 0, body
        moves, waits, all_waits = [], [], []
        for run in range(runs):
            stop = threading.Event()
            lock = threading.Lock()
            samples = []  # (sent at, ms, identity, pid)

            def caller(k):
                n = five[k % len(five)]
                host, port = n.admin.split("//")[1].rsplit(":", 1)
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                i = k
                while not stop.is_set():
                    identity = f"j-{i % IDENTITIES}"
                    i += CALLERS
                    t0 = time.monotonic()
                    conn.request("POST", f"/v1/grains/{KIND}/{identity}/grains.Get?timeout_ms=5000", body="{}",
                                 headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    data = json.loads(r.read())
                    ms = (time.monotonic() - t0) * 1000
                    pid = data.get("message", {}).get("pid", "") if r.status == 200 else ""
                    with lock:
                        samples.append((t0, ms, identity, pid))

            threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(CALLERS)]
            for t in threads:
                t.start()
            time.sleep(2)
            moved_before = total(five, "troupe_grain_passivations_total", f'{{kind="{KIND}",reason="moved"}}')
            joined_at = time.monotonic()
            sixth = start(5)
            six = five + [sixth]
            nodes_mod.poll(lambda: alive(six) and settled(six), lambda ok: ok, 60)
            done_at = time.monotonic()
            time.sleep(1)
            stop.set()
            for t in threads:
                t.join()
            moves.append(total(five, "troupe_grain_passivations_total", f'{{kind="{KIND}",reason="moved"}}') -
                         moved_before)
            moving = [ms for t0, ms, identity, pid in samples
                      if joined_at <= t0 <= done_at and pid.startswith(sixth.address + "/")]
            moving.sort()
            if moving:
                waits.append(moving[min(len(moving) - 1, int(len(moving) * 0.99))])
            window = sorted(ms for t0, ms, identity, pid in samples if joined_at <= t0 <= done_at)
            if window:
                all_waits.append(window[min(len(window) - 1, int(len(window) * 0.99))])
            print(f"info: {mode}, join {run + 1}: {moves[-1]:.0f} activations moved, {len(moving)} calls to moving "
                  f"identities and {len(window)} in all in {done_at - joined_at:.2f} s", file=sys.stderr, flush=True)
            # The sixth leaves (handing its grains back) for the next run.
            sixth.stop()
            w.nodes.remove(sixth)
            nodes_mod.poll(lambda: alive(five) and settled(five), lambda ok: ok, 60)
        results = {"grain_moves_on_join": (moves, "{:.0f}", "activations"),
                   "grain_handover_join_p99": (waits, "{:.3f}", "ms"),
                   "grain_join_call_p99": (all_waits, "{:.3f}", "ms")}
        for name, (values, fmt, unit) in results.items():
            if name + suffix in wanted and values:
                print(f"bench={name}{suffix} value={fmt.format(statistics.median(values))} unit={unit}", flush=True)
    finally:
        w.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
