#!/usr/bin/env python3
"""Grains through churn, with real troupe-node processes inside a network
namespace of this test's own (each node on its own loopback address,
127.0.0.2 to 127.0.0.9): 100 callers call 1,000 identities of a counter
grain through the nodes' admin APIs while, every few seconds, a node joins,
leaves with SIGTERM, restarts, is killed with kill -9, or is paused with
SIGSTOP; first on a quiet network for 2 minutes, then under 20% loss
between the nodes for 1 minute.

The grain (grains.chaos in test/plugins/grains.cpp) writes a line when each
activation starts and ends, on the system's monotonic clock, to a file of
its process's own; an activation on a node killed with kill -9 ends at the
kill. The checker, outside the nodes, asserts:
  - no two activations of one identity overlap, except where one of them
    ran on a node paused past its dead verdict (a false verdict: the
    guarantee holds while membership is healthy); those are counted;
  - every call got a reply or an error before its timeout (2 s, and 1 s
    for the HTTP round trip and this process's own scheduling);
  - after the churn, every identity answers.
It prints the counts.

TROUPE_CHAOS_MOVES=keep runs it with cluster.moved_activations: keep (a
partition given up keeps its activations until they passivate), and
TROUPE_CHAOS_SECONDS=Q,L sets the two phases' lengths.

Its time budget is about 5 minutes (make test-fault; CI runs it once, in
the optimised build). It needs root (a namespace, nftables); without it,
it says so and is skipped.

usage: grain_chaos_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

CALLERS, IDENTITIES = 100, 1000
MOVES = os.environ.get("TROUPE_CHAOS_MOVES", "stop")
TIMEOUT_MS, SLACK_S = 2000, 1.0
KIND = "grains.chaos"



class cluster:
    """The nodes of the test, each start of each with its own report file."""

    def __init__(self, nodes_mod, w, key, hosts):
        self.nodes_mod, self.w, self.key, self.hosts = nodes_mod, w, key, hosts
        self.addr = {h: f"{h}:7700" for h in hosts}
        self.seeds = [self.addr[h] for h in hosts[:3]]
        self.running = {}   # name -> node
        self.host_of = {}   # name -> host
        self.starts = 0
        self.kills = {}     # report file -> monotonic ns of its kill -9
        self.paused = defaultdict(list)  # report file -> [(from, to)] in monotonic ns
        self.paused_by_name = defaultdict(list)  # name -> [(from, to)] in monotonic s
        self.file_of = {}   # name -> its current report file
        self.lock = threading.Lock()

    def start(self, name, host):
        self.starts += 1
        path = os.path.join(self.w.tmp, f"report-{name}-{self.starts}.log")
        os.environ["TROUPE_GRAIN_LOG"] = path
        n = self.nodes_mod.node(self.w, name, key=self.key, listen=self.addr[host], seeds=self.seeds,
                                cluster="chaos", plugins=("grains",),
                                kinds=f"{KIND}: {{ grain: {{ idle_timeout: 20s }} }}",
                                extra=f"cluster: {{ moved_activations: {MOVES} }}\n")
        with self.lock:
            self.running[name], self.host_of[name], self.file_of[name] = n, host, path
        return n

    def live(self):
        with self.lock:
            return [n for n in self.running.values() if n.p.poll() is None]

    def take(self, name):
        with self.lock:
            return self.running.pop(name)

    def kill(self, name):
        n = self.take(name)
        n.p.send_signal(signal.SIGKILL)
        self.kills[self.file_of[name]] = time.monotonic_ns()
        n.p.wait()

    def term(self, name):
        n = self.take(name)
        n.p.send_signal(signal.SIGTERM)
        try:
            n.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            n.p.kill()
            n.p.wait()
            self.kills[self.file_of[name]] = time.monotonic_ns()

    def pause(self, name, seconds):
        n = self.take(name)  # no calls go to it while it is stopped
        t0 = time.monotonic_ns()
        n.p.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        n.p.send_signal(signal.SIGCONT)
        self.paused[self.file_of[name]].append((t0, time.monotonic_ns()))
        self.paused_by_name[name].append((t0 / 1e9, time.monotonic()))
        with self.lock:
            self.running[name] = n


class callers:
    """CALLERS threads calling random identities on random live nodes."""

    def __init__(self, c):
        self.c, self.stop = c, threading.Event()
        self.lock = threading.Lock()
        self.counts = defaultdict(int)
        self.late = []
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(CALLERS)]

    def run(self, i):
        rng = random.Random(i)
        conns = {}
        while not self.stop.is_set():
            live = self.c.live()
            if not live:
                time.sleep(0.05)
                continue
            n = rng.choice(live)
            identity = f"g{rng.randrange(IDENTITIES)}"
            t0 = time.monotonic()
            try:
                conn = conns.get(n.admin)
                if conn is None:
                    host, port = n.admin.split("//")[1].rsplit(":", 1)
                    conn = conns[n.admin] = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_MS / 1000 + 3)
                conn.request("POST", f"/v1/grains/{KIND}/{identity}/grains.Add?timeout_ms={TIMEOUT_MS}",
                             body=json.dumps({"by": 1}), headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                body = r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                # The node went (killed, stopped, paused mid-call): not a grain
                # call's answer; the next one goes elsewhere.
                conns.pop(n.admin, None)
                with self.lock:
                    self.counts["node gone"] += 1
                continue
            took = time.monotonic() - t0
            if status == 200:
                result = "ok"
            else:
                try:
                    result = json.loads(body).get("error", {}).get("code", str(status))
                except ValueError:
                    result = str(status)
                if status == 503 and result == "stopping":
                    result = "node stopping"
            with self.lock:
                self.counts[result] += 1
                if took > TIMEOUT_MS / 1000 + SLACK_S and result not in ("node stopping",):
                    self.late.append((identity, n.name, result, round(took, 2), t0, t0 + took))

    def late_calls(self):
        """Late answers, but for those whose own node was paused meanwhile
        (its timers stood still with it)."""
        return [x[:4] for x in self.late
                if not any(p0 < x[5] and x[4] < p1 for p0, p1 in self.c.paused_by_name.get(x[1], []))]


def overlaps(c):
    """Overlapping activations of one identity: (not excused, excused, activations)."""
    by_identity = defaultdict(list)  # identity -> [(start, end, file, pid)]
    now = time.monotonic_ns()
    count = 0
    for name in os.listdir(c.w.tmp):
        if not name.startswith("report-"):
            continue
        path = os.path.join(c.w.tmp, name)
        open_ = {}
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 4:
                    continue
                t, what, identity, pid = int(parts[0]), parts[1], parts[2], parts[3]
                if what == "start":
                    open_[pid] = (t, identity)
                    count += 1
                elif pid in open_:
                    t0, ident = open_.pop(pid)
                    by_identity[ident].append((t0, t, path, pid))
        end = c.kills.get(path, now)  # killed: its activations ended at the kill
        for pid, (t0, ident) in open_.items():
            by_identity[ident].append((t0, end, path, pid))
    bad, excused = [], []

    def paused_during(path, t0, t1):
        return any(p0 < t1 and t0 < p1 + 30_000_000_000 for p0, p1 in c.paused.get(path, []))

    for ident, spans in by_identity.items():
        spans.sort()
        for i, (s0, e0, f0, p0) in enumerate(spans):
            for s1, e1, f1, p1 in spans[i + 1:]:
                if s1 >= e0:
                    continue
                record = (ident, p0, p1, round((min(e0, e1) - s1) / 1e6, 1))
                # A node paused while its activation ran may have been declared
                # dead meanwhile (a false verdict): excused, and counted.
                if paused_during(f0, s0, e0) or paused_during(f1, s1, e1):
                    excused.append(record)
                else:
                    bad.append(record)
    return bad, excused, count


def inner(argv):
    import nodes as nodes_mod
    from harness import check, finish
    from netns import nft

    node_bin, ctl_bin, build_root = argv[:3]
    tmp = tempfile.mkdtemp()
    w = nodes_mod.world(node_bin, ctl_bin, build_root, tmp)
    shutil.copy(os.path.join(build_root, "test", "plugins", "grains.so"), w.plugin_dir)
    key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
    hosts = [f"127.0.0.{i}" for i in range(2, 10)]
    nft("table inet chaos {",
        "  chain out { type filter hook output priority 0; policy accept; }",
        "}")
    c = cluster(nodes_mod, w, key, hosts)
    rng = random.Random(20261205)
    try:
        names = ["a", "b", "c", "d", "e"]
        for name, host in zip(names, hosts):
            c.start(name, host)

        def members_alive(n):
            try:
                return {k for k, m in n.members().items() if m["status"] == "alive"}
            except Exception:
                return set()

        def all_alive(timeout=30):
            deadline = time.time() + timeout
            while time.time() < deadline:
                live = c.live()
                want = {n.name for n in live}
                if all(members_alive(n) == want for n in live):
                    return True
                time.sleep(0.2)
            return False

        print(f"info: moved_activations: {MOVES}")
        check("five nodes with the chaos grain form one cluster", all_alive(), "")

        def churn(seconds, label):
            """Every 3 to 6 s, one of: join, leave, restart, kill -9, pause."""
            spare = [h for h in hosts if h not in c.host_of.values()]
            done = defaultdict(int)
            down = []  # (name, host): killed or left, to come back
            t_end = time.time() + seconds
            while time.time() < t_end:
                time.sleep(rng.uniform(3, 6))
                live = [n.name for n in c.live() if n.name != "a"]  # the first seed stays
                action = rng.choice(["join", "leave", "restart", "kill", "pause"])
                if down and (action in ("join",) or len(live) < 4):
                    name, host = down.pop(0)
                    c.start(name, host)
                    done["back"] += 1
                elif action == "join" and spare:
                    host = spare.pop(0)
                    c.start(f"x{hosts.index(host)}", host)
                    done["join"] += 1
                elif action == "leave" and len(live) > 3:
                    name = rng.choice(live)
                    host = c.host_of[name]
                    c.term(name)
                    down.append((name, host))
                    done["leave (SIGTERM)"] += 1
                elif action == "restart" and live:
                    name = rng.choice(live)
                    host = c.host_of[name]
                    c.term(name) if rng.random() < 0.5 else c.kill(name)
                    c.start(name, host)
                    done["restart"] += 1
                elif action == "kill" and len(live) > 3:
                    name = rng.choice(live)
                    host = c.host_of[name]
                    c.kill(name)
                    down.append((name, host))
                    done["kill -9"] += 1
                elif action == "pause" and live:
                    c.pause(rng.choice(live), rng.uniform(1, 8))
                    done["pause (SIGSTOP)"] += 1
            for name, host in down:
                c.start(name, host)
            print(f"info: {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(done.items())))

        load = callers(c)
        for t in load.threads:
            t.start()
        quiet, lossy = (int(x) for x in os.environ.get("TROUPE_CHAOS_SECONDS", "120,60").split(","))
        churn(quiet, f"quiet network, {quiet} s")
        nft("add rule inet chaos out ip saddr 127.0.0.2-127.0.0.9 ip daddr 127.0.0.2-127.0.0.9 "
            "numgen random mod 100 < 20 drop")
        churn(lossy, f"20% loss between the nodes, {lossy} s")
        nft("flush chain inet chaos out")
        load.stop.set()
        for t in load.threads:
            t.join(timeout=TIMEOUT_MS / 1000 + 5)
        counts = dict(load.counts)
        print("info: calls: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        check("the callers made calls, most of them answered",
              counts.get("ok", 0) > 10000 and counts.get("ok", 0) > 0.8 * sum(
                  v for k, v in counts.items() if k not in ("node gone", "node stopping")), str(counts))
        late = load.late_calls()
        print(f"info: {len(load.late) - len(late)} late answers from a node paused during the call")
        check("every call got a reply or an error before its timeout", not late, f"{len(late)} late: {late[:10]}")

        check("after the churn, every node sees every other alive", all_alive(60), "")
        time.sleep(2)
        bad, excused, count = overlaps(c)
        print(f"info: {count} activations; {len(excused)} overlaps excused (a node paused past its dead verdict)")
        check("no two activations of one identity overlapped while membership was healthy", not bad,
              f"{len(bad)}: {bad[:10]}")

        # Every identity answers once it is quiet and no partition is on
        # its way anywhere (what an operator would wait for).
        live = c.live()

        def moving():
            return sum(nodes_mod.metric(n.scrape(), "troupe_grain_partitions", '{state="moving"}') or 0 for n in live)

        t0 = time.time()
        left = nodes_mod.poll(moving, lambda v: v == 0, 60)
        print(f"info: every partition held {time.time() - t0:.1f} s after the churn ({left} still moving)")
        check("after the churn, every partition comes to be held within a minute", left == 0, str(left))
        failed = []
        for i in range(IDENTITIES):
            n = live[i % len(live)]
            status, body = n.call("POST", f"/v1/grains/{KIND}/g{i}/grains.Get?timeout_ms={TIMEOUT_MS}", {})
            if status != 200:
                failed.append((f"g{i}", n.name, body.get("error", {}).get("message", status)))
        check("after the churn, every identity answers, from every node", not failed,
              f"{len(failed)}: {failed[:5]}")
    finally:
        w.stop_all()
        subprocess.run(["nft", "delete", "table", "inet", "chaos"])
        shutil.rmtree(tmp, ignore_errors=True)
    finish()


if __name__ == "__main__":
    import netns
    netns.main(__file__, inner, "troupe-chaos", "the grain chaos test")
