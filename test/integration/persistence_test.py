#!/usr/bin/env python3
"""Persistent actors on a real troupe-node, with the bank example plugin
(plugins/bank, built as a plugin author builds it) and the journal in
SQLite in the node's state_dir: deposits and withdrawals are answered once
stored; a named account has its balance back after the node restarts, a
grain after it passivated; after kill -9 in the middle of deposits, every
acknowledged one is there; snapshots are taken every snapshot_every events;
a node whose seeds name other nodes warns that SQLite keeps state on it only;
the metrics count what happened; troupectl journal prints the events. A
node without a journal says why a
persistent kind cannot start, and one that asks for SQLite without a state
directory does not start.

usage: persistence_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import nodes as nodes_mod
from harness import check, copy_plugins, finish
from nodes import free_port, metric, poll

NODE, CTL, BUILD_ROOT = sys.argv[1:4]

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
copy_plugins(BUILD_ROOT, w.plugin_dir, ["bank"])
key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
state = os.path.join(tmp, "state")
host = "127.0.0.2"
port = free_port(host)
KINDS = "bank.account: { grain: { idle_timeout: 2s }, persistence: { snapshot_every: 3 } }"


def start(name="bank"):
    # A one-member cluster (grains need one), always on the same address.
    return nodes_mod.node(w, name, key=key, listen=f"{host}:{port}", seeds=[f"{host}:{port}"], plugins=("bank",),
                          kinds=KINDS, node_extra=f", state_dir: {state}",
                          extra="persistence: { provider: sqlite }\n")


def ask(n, actor, type_, message):
    status, body = n.request(actor, type_, message)
    return (body.get("type"), body.get("message", {})) if status == 200 else (None, body)


def grain(n, identity, type_, message, timeout_ms=5000):
    status, body = n.call("POST", f"/v1/grains/bank.account/{identity}/{type_}?timeout_ms={timeout_ms}", message)
    return (body.get("type"), body.get("message", {})) if status == 200 else (None, body)


def grains_active(n):
    return metric(n.scrape(), "troupe_grains_active", '{kind="bank.account"}') or 0


try:
    a = start()
    check("a node with the bank plugin and a journal starts",
          a.err.has("persistence: the journal is " + os.path.join(state, "journal.db"), 5), "\n".join(a.err.lines))
    status, _ = a.spawn("bank.account", "alice")
    answers = [ask(a, "alice", "bank.Deposit", {"amount": x}) for x in (10, 20, 30)]
    check("deposits are answered once stored, in order, numbered 1, 2, 3",
          answers == [("bank.Balance", {"balance": 10, "seq": 1}), ("bank.Balance", {"balance": 30, "seq": 2}),
                      ("bank.Balance", {"balance": 60, "seq": 3})], str(answers))
    refused = ask(a, "alice", "bank.Withdraw", {"amount": 1000})
    check("a withdrawal beyond the balance is refused, and stores nothing",
          refused == ("bank.Refused", {"reason": "insufficient funds: the balance is 60"}), str(refused))
    got = ask(a, "alice", "bank.Withdraw", {"amount": 15})
    check("a withdrawal within it is stored as event 4", got == ("bank.Balance", {"balance": 45, "seq": 4}), str(got))
    text = a.scrape()
    check("troupe_persist_appends_total counts the four stored events",
          metric(text, "troupe_persist_appends_total", '{result="ok"}') == 4, str(metric(text, "troupe_persist_appends_total", '{result="ok"}')))
    check("the commits and the recovery are in the histograms",
          (metric(text, "troupe_persist_batch_events_sum") or 0) == 4 and
          (metric(text, "troupe_recovery_seconds_count") or 0) >= 1 and
          (metric(text, "troupe_persist_append_seconds_count") or 0) == 4, text[-2000:])

    # ---- a node restart (SIGTERM): the named account recovers
    check("the node stops on SIGTERM", a.stop() == 0)
    a = start()
    a.spawn("bank.account", "alice")
    got = ask(a, "alice", "bank.GetBalance", {})
    check("after the node restarts, the named account has its balance back (45, at event 4)",
          got == ("bank.Balance", {"balance": 45, "seq": 4}), str(got))
    r = a.ctl("journal", "bank.account/alice")
    lines = r.stdout.splitlines()
    check("troupectl journal prints the events as JSON, in order",
          r.returncode == 0 and lines == ['1 bank.Deposited {"amount":10}', '2 bank.Deposited {"amount":20}',
                                          '3 bank.Deposited {"amount":30}', '4 bank.Withdrawn {"amount":15}'],
          r.stdout + r.stderr)
    r = a.ctl("journal", "bank.account/alice", "--after", "2", "--limit", "1")
    check("... from a given event, a page at a time",
          r.stdout.splitlines() == ['3 bank.Deposited {"amount":30}', "(more after 3: --after 3)"], r.stdout + r.stderr)
    db = sqlite3.connect(os.path.join(state, "journal.db"))
    snaps = [r[0] for r in db.execute("SELECT seq FROM snapshots WHERE id = 'bank.account/alice' ORDER BY seq")]
    db.close()
    check("a snapshot was taken at event 3 (kinds.bank.account.persistence.snapshot_every: 3)", snaps == [3], str(snaps))

    # ---- a grain: passivated after 2 s idle, then back with its balance
    for i in range(5):
        last = grain(a, "bob", "bank.Deposit", {"amount": 7})
    check("five deposits to the grain bank.account/bob", last == ("bank.Balance", {"balance": 35, "seq": 5}), str(last))
    gone = poll(lambda: grains_active(a), lambda v: v == 0, timeout=10)
    check("the grain passivates when idle", gone == 0, str(gone))
    got = grain(a, "bob", "bank.GetBalance", {})
    check("activated again, it has its balance back", got == ("bank.Balance", {"balance": 35, "seq": 5}), str(got))

    # ---- kill -9 in the middle of deposits: every acknowledged one is there
    acked = []
    stop_flag = threading.Event()

    def depositor():
        while not stop_flag.is_set():
            try:
                t, m = grain(a, "carol", "bank.Deposit", {"amount": 1}, timeout_ms=2000)
            except Exception:
                return
            if t == "bank.Balance":
                acked.append(m["seq"])

    th = threading.Thread(target=depositor)
    th.start()
    time.sleep(1.5)
    a.p.send_signal(signal.SIGKILL)
    a.p.wait()
    stop_flag.set()
    th.join()
    a = start()
    got = grain(a, "carol", "bank.GetBalance", {})
    last_acked = max(acked) if acked else 0
    check(f"after kill -9, every acknowledged deposit is there ({last_acked} acknowledged)",
          got[0] == "bank.Balance" and got[1]["seq"] >= last_acked > 0 and got[1]["balance"] == got[1]["seq"],
          f"{got}, acknowledged up to {last_acked}")
    check("the acknowledged deposits were numbered without a gap", acked == list(range(1, len(acked) + 1)),
          str(acked[:20]))
    a.stop()

    # ---- seeds that name another node: a warning that SQLite keeps state on this node only
    other = f"127.0.0.3:{free_port('127.0.0.3')}"
    multi = nodes_mod.node(w, "multi", key=key, listen=other, seeds=[other, f"127.0.0.4:{port}"], plugins=("bank",),
                           kinds=KINDS, node_extra=f", state_dir: {os.path.join(tmp, 'state-multi')}",
                           extra="persistence: { provider: sqlite }\n")
    check("with other nodes in its seeds, the node warns that persistent grains keep their state on it only",
          multi.err.has("persistence: the persistent grain kinds bank.account keep their journal in SQLite, on this "
                        "node only", 5), "\n".join(multi.err.lines[-10:]))
    multi.stop()
    warned = any("persistent grain kinds" in l for l in a.err.lines)
    check("... and a node alone in its seeds does not", not warned)

    # ---- a node without a journal: the persistent kind cannot start, and says why
    plain = nodes_mod.node(w, "plain", key=key, plugins=("bank",), kinds="")
    plain.spawn("bank.account", "dave")
    why = "kind bank.account is persistent, and this node keeps no journal (persistence.provider is none)"
    check("without persistence.provider, a persistent kind's actor fails at start, and the log says why",
          plain.err.has(why, 5), "\n".join(plain.err.lines[-10:]))
    plain.stop()

    # ---- sqlite without a state directory: the node does not start
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write("node: { name: bad }\npersistence: { provider: sqlite }\n")
    r = subprocess.run([NODE, "--config", bad], capture_output=True, text=True, timeout=30)
    check("persistence.provider sqlite without node.state_dir: exit 78, saying where and why",
          r.returncode == 78 and f"{bad}:2: 'persistence.provider' sqlite needs 'node.state_dir'" in r.stderr,
          f"{r.returncode} {r.stderr}")
finally:
    w.stop_all()

finish()
