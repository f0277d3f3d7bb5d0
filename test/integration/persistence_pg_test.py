#!/usr/bin/env python3
"""The journal in PostgreSQL, shared by three real troupe-nodes, against a
server of the test's own (pg.py): a bank-account grain moved from node to
node keeps its balance; a second writer of the same account is refused and
stops while the first goes on; PostgreSQL unreachable at start is why a
node is not ready; PostgreSQL killed with kill -9 under load fails the
actors writing (they stop with persist_failed, the node stays up, says so
in its log, its readiness and its metrics) and, once it is back, work goes
on without a restart, every acknowledged deposit stored; a reload re-reads
the connection string and the password file.

usage: persistence_pg_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import os
import sys
import tempfile
import threading
import time
import urllib.parse

import nodes as nodes_mod
import pg
from harness import check, copy_plugins, finish
from nodes import free_port, metric, poll


def until(fn, timeout):
    return poll(fn, bool, timeout)

NODE, CTL, BUILD_ROOT = sys.argv[1:4]

tmp = tempfile.mkdtemp()
server = pg.server()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
copy_plugins(BUILD_ROOT, w.plugin_dir, ["bank"])
key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
conninfo_file = os.path.join(tmp, "pg.conninfo")
with open(conninfo_file, "w") as f:
    f.write(server.conninfo() + "\n")
KINDS = "bank.account: { grain: { idle_timeout: 30s }, persistence: { snapshot_every: 4 } }"
hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
ports = [free_port(h) for h in hosts]
seeds = [f"{h}:{p}" for h, p in zip(hosts, ports)]


def start(i, conninfo=conninfo_file):
    return nodes_mod.node(w, "n" + str(i), key=key, listen=seeds[i], seeds=seeds, plugins=("bank",), kinds=KINDS,
                          extra=f"persistence: {{ provider: postgres, postgres_conninfo_file: {conninfo} }}\n")


def grain(n, identity, type_, message, timeout_ms=5000):
    status, body = n.call("POST", f"/v1/grains/bank.account/{identity}/{type_}?timeout_ms={timeout_ms}", message)
    return (body.get("type"), body.get("message", {})) if status == 200 else (None, body)


def hosting(nodes):
    """The nodes where a bank.account grain is active now."""
    return [n for n in nodes if n.p.poll() is None and (metric(n.scrape(), "troupe_grains_active",
                                                               '{kind="bank.account"}') or 0) > 0]


def journal(n, pid):
    status, body = n.call("GET", f"/v1/journal/{urllib.parse.quote(pid, safe='')}?limit=4096")
    return body.get("events", []) if status == 200 else None


try:
    nodes = [start(i) for i in range(3)]
    check("three nodes with the journal in PostgreSQL join and are ready",
          until(lambda: all(n.call("GET", "/readyz")[0] == 200 and len(n.members()) == 3 for n in nodes), 20),
          str([n.call("GET", "/readyz") for n in nodes]))
    check("a node with a shared journal does not warn that grains keep their state on it only",
          not any("on this node only" in l for n in nodes for l in n.err.lines))

    # --- a grain that moves keeps its balance ---
    balance, seen_on = 0, []
    for step in range(3):
        alive = [n for n in nodes if n.p.poll() is None]
        for amount in (1, 2, 3):
            balance += amount * (step + 1)
            got = grain(alive[0], "carol", "bank.Deposit", {"amount": amount * (step + 1)})
            if got[0] != "bank.Balance" or got[1].get("balance") != balance:
                break
        check(f"deposits to bank.account/carol (move {step}) come back with the running balance {balance}",
              got[0] == "bank.Balance" and got[1].get("balance") == balance, str(got))
        on = hosting(nodes)
        check(f"... from one activation (move {step})", len(on) == 1, str([n.name for n in on]))
        if not on:
            break
        seen_on.append(on[0].name)
        if step < 2:
            gone = on[0].name
            t0 = time.time()
            code = on[0].stop()  # its grains go; the next call activates carol elsewhere
            check(f"{gone} stops cleanly on SIGTERM ({time.time() - t0:.1f} s), its journal closed without a warning",
                  code == 0 and not any("PostgreSQL" in l and "warn" in l.lower() for l in on[0].err.lines),
                  f"exit {code}: " + "\n".join(on[0].err.lines[-5:]))
            t0 = time.time()
            left = until(lambda: all(n.members().get(gone, {}).get("state") in (None, "left", "dead")
                                     for n in nodes if n.p.poll() is None), 15)
            check(f"the others see {gone} leave ({time.time() - t0:.1f} s)", left,
                  str([n.members().get(gone) for n in nodes if n.p.poll() is None]))
    check("carol was activated on three different nodes in turn", len(set(seen_on)) == 3, str(seen_on))
    last = [n for n in nodes if n.p.poll() is None][0]
    events = journal(last, "bank.account/carol")
    check("its journal holds the nine deposits, numbered 1 to 9, whichever node wrote them",
          events is not None and [e["seq"] for e in events] == list(range(1, 10)), str(events))

    # Bring the stopped two back for what follows.
    for i, n in enumerate(nodes):
        if n.p.poll() is not None:
            nodes[i] = start(i)
    until(lambda: all(len(n.members()) == 3 for n in nodes), 20)

    # --- a second writer is refused ---
    a, b = nodes[0], nodes[1]
    a.spawn("bank.account", "dave")
    b.spawn("bank.account", "dave")
    # Both have recovered an empty journal before either writes: an answer
    # comes only once recovery is through.
    recovered = [n.request("dave", "bank.GetBalance", {}) for n in (a, b)]
    check("two actors of one persistence id, on two nodes, both recover it empty",
          all(r[0] == 200 and r[1]["message"].get("seq", 0) == 0 for r in recovered), str(recovered))
    first = a.request("dave", "bank.Deposit", {"amount": 10})
    second = b.request("dave", "bank.Deposit", {"amount": 99})
    check("the first writer's deposit is stored", first[0] == 200 and first[1]["message"]["balance"] == 10, str(first))
    check("the second writer's deposit on another node is refused", second[0] != 200, str(second))
    check("... its actor stops, and the log says another writer came first",
          b.err.has("another writer", 5) and until(lambda: b.call("GET", "/v1/actors/dave")[0] == 404, 5),
          str(b.call("GET", "/v1/actors/dave")))
    check("... counted as a conflict",
          metric(b.scrape(), "troupe_persist_appends_total", '{result="conflict"}') == 1)
    again = a.request("dave", "bank.Deposit", {"amount": 5})
    check("the first writer goes on", again[0] == 200 and again[1]["message"]["balance"] == 15, str(again))
    check("the journal holds the first writer's events only",
          [e["event"]["amount"] for e in journal(a, "bank.account/dave")] == [10, 5], str(journal(a, "bank.account/dave")))

    # --- PostgreSQL killed under load, then back ---
    acked, tried, errors = {}, {}, {}
    going = threading.Event()
    going.set()

    def depositor(k):
        name = f"load{k}"
        acked[name], tried[name], errors[name] = 0, 0, []
        while going.is_set():
            tried[name] += 1
            got = grain(nodes[k % 3], name, "bank.Deposit", {"amount": 1}, timeout_ms=3000)
            if got[0] == "bank.Balance":
                acked[name] += 1
            else:
                errors[name].append(got[1])
                time.sleep(0.05)

    threads = [threading.Thread(target=depositor, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    before = sum(acked.values())
    server.kill()
    time.sleep(2)
    check("with PostgreSQL down, every node stays up", all(n.p.poll() is None for n in nodes))
    check("... logs that it lost the connection", all(n.err.has("lost the connection to PostgreSQL", 5) for n in nodes))
    status, body = nodes[0].call("GET", "/readyz")
    check("... is not ready, saying why", status == 503 and "persistence" in body.get("reason", ""), str(body))
    check("... and counts it (troupe_persist_pg_connections 0, failures counted)",
          metric(nodes[0].scrape(), "troupe_persist_pg_connections") == 0 and
          (metric(nodes[0].scrape(), "troupe_persist_pg_connection_failures_total") or 0) > 0)
    check("the actors writing then stopped with persist_failed",
          any("persist_failed" in l or "the store failed" in l for n in nodes for l in n.err.lines),
          "\n".join(l for n in nodes for l in n.err.lines[-5:]))
    during = sum(acked.values())
    server.start()
    check("once PostgreSQL is back, every node is ready again without a restart",
          until(lambda: all(n.call("GET", "/readyz")[0] == 200 for n in nodes), 20),
          str([n.call("GET", "/readyz") for n in nodes]))
    check("... and logs that it is back", all(n.err.has("PostgreSQL is reachable again", 5) for n in nodes))
    mark = sum(acked.values())
    time.sleep(2)
    going.clear()
    for t in threads:
        t.join()
    check(f"deposits go on after it came back ({before} before the kill, {sum(acked.values()) - mark} after)",
          sum(acked.values()) > mark and before > 0)
    lost = []
    for name in acked:
        got = grain(nodes[0], name, "bank.GetBalance", {})
        bal = got[1].get("balance", -1) if got[0] == "bank.Balance" else -1
        if not acked[name] <= bal <= tried[name]:
            lost.append((name, acked[name], bal, tried[name]))
    check("every acknowledged deposit is in the balance (none counted twice)", not lost, str(lost))

    # --- PostgreSQL unreachable at start; a reload points at it ---
    wrong = os.path.join(tmp, "wrong.conninfo")
    with open(wrong, "w") as f:
        f.write(f"host=127.0.0.1 port={pg.free_port()} dbname=troupe user=troupe connect_timeout=2\n")
    lone = nodes_mod.node(w, "lone", key=key, listen="127.0.0.5:0", seeds=[], plugins=("bank",), kinds=KINDS,
                          extra=f"persistence: {{ provider: postgres, postgres_conninfo_file: {wrong} }}\n")
    status, body = lone.call("GET", "/readyz")
    check("a node whose PostgreSQL is unreachable at start runs, not ready, saying why",
          status == 503 and "Connection refused" in body.get("reason", ""), str(body))
    with open(wrong, "w") as f:
        f.write(server.conninfo() + "\n")
    lone.p.send_signal(1)  # SIGHUP: what systemctl reload sends
    check("a reload re-reads the connection string, and the node becomes ready",
          until(lambda: lone.call("GET", "/readyz")[0] == 200, 15), str(lone.call("GET", "/readyz")))

    # --- a password from its file, re-read on reload ---
    server.psql("CREATE ROLE vault LOGIN PASSWORD 'the-right-password'", db="troupe")
    server.psql("GRANT CREATE ON SCHEMA public TO vault; GRANT ALL ON ALL TABLES IN SCHEMA public TO vault", db="troupe")
    hba = os.path.join(server.data, "pg_hba.conf")
    with open(hba) as f:
        rules = f.read()
    with open(hba, "w") as f:  # this role alone must give its password
        f.write("host all vault 127.0.0.1/32 scram-sha-256\n" + rules)
    server.psql("SELECT pg_reload_conf()")
    vault_info = os.path.join(tmp, "vault.conninfo")
    with open(vault_info, "w") as f:
        f.write(server.conninfo().replace("user=troupe", "user=vault") + "\n")
    password = os.path.join(tmp, "vault.password")
    with open(password, "w") as f:
        f.write("a-wrong-password\n")
    vaulted = nodes_mod.node(w, "vaulted", key=key, listen="127.0.0.6:0", seeds=[], plugins=("bank",), kinds=KINDS,
                             extra=f"persistence: {{ provider: postgres, postgres_conninfo_file: {vault_info}, "
                                   f"postgres_password_file: {password} }}\n")
    status, body = until(lambda: (lambda r: r if "password" in r[1].get("reason", "") else None)(
        vaulted.call("GET", "/readyz")), 10) or vaulted.call("GET", "/readyz")
    check("with a wrong password in postgres_password_file the node is not ready, and says so",
          status == 503 and "password authentication failed" in body.get("reason", ""), str(body))
    with open(password, "w") as f:
        f.write("the-right-password\n")
    vaulted.p.send_signal(1)
    check("a reload re-reads the password file, and the node becomes ready",
          until(lambda: vaulted.call("GET", "/readyz")[0] == 200, 15), str(vaulted.call("GET", "/readyz")))
    got = grain(vaulted, "erin", "bank.Deposit", {"amount": 7})
    check("... and its journal works as the role that password belongs to",
          got == ("bank.Balance", {"balance": 7, "seq": 1}), str(got))
finally:
    w.stop_all()
    server.stop()

finish()
