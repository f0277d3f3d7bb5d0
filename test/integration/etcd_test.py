#!/usr/bin/env python3
"""Membership from etcd (cluster.provider: etcd), against real etcd servers
started here (Debian's etcd-server; test/integration/etcd.py), and real
troupe-node processes each on its own loopback address:

- a node whose etcd is not there yet runs, is not ready and says why; it
  joins once etcd starts;
- three nodes join through etcd, list each other in /v1/members and
  troupectl members, and call grains on each other;
- a node killed with kill -9 is seen dead within the lease TTL plus one
  second; one stopped with SIGTERM is seen to leave;
- one stopped (SIGSTOP) until its lease expires stops serving its grains,
  is seen dead, and registers again when it runs again;
- every etcd member killed: the nodes stay up, keep their members and
  say so in /readyz and the metrics; etcd started afresh with no data (the
  leases gone): every node registers again;
- against a 3-member etcd cluster, one etcd member killed changes nothing;
- etcd on https with client certificates and users: a wrong password in
  the password file is not ready, saying why; a reload re-reads it.

usage: etcd_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

import etcd as etcd_mod
import nodes as nodes_mod
from harness import check, finish
from nodes import free_port, metric, poll

NODE, CTL, BUILD_ROOT = sys.argv[1:4]

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", "grains.so"), w.plugin_dir)
key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
hosts = [f"127.0.0.{i}" for i in range(30, 42)]
addr = {h: f"{h}:{free_port(h)}" for h in hosts}
KINDS = "grains.counter: { grain: { idle_timeout: 10m } }"
TTL_ASKED = 3
servers = []


def start(name, host, endpoints, cluster="et", lease=TTL_ASKED, etcd_extra=""):
    extra = (f"cluster: {{ provider: etcd, etcd: {{ endpoints: [{', '.join(endpoints)}], lease_ttl: {lease}s,"
             f" request_timeout: 1s, watch_timeout: 5s{etcd_extra} }} }}\n")
    return nodes_mod.node(w, name, key=key, listen=addr[host], cluster=cluster,
                          plugins=("echo", "thrower", "remote_probe", "grains"), kinds=KINDS, extra=extra)


def statuses(n):
    return {k: m["status"] for k, m in n.members().items()}


def all_see(ns, expect, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all({k: s for k, s in statuses(n).items() if k in expect or s in ("alive", "suspect")} == expect
               for n in ns):
            return True
        time.sleep(0.05)
    return False


def ready(n):
    status, body = n.call("GET", "/readyz")
    return status, body


def add(n, identity, by=1):
    status, body = n.call("POST", f"/v1/grains/grains.counter/{identity}/grains.Add?timeout_ms=5000", {"by": by})
    return status, body.get("message", {}) if status == 200 else body


def hosting(ns, identity):
    """The nodes that have `identity` active now."""
    out = []
    for n in ns:
        status, body = n.call("GET", "/v1/grains?kind=grains.counter")
        if status == 200 and any(g.get("identity") == identity for g in body.get("grains", [])):
            out.append(n.name)
    return out


try:
    # ---- etcd not there yet: the node waits, not ready, says why
    one = etcd_mod.cluster(1, tmp)
    servers.append(one)
    url = one.endpoints()[0]
    one.kill_all()
    a = start("a", hosts[0], [url])
    status, body = poll(lambda: ready(a), lambda r: "etcd" in r[1].get("reason", ""), 10)
    check("with etcd not reachable at start, the node runs, not ready, saying why",
          a.p.poll() is None and status == 503 and "etcd" in body.get("reason", ""), str(body))
    check("... and counts the failed requests",
          (metric(a.scrape(), "troupe_cluster_provider_errors_total", '{provider="etcd",op="grant"}') or 0) > 0
          and metric(a.scrape(), "troupe_cluster_provider_up", '{provider="etcd"}') == 0)
    one.start(one.members[0])
    one.wait_healthy()
    status, body = poll(lambda: ready(a), lambda r: r[0] == 200, 15)
    check("once etcd is up, the node registers and is ready, without a restart", status == 200, str(body))
    ttl = poll(lambda: a.call("GET", "/v1/members")[1].get("etcd", {}).get("lease_ttl_ms", 0),
                             lambda v: v > 0, 5) / 1000
    print(f"# etcd lease TTL: asked {TTL_ASKED} s, granted {ttl:g} s (etcd's floor here: {etcd_mod.MIN_TTL_S} s, "
          f"1.5 x its {etcd_mod.ELECTION_MS} ms election timeout)", flush=True)
    check("the TTL etcd granted is what the node reports", ttl >= TTL_ASKED,
          f"{ttl} s; metric {metric(a.scrape(), 'troupe_cluster_provider_lease_ttl_seconds')}")
    record = one.ctl("get", "--prefix", "/troupe/et/members/", "--print-value-only").stdout
    check("its record in etcd names it, its address and its grain kinds",
          '"name":"a"' in record and a.listen in record and "grains.counter@" in record, record[:300])

    # ---- three nodes join through etcd
    b = start("b", hosts[1], [url])
    c = start("c", hosts[2], [url])
    three = [a, b, c]
    check("three nodes join through etcd and list each other alive",
          all_see(three, {"a": "alive", "b": "alive", "c": "alive"}), str([statuses(n) for n in three]))
    body = a.call("GET", "/v1/members")[1]
    check("/v1/members says the provider is etcd, and it is up",
          body.get("provider") == "etcd" and body.get("etcd", {}).get("up") is True, str(body.get("etcd")))
    out = a.ctl("members")
    check("troupectl members lists the three", out.returncode == 0 and all(x in out.stdout for x in ("a", "b", "c")),
          out.stdout + out.stderr)
    seen = [add(n, "g1", 1) for n in three]
    check("a counter grain called from each of three nodes sees one value",
          [s for s, _ in seen] == [200] * 3 and [m.get("value") for _, m in seen] == [1, 2, 3], str(seen))
    check("... from one activation", len(hosting(three, "g1")) == 1, str(hosting(three, "g1")))
    for i in range(30):
        add(three[i % 3], f"k{i}")
    spread = {n.name: len(n.call("GET", "/v1/grains?kind=grains.counter")[1].get("grains", [])) for n in three}
    check("grains are placed on every member", all(v > 0 for v in spread.values()), str(spread))

    # ---- kill -9: seen dead within the TTL plus a second
    victim_grains = [g["identity"] for g in c.call("GET", "/v1/grains?kind=grains.counter")[1]["grains"]]
    c.p.send_signal(signal.SIGKILL)
    c.p.wait()
    t0 = time.time()
    gone = all_see([a, b], {"a": "alive", "b": "alive", "c": "dead"}, ttl + 10)
    took = time.time() - t0
    print(f"# a node killed with kill -9 seen dead by the others after {took:.2f} s (lease TTL {ttl:g} s)", flush=True)
    check(f"a node killed with kill -9 is seen dead within the lease TTL plus one second ({took:.2f} s)",
          gone and took <= ttl + 1.0, str([statuses(n) for n in (a, b)]))
    check("... logged as dead, as etcd said", a.err.has("c (", 1) and any(") dead, reported by etcd" in l for l in a.err.lines))
    moved = [add(a, g) for g in victim_grains[:5]]
    check("its grains answer again from the survivors", all(s == 200 for s, _ in moved), str(moved))
    c = start("c", hosts[2], [url])
    check("it comes back as a new generation", all_see([a, b, c], {"a": "alive", "b": "alive", "c": "alive"}),
          str(statuses(a)))

    # ---- SIGSTOP past the lease: the node's grains stop serving, it is
    # dead to the others, and it registers again once it runs
    mine = [g["identity"] for g in b.call("GET", "/v1/grains?kind=grains.counter")[1]["grains"]]
    b.p.send_signal(signal.SIGSTOP)
    stopped = all_see([a, c], {"a": "alive", "b": "dead", "c": "alive"}, ttl + 10)
    check("a node stopped (SIGSTOP) past its lease is seen dead", stopped, str(statuses(a)))
    answered = [add(a, g) for g in mine[:3]]
    check("... its grains answer from another node meanwhile", all(s == 200 for s, _ in answered), str(answered))
    b.p.send_signal(signal.SIGCONT)
    back = all_see([a, b, c], {"a": "alive", "b": "alive", "c": "alive"}, 15)
    check("once it runs again it registers again (a new lease) and is alive to all",
          back and b.err.has("registering again", 5), str([statuses(n) for n in (a, b, c)]))
    again = [add(b, g) for g in mine[:3]]
    where = [hosting([a, b, c], g) for g in mine[:3]]
    check("... and each of its grains has one activation still", all(len(h) == 1 for h in where), str(where))
    check("... whose count went on (nothing served twice)", all(s == 200 for s, _ in again), str(again))

    # ---- a watch that must start again from a compacted revision: the
    # node lists the members again. b is stopped; a member record comes
    # and goes, etcd compacts its history and restarts (b's watch breaks).
    b.p.send_signal(signal.SIGSTOP)
    one.ctl("put", "/troupe/et/members/ghost",
            '{"name":"ghost","address":"127.0.0.1:9","generation":1,"meta":{},"leaving":false}')
    one.ctl("del", "/troupe/et/members/ghost")
    one.ctl("put", "/troupe/et/other", "x")
    rev = one.ctl("put", "/troupe/et/other", "y", "-w", "json").stdout
    import json as json_mod
    one.ctl("compaction", str(json_mod.loads(rev)["header"]["revision"]))
    one.kill_all()
    one.start(one.members[0])
    one.wait_healthy()
    b.p.send_signal(signal.SIGCONT)
    check("a watch whose revision was compacted lists the members again",
          b.err.has("was compacted", 15), "".join(l for l in b.err.lines if "etcd" in l)[-900:])
    check("... and its view is etcd's", all_see([a, b, c], {"a": "alive", "b": "alive", "c": "alive"}, 10) and
          b.members().get("ghost", {}).get("status") != "alive", str(statuses(b)))

    # ---- every etcd member killed: the nodes keep their members
    one.kill_all()
    time.sleep(ttl + 1)
    status, body = ready(a)
    check("with etcd gone, every node stays up", all(n.p.poll() is None for n in (a, b, c)))
    check("... keeps its last membership", all_see([a, b, c], {"a": "alive", "b": "alive", "c": "alive"}, 3),
          str(statuses(a)))
    check("... says so in /readyz, still ready", status == 200 and any("etcd" in d for d in body.get("detail", [])),
          str(body))
    check("... in a metric and a log line",
          metric(a.scrape(), "troupe_cluster_provider_up", '{provider="etcd"}') == 0 and
          a.err.has("membership stays as last listed", 2))
    # etcd back with no data at all: every lease is gone.
    one.wipe(one.members[0])
    one.start(one.members[0])
    one.wait_healthy()
    back = poll(lambda: one.ctl("get", "--prefix", "/troupe/et/members/", "--keys-only").stdout.split(),
                lambda keys: len(keys) == 3, 20)
    check("etcd back without their leases: every node registers again", len(back) == 3, str(back))
    check("... and every node sees all three alive", all_see([a, b, c], {"a": "alive", "b": "alive", "c": "alive"}, 10),
          str([statuses(n) for n in (a, b, c)]))
    check("... and is ready with nothing to report", poll(lambda: ready(a), lambda r: r[0] == 200 and not r[1].get("detail"), 10)[0] == 200)
    check("grains work again", add(c, "g1")[0] == 200)

    # ---- SIGTERM is a leave
    c.stop()
    check("a node stopped with SIGTERM is seen to leave, not die",
          all_see([a, b], {"a": "alive", "b": "alive", "c": "left"}, 10), str(statuses(a)))
    check("... and its record is gone from etcd",
          "/troupe/et/members/c" not in one.ctl("get", "--prefix", "/troupe/et/", "--keys-only").stdout)
    for n in (a, b):
        n.stop()
    one.close()

    # ---- a 3-member etcd cluster: one member killed changes nothing
    trio = etcd_mod.cluster(3, tmp)
    servers.append(trio)
    eps = trio.endpoints()
    ns = [start(name, hosts[3 + i], eps, cluster="e3") for i, name in enumerate(("x", "y", "z"))]
    check("three nodes join through a 3-member etcd cluster",
          all_see(ns, {"x": "alive", "y": "alive", "z": "alive"}), str([statuses(n) for n in ns]))
    before = [add(n, "h1")[1].get("value") for n in ns]
    trio.kill(trio.members[0])  # the endpoint every node uses first
    time.sleep(ttl + 2)
    check("one etcd member killed (quorum kept): no member is lost",
          all_see(ns, {"x": "alive", "y": "alive", "z": "alive"}, 2) and
          not any(n.said_dead(m) for n in ns for m in "xyz"), str([statuses(n) for n in ns]))
    after = [add(n, "h1")[1].get("value") for n in ns]
    check("... grains go on", before == [1, 2, 3] and after == [4, 5, 6], f"{before} {after}")
    check("... the nodes talk to another etcd member",
          all(metric(n.scrape(), "troupe_cluster_provider_up", '{provider="etcd"}') == 1 for n in ns))
    for n in ns:
        n.stop()
    trio.close()

    # ---- TLS with client certificates, and a user with a password
    certs = etcd_mod.certificates(os.path.join(tmp, "certs"))
    secure = etcd_mod.cluster(1, tmp, tls=certs)
    servers.append(secure)
    secure.enable_auth("the-right-one")
    password = w.secret("etcd.password", "a-wrong-one")
    tls = (f", ca_file: {certs['ca.pem']}, cert_file: {certs['client.pem']}, key_file: {certs['client.key']},"
           f" username: root, password_file: {password}")
    s1 = start("s1", hosts[6], secure.endpoints(), cluster="sec", etcd_extra=tls)
    status, body = poll(lambda: ready(s1), lambda r: "authentication failed" in r[1].get("reason", ""), 10)
    check("with a wrong password in etcd.password_file the node is not ready, and says so",
          status == 503 and "authentication failed" in body.get("reason", ""), str(body))
    w.secret("etcd.password", "the-right-one")
    s1.p.send_signal(signal.SIGHUP)  # what systemctl reload sends
    status, body = poll(lambda: ready(s1), lambda r: r[0] == 200, 15)
    check("a reload re-reads the password file, and the node registers over TLS", status == 200, str(body))
    s2 = start("s2", hosts[7], secure.endpoints(), cluster="sec", etcd_extra=tls)
    check("a second node joins it there", all_see([s1, s2], {"s1": "alive", "s2": "alive"}, 15),
          str(statuses(s1)))
    keys = secure.ctl("get", "--prefix", "/troupe/sec/", "--keys-only").stdout.split()
    check("... both records are in etcd", keys == ["/troupe/sec/members/s1", "/troupe/sec/members/s2"], str(keys))
finally:
    w.stop_all()
    for s in servers:
        s.close()
    shutil.rmtree(tmp, ignore_errors=True)

finish()
