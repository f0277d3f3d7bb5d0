#!/usr/bin/env python3
"""Grains between real troupe-node processes (TLS on), three nodes on their
own loopback addresses, each call made by a plugin's actor through the SDK
(Context::grain, test/plugins/grains.cpp) and timed there. Prints bench=
lines (medians of RUNS runs):

  grain_call_local_p50/p99    us per call, caller and grain on one node,
                              one call at a time, the grain active
  grain_call_remote_p50/p99   the same with the grain on another node
  grain_plain_remote_p50/p99  the same request to a plain actor on that
                              node (no grain): the transport's round trip
                              through the same plugin path, for comparison
  grain_calls_w1000           calls/s, 1,000 in flight over 10,000 active
                              identities spread over the 3 nodes
  grain_activations           new identities activated per second, calls
                              from all 3 nodes at once (1,000 in flight each)

usage: grain_bench.py TROUPE_NODE BUILD_ROOT [PREFIX] [RUNS]
"""
import concurrent.futures
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import nodes as nodes_mod  # noqa: E402
from nodes import free_port  # noqa: E402


def main(argv):
    node_bin, build_root = argv[:2]
    only = argv[2] if len(argv) > 2 else ""
    runs = int(argv[3]) if len(argv) > 3 else 3
    names = ["grain_call_local", "grain_call_remote", "grain_plain_remote", "grain_calls_w1000",
             "grain_activations"]
    if only and not any(n.startswith(only) or only.startswith(n) for n in names):
        return 0
    tmp = tempfile.mkdtemp()
    w = nodes_mod.world(node_bin, node_bin, build_root, tmp)
    shutil.copy(os.path.join(build_root, "test", "plugins", "grains.so"), w.plugin_dir)
    key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
    hosts = [f"127.0.0.{i}" for i in (2, 3, 4)]
    addr = {h: f"{h}:{free_port(h)}" for h in hosts}
    try:
        ns = [nodes_mod.node(w, f"g{i}", key=key, listen=addr[h], seeds=[addr[hosts[0]]],
                             plugins=("echo", "grains"), kinds="grains.counter: { grain: { idle_timeout: 1h } }")
              for i, h in enumerate(hosts)]
        a, b = ns[0], ns[1]
        nodes_mod.poll(lambda: all(len([m for m in n.members().values() if m["status"] == "alive"]) == 3 for n in ns),
                       lambda ok: ok, 20)
        for n in ns:
            status, body = n.spawn("grains.driver", "driver")
            assert status == 201, body

        # A prefix whose identity 0 (the driver calls PREFIX + "0" when
        # given one identity) is active on node n.
        def owned_by(n, prefix):
            for i in range(1000):
                status, body = a.call("POST", f"/v1/grains/grains.counter/{prefix}{i}-0/grains.Get", {})
                if status == 200 and body["message"]["pid"].startswith(n.address + "/"):
                    return f"{prefix}{i}-"
            raise RuntimeError("no identity lands on " + n.name)

        def drive(n, **m):
            status, body = n.request("driver", "grains.Drive", m, timeout_ms=60000)
            assert status == 200 and body["type"] == "grains.Report", body
            r = body["message"]
            assert r.get("errors", 0) == 0, r
            return r

        def emit(name, value, unit):
            if not only or name.startswith(only):
                print(f"bench={name} value={value:.3f} unit={unit}" if value < 1000 else
                      f"bench={name} value={value:.0f} unit={unit}", flush=True)

        def want(name):
            return not only or name.startswith(only) or only.startswith(name)

        def latency(name, n, **m):
            if not want(name):
                return
            drive(n, **m, calls=2000)  # warm
            rs = [drive(n, **m, calls=20000) for _ in range(runs)]
            emit(name + "_p50", statistics.median(r["p50_us"] for r in rs), "us")
            emit(name + "_p99", statistics.median(r["p99_us"] for r in rs), "us")

        local = owned_by(a, "local-")
        latency("grain_call_local", a, kind="grains.counter", prefix=local, identities=1, window=1)
        remote = owned_by(b, "remote-")
        latency("grain_call_remote", a, kind="grains.counter", prefix=remote, identities=1, window=1)
        if want("grain_plain_remote"):
            status, body = b.spawn("grains.counter", "plain")
            assert status == 201, body
        latency("grain_plain_remote", a, plain=f"{b.address}/plain", window=1)

        if want("grain_calls_w1000"):
            drive(a, kind="grains.counter", prefix="w-", identities=10000, calls=10000, window=1000)  # activate
            rs = [drive(a, kind="grains.counter", prefix="w-", identities=10000, calls=200000, window=1000)
                  for _ in range(runs)]
            emit("grain_calls_w1000", statistics.median(r["calls"] / r["seconds"] for r in rs), "calls/s")

        if want("grain_activations"):
            rates = []
            for run in range(runs):
                per = 60000
                with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
                    rs = list(pool.map(lambda n: drive(n, kind="grains.counter", prefix=f"new-{run}-{n.name}-",
                                                       identities=per, calls=per, window=1000), ns))
                rates.append(sum(r["calls"] for r in rs) / max(r["seconds"] for r in rs))
            emit("grain_activations", statistics.median(rates), "activations/s")
    finally:
        w.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
