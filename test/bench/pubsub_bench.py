#!/usr/bin/env python3
"""Cluster pub-sub between real troupe-node processes (TLS on), three nodes
on their own loopback addresses, with the pub-sub test plugin
(test/plugins/pubsub_probe.cpp): one publisher (pubsub.driver) on the
first node, 100 subscribers (pubsub.counter, counting in their handlers)
spread over the three. Prints bench= lines (medians of RUNS runs):

  pubsub_fanout_100           deliveries/s: 100,000 messages published flat
                              out, counted by the subscribers, from the
                              first delivery to the last
  pubsub_publish_p50/p99      us from publish to the last subscriber's
                              receipt, 1,000 messages a second for 5 s
                              (CLOCK_MONOTONIC, shared by the processes)

usage: pubsub_bench.py TROUPE_NODE BUILD_ROOT [PREFIX] [RUNS]
"""
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import nodes as nodes_mod  # noqa: E402
from nodes import free_port  # noqa: E402

SUBSCRIBERS = 100
TOPIC = "bench"


def main(argv):
    node_bin, build_root = argv[:2]
    only = argv[2] if len(argv) > 2 else ""
    runs = int(argv[3]) if len(argv) > 3 else 3
    names = ["pubsub_fanout_100", "pubsub_publish_p50", "pubsub_publish_p99"]
    if only and not any(n.startswith(only) or only.startswith(n) for n in names):
        return 0

    def want(name):
        return not only or name.startswith(only) or only.startswith(name)

    def emit(name, value, unit):
        if want(name):
            print(f"bench={name} value={value:.3f} unit={unit}" if value < 1000 else
                  f"bench={name} value={value:.0f} unit={unit}", flush=True)

    tmp = tempfile.mkdtemp()
    w = nodes_mod.world(node_bin, node_bin, build_root, tmp)
    shutil.copy(os.path.join(build_root, "test", "plugins", "pubsub_probe.so"), w.plugin_dir)
    key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
    hosts = [f"127.0.0.{i}" for i in (2, 3, 4)]
    addr = {h: f"{h}:{free_port(h)}" for h in hosts}
    try:
        ns = [nodes_mod.node(w, f"p{i}", key=key, listen=addr[h], seeds=[addr[hosts[0]]],
                             plugins=("echo", "pubsub_probe"),
                             # Room for a burst: a subscriber that falls behind is what is measured.
                             kinds="echo: {}, pubsub.counter: { mailbox: { capacity: 1000000 } }")
              for i, h in enumerate(hosts)]
        nodes_mod.poll(lambda: all(len([m for m in n.members().values() if m["status"] == "alive"]) == 3 for n in ns),
                       lambda ok: ok, 20)
        subs = []
        for i in range(SUBSCRIBERS):
            n = ns[i % 3]
            status, body = n.spawn("pubsub.counter", f"c{i}")
            assert status == 201, body
            status, body = n.request(f"c{i}", "pubsub_probe.Join", {"topic": TOPIC}, timeout_ms=20000)
            assert status == 200 and body["message"]["ok"], body
            subs.append((n, f"c{i}"))
        pub = ns[0]
        status, body = pub.spawn("pubsub.driver", "driver")
        assert status == 201, body

        def counts():
            out = []
            for n, name in subs:
                status, body = n.request(name, "pubsub_probe.Counts", {}, timeout_ms=20000)
                assert status == 200, body
                out.append(body["message"])
            return out

        def reset():
            for n, name in subs:
                status, body = n.request(name, "pubsub_probe.Reset", {}, timeout_ms=20000)
                assert status == 200, body

        def drive(count, rate=0, stamp=False):
            status, body = pub.request("driver", "pubsub_probe.Drive",
                                       {"topic": TOPIC, "count": count, "rate": rate, "stamp": stamp},
                                       timeout_ms=60000)
            assert status == 200 and body["type"] == "pubsub_probe.Driven", body
            return body["message"]

        def all_in(total, timeout=60.0):
            deadline = time.time() + timeout
            while time.time() < deadline:
                cs = counts()
                if sum(c.get("count", 0) for c in cs) >= total:
                    return cs
                time.sleep(0.2)
            raise RuntimeError(f"only {sum(c.get('count', 0) for c in counts())} of {total} deliveries arrived; "
                               "troupe_pubsub_delivery_failures_total: " +
                               str([nodes_mod.metric(n.scrape(), "troupe_pubsub_delivery_failures_total",
                                                     '{reason="mailbox_full"}') for n in ns]))

        if want("pubsub_fanout_100"):
            reset()
            drive(2000)
            all_in(2000 * SUBSCRIBERS)  # warm
            rates = []
            for _ in range(runs):
                reset()
                m = 100000
                drive(m)
                cs = all_in(m * SUBSCRIBERS, 120)
                first = min(c["first_ns"] for c in cs)
                last = max(c["last_ns"] for c in cs)
                rates.append(sum(c["count"] for c in cs) / ((last - first) / 1e9))
            emit("pubsub_fanout_100", statistics.median(rates), "deliveries/s")

        if want("pubsub_publish_p50") or want("pubsub_publish_p99"):
            p50s, p99s = [], []
            for _ in range(runs):
                reset()
                m = 5000
                drive(m, rate=1000, stamp=True)
                cs = all_in(m * SUBSCRIBERS)
                worst = {}
                for c in cs:
                    for n, lat in zip(c.get("numbers", []), c.get("latencies_ns", [])):
                        worst[n] = max(worst.get(n, 0), lat)
                lats = sorted(worst.values())
                p50s.append(lats[len(lats) // 2] / 1000)
                p99s.append(lats[min(len(lats) - 1, len(lats) * 99 // 100)] / 1000)
            emit("pubsub_publish_p50", statistics.median(p50s), "us")
            emit("pubsub_publish_p99", statistics.median(p99s), "us")
    finally:
        w.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
