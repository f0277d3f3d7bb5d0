#!/usr/bin/env python3
"""Cluster membership between real troupe-node processes (TLS on), inside a
network namespace of its own with each node on its own loopback address;
faults and byte counts come from nftables rules. Prints bench= lines:

  cluster_join_16            seconds from the exec of a 16th node until all
                             16 list it alive
  cluster_detect_5_p50/p90   seconds from a blackhole of one of 5 nodes (an
                             nftables drop, not kill -9) until the 4 others
                             mark it dead, over 9 runs
  cluster_bytes_16           bytes between nodes per second per node, idle,
                             16 nodes (nftables counters)
  cluster_false_deaths_loss20  dead verdicts for live nodes during 60 s of
                             20% loss at 5 nodes
  cluster_detect_etcd_5_p50/p90  with membership from etcd (a server of its
                             own, test/integration/etcd.py): seconds from a
                             blackhole of one of 5 nodes (SIGSTOP: its keep-
                             alives stop with everything else) until the 4
                             others mark it dead, over 9 runs; the goal is
                             the lease TTL etcd granted plus 1 s

Needs root, ip and nft; without them it says so and prints nothing.

usage: cluster_bench.py TROUPE_NODE BUILD_ROOT [PREFIX]
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))


def outer(argv):
    import netns
    if not netns.usable():
        print("cluster_bench: skipped: needs root, ip and nft (scripts/install-deps installs them)", file=sys.stderr)
        return 0
    return netns.run_inside(__file__, argv, "troupe-bench")


def inner(argv):
    import nodes as nodes_mod
    from netns import nft

    node_bin, build_root = argv[:2]
    only = argv[2] if len(argv) > 2 else ""
    tmp = tempfile.mkdtemp()
    w = nodes_mod.world(node_bin, node_bin, build_root, tmp)
    key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")

    def host(i):
        return f"127.0.0.{i + 2}"

    nft("table inet bench {", "  chain out { type filter hook output priority 0; policy accept; }", "}")

    def clear():
        nft("flush chain inet bench out")

    def start(i, seeds=(0,)):
        return nodes_mod.node(w, f"n{i}", key=key, listen=f"{host(i)}:7700",
                              seeds=[f"{host(s)}:7700" for s in seeds], plugins=("echo",))

    def sees(n, name, status):
        return n.members().get(name, {}).get("status") == status

    def cluster(count):
        ns = [start(i) for i in range(count)]
        names = [n.name for n in ns]
        deadline = time.time() + 60
        while time.time() < deadline:
            if all(all(sees(n, m, "alive") for m in names) for n in ns):
                return ns
            time.sleep(0.1)
        raise RuntimeError("the cluster did not form")

    def stop(ns):
        for n in ns:
            if n.p.poll() is None:
                n.p.kill()
                n.p.wait()

    def emit(name, value, unit):
        print(f"bench={name} value={value:.3f} unit={unit}", flush=True)

    def want(name):
        return name.startswith(only) or only.startswith(name) or not only

    try:
        if want("cluster_join_16") or want("cluster_bytes_16"):  # both need 16 nodes
            ns = cluster(15)
            t0 = time.time()
            ns.append(start(15))
            while not all(sees(n, "n15", "alive") for n in ns) and time.time() - t0 < 60:
                time.sleep(0.02)
            if want("cluster_join_16"):
                emit("cluster_join_16", time.time() - t0, "s")
            if want("cluster_bytes_16"):
                time.sleep(5)  # past the join's news
                # One counter for the datagrams (probes, gossip), one for the
                # TLS links (full-state exchanges, their heartbeats and acks).
                for proto in ("udp", "tcp"):
                    nft(f"add rule inet bench out ip saddr 127.0.0.2-127.0.0.17 ip daddr 127.0.0.2-127.0.0.17 "
                        f"meta l4proto {proto} counter")

                def counted():
                    out = subprocess.run(["nft", "list", "chain", "inet", "bench", "out"], capture_output=True,
                                         text=True).stdout
                    return [int(part.split()[0]) for part in out.split("bytes ")[1:]]
                before, t1 = counted(), time.time()
                time.sleep(60)
                per = [(a - b) / (time.time() - t1) / 16 for a, b in zip(counted(), before)]
                emit("cluster_bytes_16", sum(per), "bytes")
                print(f"cluster_bytes_16: {per[0]:.0f} bytes of datagrams and {per[1]:.0f} of TLS links "
                      "a second per node", file=sys.stderr)
                clear()
            stop(ns)
        if want("cluster_detect_5"):
            took = []
            for run in range(9):  # the median of few runs moves by a second
                ns = cluster(5)
                victim = 1 + run % 4
                name = f"n{victim}"
                nft(f"add rule inet bench out ip saddr {host(victim)} drop",
                    f"add rule inet bench out ip daddr {host(victim)} drop")
                t0 = time.time()
                others = [n for n in ns if n.name != name]
                while not all(sees(n, name, "dead") for n in others) and time.time() - t0 < 120:
                    time.sleep(0.05)
                took.append(time.time() - t0)
                clear()
                stop(ns)
            took.sort()
            emit("cluster_detect_5_p50", statistics.median(took), "s")
            emit("cluster_detect_5_p90", took[min(len(took) - 1, int(0.9 * len(took)))], "s")
        if want("cluster_detect_etcd_5"):
            import signal
            import etcd as etcd_mod
            server = etcd_mod.cluster(1, tmp)
            extra = (f"cluster: {{ provider: etcd, etcd: {{ endpoints: [{server.endpoints()[0]}], lease_ttl: 3s,"
                     " request_timeout: 1s } }\n")
            took, ttl = [], 0
            try:
                for run in range(9):
                    ns = [nodes_mod.node(w, f"e{run}x{i}", key=key, listen=f"{host(i)}:0", cluster=f"bench{run}",
                                         plugins=("echo",), extra=extra) for i in range(5)]
                    names = [n.name for n in ns]
                    deadline = time.time() + 60
                    while time.time() < deadline and not all(all(sees(n, m, "alive") for m in names) for n in ns):
                        time.sleep(0.05)
                    ttl = ns[0].call("GET", "/v1/members")[1].get("etcd", {}).get("lease_ttl_ms", 0) / 1000
                    victim = ns[1 + run % 4]
                    victim.p.send_signal(signal.SIGSTOP)
                    t0 = time.time()
                    others = [n for n in ns if n is not victim]
                    while not all(sees(n, victim.name, "dead") for n in others) and time.time() - t0 < 60:
                        time.sleep(0.02)
                    took.append(time.time() - t0)
                    victim.p.send_signal(signal.SIGCONT)
                    stop(ns)
            finally:
                server.close()
            took.sort()
            print(f"cluster_detect_etcd_5: lease TTL {ttl:g} s as etcd granted it (asked 3 s; etcd here holds "
                  f"leases to at least {etcd_mod.MIN_TTL_S} s)", file=sys.stderr)
            emit("cluster_detect_etcd_5_p50", statistics.median(took), "s")
            emit("cluster_detect_etcd_5_p90", took[min(len(took) - 1, int(0.9 * len(took)))], "s")
        if want("cluster_false_deaths_loss20"):
            ns = cluster(5)
            nft("add rule inet bench out ip saddr 127.0.0.2-127.0.0.6 ip daddr 127.0.0.2-127.0.0.6 "
                "numgen random mod 100 < 20 drop")
            time.sleep(60)
            clear()
            emit("cluster_false_deaths_loss20",
                 sum(1 for n in ns for m in ns if m is not n and n.said_dead(m.name)), "verdicts")
            stop(ns)
    finally:
        w.stop_all()
        subprocess.run(["nft", "delete", "table", "inet", "bench"])
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        sys.exit(inner(sys.argv[2:]))
    sys.exit(outer(sys.argv[1:]))
