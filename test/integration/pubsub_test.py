#!/usr/bin/env python3
"""Cluster pub-sub between real troupe-node processes, each on its own
loopback address, with the pub-sub test plugin (test/plugins/pubsub_probe.cpp):
subscribers on every node get every message once, in each publisher's
order; subscribe and unsubscribe are acknowledged; troupectl and the admin
API publish and list subscribers; a delivery report says who did not get a
message; a subscriber node killed with kill -9 is dropped from the list and
named by the next report; the topic's owner killed: the topic keeps its
subscribers and delivery resumes; a grain subscriber is activated by a
delivery.

usage: pubsub_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import concurrent.futures
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import nodes as nodes_mod
from harness import check, finish
from nodes import free_port, metric, poll

NODE, CTL, BUILD_ROOT = sys.argv[1:4]

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", "pubsub_probe.so"), w.plugin_dir)
shutil.copy(os.path.join(BUILD_ROOT, "plugins", "news", "news.so"), w.plugin_dir)
key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
hosts = [f"127.0.0.{i}" for i in range(2, 7)]
ports = {h: free_port(h) for h in hosts}
addr = {h: f"{h}:{ports[h]}" for h in hosts}
TOPIC = "news"


def start(name, host):
    return nodes_mod.node(w, name, key=key, listen=addr[host], seeds=[addr[hosts[0]]],
                          plugins=("echo", "pubsub_probe", "news"),
                          kinds="echo: {}, pubsub.slow: { mailbox: { capacity: 20 } }",
                          extra=f"pubsub: {{ metric_topics: [{TOPIC}] }}\n")


def all_alive(ns, timeout=20.0):
    names = {n.name for n in ns}

    def ok():
        return all({k for k, m in n.members().items() if m["status"] == "alive"} == names for n in ns)
    deadline = time.time() + timeout
    while time.time() < deadline and not ok():
        time.sleep(0.1)
    return ok()


def ask(n, actor, type_, message, timeout_ms=10000):
    status, body = n.request(actor, type_, message, timeout_ms)
    return body.get("message", {}) if status == 200 else {"status": status, "body": body}


def log_of(n, actor):
    m = ask(n, actor, "pubsub_probe.Seen", {})
    return list(zip(m.get("publishers", []), m.get("numbers", [])))


def subscribers(n, topic=TOPIC):
    status, body = n.call("GET", f"/v1/topics/{topic}/subscribers")
    return sorted(s.get("actor") or "grain " + s.get("grain", "") for s in body.get("subscribers", [])) \
        if status == 200 else body


def publish(n, message, report=False):
    q = "?report=true" if report else ""
    return n.call("POST", f"/v1/topics/{TOPIC}/pubsub_probe.Tick{q}", message)


def owner_of(ns, topic=TOPIC):
    for n in ns:
        status, body = n.call("GET", "/v1/grains?kind=troupe.topic")
        if status == 200 and any(g["identity"] == topic for g in body["grains"]):
            return n
    return None


try:
    nodes = [start(name, h) for name, h in zip("abcd", hosts[:4])]
    a, b, c, d = nodes
    check("four nodes with the pub-sub plugin form one cluster", all_alive(nodes),
          str({n.name: n.members() for n in nodes}))
    check("every member hosts the topics (troupe.topic) as a grain kind",
          all("troupe.topic" in {g["kind"] for g in m["grains"]} for m in a.members().values()), str(a.members()))

    # ---- two subscribers on each node
    listeners = []  # (node, actor name)
    acks = []
    for n in nodes:
        for i in (1, 2):
            name = f"l-{n.name}{i}"
            status, body = n.spawn("pubsub.listener", name)
            listeners.append((n, name))
            acks.append(ask(n, name, "pubsub_probe.Join", {"topic": TOPIC}))
    check("subscribe is acknowledged once the topic has it, with its count of subscribers",
          all(x.get("ok") for x in acks) and [x.get("subscribers") for x in acks] == list(range(1, 9)), str(acks))
    want = sorted(f"{n.address}/{name}" for n, name in listeners)
    check("GET /v1/topics/news/subscribers lists the eight, from any node",
          all(subscribers(n) == want for n in nodes), str([subscribers(n) for n in nodes]))
    r = b.ctl("subscribers", TOPIC)
    check("troupectl subscribers lists them", r.returncode == 0 and all(x in r.stdout for x in want),
          r.stdout + r.stderr)

    # ---- an actor subscribes another, on another node
    b.spawn("pubsub.listener", "r-b")
    x = ask(a, "l-a1", "pubsub_probe.JoinFor", {"topic": "elsewhere", "who": f"{b.address}/r-b"})
    check("an actor subscribes an actor of another node (a remote PID); it is acknowledged",
          x.get("ok") is True and x.get("subscribers") == 1, str(x))
    status, body = c.call("POST", "/v1/topics/elsewhere/pubsub_probe.Tick?report=true", {"publisher": "x", "n": 1})
    check("and that actor gets what is published", status == 200 and body.get("delivered") == 1
          and poll(lambda: log_of(b, "r-b"), lambda l: l == [("x", 1)], 10) == [("x", 1)], f"{status} {body}")
    x = ask(a, "l-a1", "pubsub_probe.JoinFor", {"topic": "elsewhere", "who": f"{b.address}/nobody"})
    check("subscribing an actor that does not exist is refused, not acknowledged", x.get("ok") is False, str(x))

    # ---- two publishers at once: every message once, in each one's order
    a.spawn("pubsub.listener", "pub-a")
    c.spawn("pubsub.listener", "pub-c")
    N = 2000
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        blasts = list(pool.map(lambda j: ask(j[0], j[1], "pubsub_probe.Blast",
                                             {"topic": TOPIC, "publisher": j[1], "from": 0, "count": N,
                                              "report": True}),
                               [(a, "pub-a"), (c, "pub-c")]))
    check("each publisher's last batch is reported delivered to every subscriber, with no failure",
          all(x.get("ok") and x.get("delivered", 0) >= 8 and not x.get("failures") for x in blasts), str(blasts))
    expect = {p: list(range(N)) for p in ("pub-a", "pub-c")}

    def complete(n, name):
        got = log_of(n, name)
        return {p: [k for q, k in got if q == p] for p in expect} == expect and len(got) == 2 * N
    done = poll(lambda: all(complete(n, name) for n, name in listeners), lambda ok: ok, 20)
    check(f"all eight subscribers got the {2 * N} messages once each, in each publisher's order", done,
          str({name: len(log_of(n, name)) for n, name in listeners}))
    scrapes = {n.name: n.scrape() for n in nodes}
    check("troupe_pubsub_published_total counts what each node's actors published",
          metric(scrapes["a"], "troupe_pubsub_published_total") >= N
          and metric(scrapes["c"], "troupe_pubsub_published_total") >= N, scrapes["a"][-500:])
    check("troupe_pubsub_delivered_total counts each node's deliveries; troupe_pubsub_subscribers{topic} its subscribers",
          all(metric(s, "troupe_pubsub_delivered_total") >= 2 * 2 * N
              and metric(s, "troupe_pubsub_subscribers", '{topic="news"}') == 2 for s in scrapes.values()),
          str({k: (metric(s, "troupe_pubsub_delivered_total"), metric(s, "troupe_pubsub_subscribers", '{topic="news"}'))
               for k, s in scrapes.items()}))

    # ---- operators and clients
    status, body = publish(b, {"publisher": "http", "n": 7}, report=True)
    check("POST /v1/topics/{topic}/{type}?report=true answers with the delivery report",
          status == 200 and body.get("delivered") == 8 and body.get("failures") == [], f"{status} {body}")
    r = d.ctl("publish", TOPIC, "pubsub_probe.Tick", '{"publisher": "ctl", "n": 8}')
    check("troupectl publish publishes", r.returncode == 0, r.stdout + r.stderr)
    check("both reached every subscriber",
          poll(lambda: all(log_of(n, name)[-2:] == [("http", 7), ("ctl", 8)] for n, name in listeners),
               lambda ok: ok, 10), str([log_of(n, name)[-2:] for n, name in listeners]))
    status, body = publish(b, {"nope": 1})
    check("a body that does not fit the type is a 400", status == 400, f"{status} {body}")

    # ---- a slow subscriber only fills its own mailbox
    status, body = d.spawn("pubsub.slow", "slow")
    x = ask(d, "slow", "pubsub_probe.Join", {"topic": "busy"})
    fast = [(n, f"f-{n.name}") for n in (a, b, c)]
    for n, name in fast:
        n.spawn("pubsub.listener", name)
        ask(n, name, "pubsub_probe.Join", {"topic": "busy"})
    x = ask(a, "pub-a", "pubsub_probe.Blast", {"topic": "busy", "publisher": "burst", "from": 0, "count": 500})
    check("a burst of 500 reaches every fast subscriber in full",
          poll(lambda: all(len(log_of(n, name)) == 500 for n, name in fast), lambda ok: ok, 15),
          str([len(log_of(n, name)) for n, name in fast]))
    full = poll(lambda: metric(d.scrape(), "troupe_pubsub_delivery_failures_total", '{reason="mailbox_full"}'),
                lambda v: v and v > 0, 10)
    got = poll(lambda: len(log_of(d, "slow")), lambda k: k + (full or 0) >= 500, 15)
    check("the slow one, with a mailbox of 20, got part of it; the rest is counted mailbox_full, none lost uncounted",
          full and 20 <= got < 500 and got + full == 500, f"got {got}, mailbox_full {full}")

    # ---- the news example plugin, as its docs use it
    for n in (a, c):
        n.spawn("news.reader", "reader")
    follows = [ask(n, "reader", "news.Follow", {"topic": "world"}) for n in (a, c)]
    b.spawn("news.reader", "reader")
    posted = ask(b, "reader", "news.Post", {"topic": "world", "text": "Hello"})
    check("the news example: two readers follow a topic, a third posts, and hears both got it",
          [f.get("ok") for f in follows] == [True, True] and posted.get("ok") is True
          and posted.get("delivered") == 2 and not posted.get("missed"), f"{follows} {posted}")
    check("each reader has the headline",
          all(poll(lambda n=n: ask(n, "reader", "news.Read", {}).get("texts"), lambda t: t == ["Hello"], 10)
              == ["Hello"] for n in (a, c)), "")

    # ---- unsubscribe, and a subscriber that stops
    x = ask(b, "l-b2", "pubsub_probe.Leave", {"topic": TOPIC})
    check("unsubscribe is acknowledged, with the count left", x.get("ok") and x.get("subscribers") == 7, str(x))
    status, _ = b.call("DELETE", "/v1/actors/l-b1")
    listeners = [(n, name) for n, name in listeners if n is not b]
    check("a subscriber that stops is dropped from the list",
          poll(lambda: subscribers(a), lambda s: s == sorted(f"{n.address}/{name}" for n, name in listeners), 10)
          == sorted(f"{n.address}/{name}" for n, name in listeners), str(subscribers(a)))

    # ---- a subscriber node killed with kill -9
    owner = owner_of(nodes)
    victim = next(n for n in (c, d) if n is not owner)
    # Its subscribers of each topic, counted by the topic's owner (if it survives):
    # two of news, one of busy (f-c or slow), and on c the news reader's one of world.
    on_victim = {"news": 2, "busy": 1, "world": 1 if victim is c else 0}
    expect_lost = sum(k for t, k in on_victim.items() if owner_of(nodes, t) is not victim)
    victim.p.send_signal(signal.SIGKILL)
    victim.p.wait()
    survivors = [n for n in nodes if n is not victim]
    check(f"{victim.name}, killed with kill -9, is declared dead",
          poll(lambda: a.members().get(victim.name, {}).get("status"), lambda s: s == "dead", 20) == "dead", "")
    status, body = publish(a, {"publisher": "http", "n": 9}, report=True)
    lost = sorted(f["actor"] for f in body.get("failures", []) if f.get("reason") == "node_lost")
    check("the next delivery report names its subscribers, node_lost",
          status == 200 and lost == sorted(f"{victim.address}/l-{victim.name}{i}" for i in (1, 2)), f"{status} {body}")
    lost_counted = poll(lambda: sum(metric(n.scrape(), "troupe_pubsub_delivery_failures_total",
                                           '{reason="node_lost"}') or 0 for n in survivors),
                        lambda v: v == expect_lost, 5)
    check("and counted: troupe_pubsub_delivery_failures_total{reason=\"node_lost\"}", lost_counted == expect_lost,
          f"{lost_counted}, expected {expect_lost}")
    listeners = [(n, name) for n, name in listeners if n is not victim]
    check("and they are off the list",
          subscribers(a) == sorted(f"{n.address}/{name}" for n, name in listeners), str(subscribers(a)))

    # ---- the topic's owner killed: its subscribers stay, delivery resumes
    owner = owner_of(survivors)
    check("the topic has an owner among the survivors", owner is not None, "")
    rest = [n for n in survivors if n is not owner]
    owner.p.send_signal(signal.SIGKILL)
    owner.p.wait()
    check("the owner, killed with kill -9, is declared dead",
          poll(lambda: rest[0].members().get(owner.name, {}).get("status"), lambda s: s == "dead", 20) == "dead", "")
    listeners = [(n, name) for n, name in listeners if n is not owner]
    status, body = publish(rest[0], {"publisher": "after", "n": 10}, report=True)
    check("a new owner asks the members for their subscribers: its first report counts one delivery to each",
          status == 200 and body.get("delivered") == len(listeners), f"{status} {body}")
    check("and delivery resumes to every one of them",
          poll(lambda: all(log_of(n, name)[-1:] == [("after", 10)] for n, name in listeners), lambda ok: ok, 10),
          str([log_of(n, name)[-1:] for n, name in listeners]))
    check("the list shows them", subscribers(rest[0]) == sorted(f"{n.address}/{name}" for n, name in listeners),
          str(subscribers(rest[0])))

    # ---- a grain subscriber is activated by a delivery
    n0 = rest[0]
    status, body = n0.call("POST", "/v1/grains/pubsub.grain/g1/pubsub_probe.Join", {"topic": TOPIC})
    check("a grain subscribes itself", status == 200 and body["message"]["ok"], f"{status} {body}")
    status, body = n0.call("POST", "/v1/grains/pubsub.grain/g1/pubsub_probe.Passivate", {})
    gone = poll(lambda: sum(n.call("GET", "/v1/grains?kind=pubsub.grain")[1].get("total", 0) for n in rest),
                lambda t: t == 0, 10)
    check("it passivates", status == 200 and gone == 0, f"{status} {body} {gone}")
    status, body = publish(n0, {"publisher": "wake", "n": 11}, report=True)
    check("a publish reaches it", status == 200 and body.get("delivered") == len(listeners) + 1, f"{status} {body}")
    status, body = n0.call("POST", "/v1/grains/pubsub.grain/g1/pubsub_probe.Seen", {})
    check("a new activation got the message: the delivery activated it",
          status == 200 and list(zip(body["message"].get("publishers", []), body["message"].get("numbers", [])))
          == [("wake", 11)], f"{status} {body}")
finally:
    w.stop_all()

finish()
