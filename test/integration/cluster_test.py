#!/usr/bin/env python3
"""Cluster membership between real troupe-node processes, each on its own
loopback address (127.0.0.2, 127.0.0.3, ...): nodes find each other from
their seeds and agree on who is alive; a node killed with kill -9 is
suspected, then dead, and comes back as a new generation; SIGTERM is seen
as a leave; a short SIGSTOP is forgiven; a datagram under another key is
refused; /readyz says "not joined" until a seed answers; an operator can
declare a member dead.

usage: cluster_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import os
import signal
import socket
import sys
import tempfile
import threading
import time

import nodes as nodes_mod
from harness import check, finish
from nodes import free_port, metric, poll

NODE, CTL, BUILD_ROOT = sys.argv[1:4]

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
other_key = w.secret("other.key", "another-secret-long-enough-for-it")
hosts = [f"127.0.0.{i}" for i in range(2, 12)]
ports = {h: free_port(h) for h in hosts}
addr = {h: f"{h}:{ports[h]}" for h in hosts}


def start(name, host, seeds, secret=key, extra="", more_kinds=""):
    return nodes_mod.node(w, name, key=secret, listen=addr[host], seeds=[addr[s] for s in seeds],
                          plugins=("echo", "thrower", "remote_probe"), extra=extra,
                          kinds="probe.sink: { remote_spawn: true }, echo: { grain: { idle_timeout: 2m } }" + more_kinds)


def states(n):
    return {k: (m["status"], m["generation"]) for k, m in n.members().items()}


def all_see(ns, expect, timeout=15.0):
    """Waits until every node in `ns` sees exactly `expect` ({name: status}); True if so."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all({k: s for k, (s, _) in states(n).items() if s in ("alive", "suspect", "dead", "left")} == expect
               for n in ns):
            return True
        time.sleep(0.1)
    return False


try:
    # ---- five nodes from one seed
    first = start("a", hosts[0], [hosts[0]])
    # An actor of a plugin that hears the cluster's events from the start.
    status, body = first.spawn("probe.cluster", "news")
    check("a plugin's actor subscribes to the cluster's events", status == 201, f"{status} {body}")
    rest = [start(n, h, [hosts[0]]) for n, h in zip("bcde", hosts[1:5])]
    five = [first] + rest
    alive5 = {n: "alive" for n in "abcde"}
    t0 = time.time()
    check("five nodes form one cluster from one seed, and every one sees all five alive",
          all_see(five, alive5, 15), str({n.name: states(n) for n in five}))
    status, body = rest[3].call("GET", "/readyz")
    check("a node that joined is ready", status == 200, str(body))
    check("the member list says generation, incarnation, address and since when",
          all(m["generation"] > 0 and m["incarnation"] >= 0 and m["address"] == addr[h] and m["since"]
              for m, h in ((first.members()[n], hosts[i]) for i, n in enumerate("abcde"))), str(first.members()))
    text = first.scrape()
    check("metrics count members by state and the membership traffic",
          metric(text, "troupe_cluster_members", '{state="alive"}') == 5
          and (metric(text, "troupe_cluster_gossip_bytes_total", '{direction="out"}') or 0) > 0, text[-2000:])

    status, body = first.request("news", "troupe.test.Ask", {})
    events, _, listed = body.get("message", {}).get("s", "").partition("|")
    check("it heard each member join, and the topology change, as FlatBuffers events",
          all(f"joined:{n}" in events.split(",") for n in "bcde") and "topology:5" in events, events)
    check("and the member list it asks for names all five alive",
          sorted(listed.split(",")) == [f"{n}=Alive" for n in "abcde"], listed)
    check("/v1/members says which kinds each member hosts, and which grain kinds in which version",
          "probe.sink" in first.members()["c"].get("kinds", [])
          and first.members()["c"].get("grains") == [{"kind": "echo", "version": "1.0.0"},
                                                     {"kind": "troupe.topic", "version": "1"}],
          str(first.members()["c"]))

    # ---- kill -9, then a new start: a new generation, alive at once
    d = rest[2]
    old_gen = first.members()["d"]["generation"]
    # Before: an actor of a keeps the PID of an actor of d (the sender of
    # a request), and another watches it.
    d.spawn("probe.relay", "relay")
    first.spawn("probe.keeper", "keeper")
    status, body = d.relay(f"{first.address}/keeper", 1)
    check("a keeper on a holds the PID of d's relay", status == 200, f"{status} {body}")
    first.spawn("probe.sink", "watcher")
    first.request("watcher", "troupe.test.WatchPid", {"pid": f"{d.address}/relay"})
    # And a request is in flight to d: a's forwarder passes it on, with the
    # admin API's future as its sender, to an actor of d that sleeps on it.
    d.spawn("probe.sink", "sleeper")
    first.spawn("probe.forward", "fwd")
    first.request("fwd", "troupe.test.WatchPid", {"pid": f"{d.address}/sleeper"})
    in_flight = {}

    def ask_sleeper():
        t = time.time()
        in_flight["answer"] = first.request("fwd", "troupe.test.Num", {"n": -25000}, timeout_ms=30000)
        in_flight["took"] = time.time() - t

    asker = threading.Thread(target=ask_sleeper)
    asker.start()
    time.sleep(0.5)
    d.p.kill()
    d.p.wait()
    dead = poll(lambda: first.members().get("d", {}).get("status"), lambda s: s == "dead", 30)
    check("a node killed with kill -9 is declared dead", dead == "dead", str(first.members().get("d")))
    check("the verdict is logged, naming the member and who reported it",
          first.said_dead("d") and first.err.has("cluster: d (", 1)
          and any("cluster: d (" in l and ") dead, " in l and ("reported by" in l or "by this node" in l)
                  for l in first.err.lines), first.err.text()[-2000:])
    asker.join(30)
    status, body = in_flight.get("answer", (None, {}))
    check("a request in flight to it fails at once with the verdict (503, NodeLost), not at its timeout",
          status == 503 and "NodeLost" in str(body) and in_flight.get("took", 99) < 20, f"{in_flight}")
    seen = poll(lambda: first.ask("watcher"), lambda m: "relay" in m.get("terminated", ""), 5)
    check("the dead verdict is node lost: watchers of its actors get Terminated(NodeLost)",
          "relay:NodeLost" in seen.get("terminated", ""), str(seen))
    d2 = start("d", hosts[3], [hosts[0]])
    rest[2] = d2
    five = [first] + rest
    back = poll(lambda: first.members().get("d", {}), lambda m: m.get("status") == "alive" and m["generation"] > old_gen, 10)
    check("started again, it is alive at once as a newer generation",
          back.get("status") == "alive" and back.get("generation", 0) > old_gen, str(back))
    # After: an actor of the new start takes the same id; the PID kept from
    # the old start must not reach it.
    d2.spawn("probe.sink", "relay")
    stale_before = metric(first.scrape(), "troupe_dead_letters_total", '{reason="stale"}') or 0
    status, body = first.request("keeper", "troupe.test.Burst", {"to": "", "count": 3})
    stale = poll(lambda: metric(first.scrape(), "troupe_dead_letters_total", '{reason="stale"}') or 0,
                 lambda v: v >= stale_before + 3, 5)
    check("a PID from before a restart reaches no actor of the new start: dead letters, reason stale",
          status == 200 and stale == stale_before + 3 and d2.ask("relay").get("received", 0) == 0,
          f"{status} {body} stale {stale_before} -> {stale}, {d2.ask('relay')}")
    first.request("keeper", "troupe.test.Burst", {"to": f"{d2.address}/relay", "count": 3})
    got = poll(lambda: d2.ask("relay"), lambda m: m.get("received", 0) >= 3, 5)
    check("the same id written as text reaches the actor of the new start", got.get("received") == 3, str(got))

    # ---- SIGSTOP for 2 s: suspected at most, never dead
    c = rest[1]
    c.p.send_signal(signal.SIGSTOP)
    time.sleep(2)
    c.p.send_signal(signal.SIGCONT)
    time.sleep(3)
    check("a node stopped for 2 s is never declared dead, and is alive after",
          not any(n.said_dead("c") for n in five)
          and all(n.members()["c"]["status"] == "alive" for n in five if n is not c), str(states(first)))

    # ---- SIGTERM: left, not dead
    e = rest[3]
    e.stop()
    left = poll(lambda: first.members().get("e", {}).get("status"), lambda s: s == "left", 5)
    check("SIGTERM is seen as a leave, within seconds, with no dead verdict",
          left == "left" and not first.said_dead("e"), str(first.members().get("e")))
    status, body = first.request("news", "troupe.test.Ask", {})
    events = body.get("message", {}).get("s", "").partition("|")[0].split(",")
    check("the plugin's actor heard d die (naming who reported it), come back, and e leave",
          any(x.startswith("dead:d by ") for x in events) and "joined:d" in events[events.index(
              next(x for x in events if x.startswith("dead:d"))):] and "left:e" in events, str(events))

    # ---- datagrams that are not a member's are refused, each counted by reason
    def datagram(cluster, body):
        """The layout of a sealed datagram, with bytes no key sealed."""
        name = b"intruder"
        return (b"TD\x01" + bytes([len(cluster)]) + cluster + bytes([len(name)]) + name +
                (7).to_bytes(8, "little") + (1).to_bytes(8, "little") + os.urandom(12) + body + os.urandom(16))

    def refused(reason):
        return metric(first.scrape(), "troupe_cluster_datagrams_refused_total", f'{{reason="{reason}"}}') or 0

    before = {r: refused(r) for r in ("key", "cluster", "malformed")}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind((hosts[5], 0))
        u.sendto(datagram(b"rt", b"x" * 40), (hosts[0], ports[hosts[0]]))
        u.sendto(datagram(b"elsewhere", b"x" * 40), (hosts[0], ports[hosts[0]]))
        u.sendto(b"\x00" * 30, (hosts[0], ports[hosts[0]]))
    after = poll(lambda: {r: refused(r) for r in ("key", "cluster", "malformed")},
                 lambda v: all(v[r] > before[r] for r in v), 5)
    check("a datagram under another key, of another cluster, or not one at all is refused and counted",
          all(after[r] == before[r] + 1 for r in after), f"{before} -> {after}")
    status, body = first.call("GET", "/v1/node")
    check("the node goes on after them", status == 200 and "intruder" not in first.members(), str(body))
    # Its seed is nobody, and its secret is not the cluster's.
    stranger = start("x", hosts[5], [hosts[6]], secret=other_key, more_kinds=", countr: { grain: {} }")
    check("a kind the config sets but no plugin has is named in the log",
          stranger.err.has("kinds.countr: no loaded plugin has a kind 'countr'", 5), stranger.err.text()[-1500:])
    status, body = stranger.call("GET", "/readyz")
    check("/readyz says 'not joined' on a node whose seeds do not answer",
          status == 503 and body.get("status") == "not_ready" and "not joined" in body.get("reason", ""), str(body))
    check("and it never becomes a member", "x" not in first.members(), str(first.members().keys()))
    check("after a few seconds it says in its log that no seed has answered",
          stranger.err.has("cluster: not joined after 5 s: no seed of a formed cluster has answered", 10),
          stranger.err.text()[-1500:])
    # ---- a reload applies a changed seed list and new secrets: with the
    # cluster's secret first (the one it seals under) and a seed that is a
    # member, it joins; with either alone it could not.
    with open(other_key, "w") as f:
        f.write("a-secret-long-enough-for-the-cluster\nanother-secret-long-enough-for-it\n")
    stranger.set_seeds([addr[hosts[0]]])
    stranger.p.send_signal(signal.SIGHUP)
    check("a reload says what it applied to the cluster: the secrets and the seeds",
          stranger.err.has("reload: the cluster's datagrams are sealed under the first of 2 secrets", 10)
          and stranger.err.has(f"reload: the cluster's seeds are now [{addr[hosts[0]]}]", 2),
          stranger.err.text()[-1500:])
    check("after the reload it joins, and every member sees it alive",
          poll(lambda: first.members().get("x", {}).get("status"), lambda s: s == "alive", 15) == "alive"
          and poll(lambda: stranger.call("GET", "/readyz")[0], lambda s: s == 200, 10) == 200,
          str(first.members().get("x")) + stranger.err.text()[-800:])
    stranger.stop()

    # ---- an operator declares a member dead
    b = rest[0]
    b.p.kill()
    b.p.wait()
    r = first.ctl("members", "down", "b")
    check("troupectl members down declares the member dead at once",
          r.returncode == 0 and "b is dead to the cluster now" in r.stdout and first.members()["b"]["status"] == "dead",
          r.stdout + r.stderr)
    r = first.ctl("members")
    rows = {l.split()[0]: l.split() for l in r.stdout.splitlines()[1:] if l.strip()}
    check("troupectl members shows each member's address, status and generation",
          r.returncode == 0 and rows.get("b", [None, None, None])[1:3] == [addr[hosts[1]], "dead"]
          and rows["a"][3] == str(first.members()["a"]["generation"]), r.stdout + r.stderr)
    status, body = first.call("POST", "/v1/members/nobody/down")
    check("down for a member nobody knows is 404", status == 404, f"{status} {body}")

    # ---- three nodes started at the same moment, listing each other: one cluster
    # (on addresses no earlier node used: a node at a departed member's address,
    # under the same secret, may rightly be found by the first cluster and join it)
    trio_hosts = hosts[7:10]
    trio = [None] * 3
    threads = [threading.Thread(target=lambda i=i: trio.__setitem__(
        i, start("t" + str(i), trio_hosts[i], trio_hosts))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check("three nodes started at once that list each other form one cluster, not islands",
          all_see(trio, {"t0": "alive", "t1": "alive", "t2": "alive"}, 15),
          str({n.name: states(n) for n in trio}))
finally:
    w.stop_all()

finish()
