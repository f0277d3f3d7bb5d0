#!/usr/bin/env python3
"""Props from plugins (ABI 1.9), on a real node with the gate plugins: a
kind's own props (gate.keeper in C++, c.keeper in C) and a spawn's
(gate.SpawnWith) give an actor its mailbox, throughput and how it
supervises its children, as GET /v1/actors/{id} shows; the node's
configuration of a kind's mailbox wins over both; the keeper's decider
chooses resume, restart or stop by the failure's reason, all-for-one
applies it to every child, and more restarts than the kind allows stop the
child; every props out of range is refused with words that say which field
and why.

usage: props_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import os
import shutil
import sys
import tempfile
import time

import nodes as nodes_mod
from harness import check, finish
from nodes import poll

NODE, CTL, BUILD_ROOT = sys.argv[1:4]

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
for so in ("gate.so", "c_gate.so"):
    shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", so), w.plugin_dir)


def props(n, actor):
    status, body = n.call("GET", f"/v1/actors/{actor}")
    return body.get("props") if status == 200 else None


def spawn_with(n, keeper, kind, name, **p):
    """The keeper spawns `kind` as `name`, with props `p` when given."""
    msg = {"kind": kind, "name": name, "with_props": bool(p), **p}
    status, body = n.request(keeper, "gate.SpawnWith", msg)
    return (body["message"].get("status", 0), body["message"].get("text", "")) if status == 200 else (None, body)


def count(n, actor):
    status, body = n.request(actor, "gate.Count", {})
    return body["message"].get("n") if status == 200 else None


def fail(n, actor, reason):
    n.call("POST", f"/v1/actors/{actor}/send", {"type": "gate.Fail", "message": {"reason": reason}})


def gone(n, actor):
    return n.call("GET", f"/v1/actors/{actor}")[0] == 404


try:
    # kinds.gate.relay has a mailbox in the configuration: it wins.
    n = nodes_mod.node(w, "props", plugins=("gate", "c_gate"), listen="127.0.0.1:0",
                       key=w.secret("k", "a-secret-long-enough-for-the-node"),
                       kinds="gate.relay: { mailbox: { capacity: 5, overflow: drop_oldest } }")

    # ---- a kind's props (C++), shown by the admin API
    status, body = n.spawn("gate.keeper", "k")
    check("[C++] a kind with props spawns", status == 201, str(body))
    p = props(n, "k")
    check("[C++] the kind's props are the actor's: mailbox, throughput, supervision",
          p is not None and p["mailbox"] == "drop_oldest" and p["capacity"] == 64 and p["throughput"] == 7
          and p["supervision"] == {"scope": "all_for_one", "max_restarts": 3, "restart_window_ms": 10000,
                                   "decider": True, "backoff_ms": [5, 50]}, str(p))
    status, body = n.spawn("gate.door", "plain")
    p = props(n, "plain")
    check("a kind without props gets the node's: 10,000 messages dropping the newest, 300 a turn, "
          "one-for-one restarts",
          p is not None and p["mailbox"] == "drop_newest" and p["capacity"] == 10000 and p["throughput"] == 300
          and p["supervision"]["scope"] == "one_for_one" and not p["supervision"]["decider"], str(p))

    # ---- a spawn's props
    st, text = spawn_with(n, "k", "gate.fragile", "f1")
    check("[C++] a child spawned without props of its own", st == 0 and "/" in text, text)
    st, text = spawn_with(n, "k", "gate.fragile", "f2", mailbox=2, capacity=16, throughput=9, supervision=2)
    p = props(n, "f2")
    check("[C++] a child spawned with props of its own: block 16, 9 a turn, all-for-one",
          st == 0 and p is not None and p["mailbox"] == "block" and p["capacity"] == 16 and p["throughput"] == 9
          and p["supervision"]["scope"] == "all_for_one", f"{text} {p}")
    st, text = spawn_with(n, "k", "gate.relay", "r1", mailbox=1)
    p = props(n, "r1")
    check("the configuration's mailbox wins over a spawn's props",
          st == 0 and p is not None and p["mailbox"] == "drop_oldest" and p["capacity"] == 5, f"{text} {p}")

    # ---- refusals, in words
    refusals = [
        ({"mailbox": 3}, -1, "a bounded mailbox needs a capacity of 1 to 100000000 messages, not 0"),
        ({"mailbox": 9}, -1, "mailbox 9 is not one of TROUPE_MAILBOX_NODE, _UNBOUNDED, _BLOCK, _DROP_NEWEST, "
                             "_DROP_OLDEST (0 to 4)"),
        ({"mailbox": 1, "capacity": 5}, -1, "a capacity (5) needs a bounded mailbox (block, drop_newest, "
                                            "drop_oldest)"),
        ({"throughput": 2000000}, -1, "throughput 2000000 is over 1000000 messages a turn"),
        ({"supervision": 3}, -1, "supervision 3 is not one of TROUPE_SUPERVISE_NODE, _ONE_FOR_ONE, _ALL_FOR_ONE "
                                 "(0 to 2)"),
    ]
    for p, want_status, words in refusals:
        for keeper, lang, suffix in (("k", "C++", " (status -1)"), ("ck", "C", "")):
            if lang == "C" and n.call("GET", "/v1/actors/ck")[0] != 200:
                n.spawn("c.keeper", "ck")
            st, text = spawn_with(n, keeper, "gate.fragile", "", **p)
            check(f"[{lang}] a spawn with {p} is refused: {words}",
                  st == want_status and text == "spawn of 'gate.fragile' failed: " + words + suffix, f"{st} {text!r}")
    st, text = spawn_with(n, "k", "no.such", "", mailbox=1)
    check("[C++] a spawn with props of a kind nobody registered is refused, saying so",
          st == -4 and text == "spawn of 'no.such' failed: no loaded plugin has a kind 'no.such' (status -4)", text)
    st, text = spawn_with(n, "ck", "gate.fragile", "f1", mailbox=1)
    check("[C] a spawn with props under a name in use is refused, saying so",
          st == -5 and text == "spawn of 'gate.fragile' failed: an actor named 'f1' is alive", text)

    # ---- the C keeper's kind props (registered after a refusal in init)
    p = props(n, "ck")
    check("[C] the kind's props are the actor's (after init saw a bad one refused, with last_error's words)",
          p is not None and p["mailbox"] == "drop_newest" and p["capacity"] == 8 and p["throughput"] == 5
          and p["supervision"] == {"scope": "one_for_one", "max_restarts": 2, "restart_window_ms": 1000,
                                   "decider": True}, str(p))

    # ---- the C++ keeper's decider and all-for-one (f1, f2 are its children)
    for _ in range(3):
        count(n, "f1")
    count(n, "f2")
    fail(n, "f1", "please resume")
    time.sleep(0.2)
    check("[C++] the decider resumes a child that says 'resume': its state stays",
          count(n, "f1") == 5 and count(n, "f2") == 2, "")
    fail(n, "f1", "crash")
    time.sleep(0.3)
    c1, c2 = count(n, "f1"), count(n, "f2")
    check("[C++] the decider restarts one that says 'crash', and all-for-one restarts its sibling too",
          c1 == 1 and c2 == 1, f"{c1} {c2}")
    fail(n, "f2", "throw")
    stopped = poll(lambda: gone(n, "f2") and gone(n, "f1"), lambda ok: ok, 5)
    check("[C++] a decider that throws stops the child (and all-for-one, every child)", stopped, "")

    # ---- the C keeper's decider and one-for-one, and its restart limit
    for name in ("c1", "c2"):
        st, text = spawn_with(n, "ck", "gate.fragile", name)
        check(f"[C] the C keeper spawns {name}", st == 0, text)
    count(n, "c1")
    count(n, "c2")
    fail(n, "c1", "please resume")
    time.sleep(0.2)
    check("[C] its decider resumes", count(n, "c1") == 3, "")
    fail(n, "c1", "crash")
    time.sleep(0.2)
    check("[C] its decider restarts, one-for-one: the sibling keeps its state",
          count(n, "c1") == 1 and count(n, "c2") == 2, "")
    fail(n, "c1", "crash")
    time.sleep(0.2)
    fail(n, "c1", "crash")
    check("[C] a third restart within the kind's window (max 2 in 1 s) stops the child instead",
          poll(lambda: gone(n, "c1"), lambda ok: ok, 5) and not gone(n, "c2"), "")
    fail(n, "c2", "nonsense")
    check("[C] a decider's answer that is no directive stops the child",
          poll(lambda: gone(n, "c2"), lambda ok: ok, 5), "")
    fail(n, "f9", "x")  # nobody: nothing happens
    check("the node goes on", n.call("GET", "/v1/actors/k")[0] == 200 and n.p.poll() is None, "")
finally:
    w.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)

finish()
