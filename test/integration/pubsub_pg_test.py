#!/usr/bin/env python3
"""Pub-sub with the journal in PostgreSQL (a server of the test's own,
pg.py), three real troupe-nodes: a topic keeps its grain subscribers in the
shared store, so that a grain subscribed from a node that died, on a topic
whose owner died too, still gets what is published afterwards (without the
store, nobody left would remember it).

usage: pubsub_pg_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import os
import shutil
import signal
import sys
import tempfile

import nodes as nodes_mod
import pg
from harness import check, finish
from nodes import free_port, poll

NODE, CTL, BUILD_ROOT = sys.argv[1:4]

tmp = tempfile.mkdtemp()
server = pg.server()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", "pubsub_probe.so"), w.plugin_dir)
key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
conninfo_file = os.path.join(tmp, "pg.conninfo")
with open(conninfo_file, "w") as f:
    f.write(server.conninfo() + "\n")
hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
seeds = [f"{h}:{free_port(h)}" for h in hosts]
TOPIC = "alerts"


def start(i):
    return nodes_mod.node(w, "n" + str(i), key=key, listen=seeds[i], seeds=seeds, plugins=("echo", "pubsub_probe"),
                          kinds="echo: {}",
                          extra=f"persistence: {{ provider: postgres, postgres_conninfo_file: {conninfo_file} }}\n")


def grain(n, identity, type_, message):
    status, body = n.call("POST", f"/v1/grains/pubsub.grain/{identity}/{type_}?timeout_ms=10000", message)
    return body.get("message", {}) if status == 200 else {"status": status, "body": body}


def where(nodes, kind, identity):
    for n in nodes:
        status, body = n.call("GET", f"/v1/grains?kind={kind}")
        if status == 200 and any(g["identity"] == identity for g in body["grains"]):
            return n
    return None


try:
    nodes = [start(i) for i in range(3)]
    check("three nodes with the journal in PostgreSQL form one cluster",
          poll(lambda: all(len([m for m in n.members().values() if m["status"] == "alive"]) == 3 for n in nodes),
               lambda ok: ok, 20), "")
    x = grain(nodes[0], "g7", "pubsub_probe.Join", {"topic": TOPIC})
    check("a grain subscribes itself; the topic acknowledges once the store has it", x.get("ok") is True, str(x))
    home = where(nodes, "pubsub.grain", "g7")
    owner = where(nodes, "troupe.topic", TOPIC)
    check("the grain and the topic are active somewhere", home is not None and owner is not None, "")
    rows = server.psql(f"SELECT count(*) FROM troupe_events WHERE persistence_id = 'troupe.topic/{TOPIC}'", db="troupe")
    check("the subscription is an event of the topic's journal", rows == "1", rows)

    # The node the grain subscribed from, and the topic's owner: both gone.
    victims = {home, owner}
    for v in victims:
        v.p.send_signal(signal.SIGKILL)
        v.p.wait()
    survivor = next(n for n in nodes if n not in victims)
    check("the killed nodes are declared dead",
          poll(lambda: all(survivor.members().get(v.name, {}).get("status") == "dead" for v in victims),
               lambda ok: ok, 20), str(survivor.members()))
    status, body = survivor.call("GET", f"/v1/topics/{TOPIC}/subscribers")
    check("the topic, activated afresh, has the grain from the store",
          status == 200 and body.get("subscribers") == [{"grain": "pubsub.grain/g7"}], f"{status} {body}")
    status, body = survivor.call("POST", f"/v1/topics/{TOPIC}/pubsub_probe.Tick?report=true",
                                 {"publisher": "after", "n": 1})
    check("a publish reaches it", status == 200 and body.get("delivered") == 1, f"{status} {body}")
    got = poll(lambda: grain(survivor, "g7", "pubsub_probe.Seen", {}).get("numbers"), lambda v: v == [1], 10)
    check("the grain, activated again by the delivery, got the message", got == [1], str(got))
    x = grain(survivor, "g7", "pubsub_probe.Leave", {"topic": TOPIC})
    status, body = survivor.call("GET", f"/v1/topics/{TOPIC}/subscribers")
    check("it unsubscribes, from another node than it subscribed from",
          x.get("ok") is True and body.get("subscribers") == [], f"{x} {body}")
finally:
    w.stop_all()
    server.stop()

finish()
