#!/usr/bin/env python3
"""Typed services (troupe-embed-schema --services), on a real node with the
typed test plugin: its ledger is written as methods (the generated server)
and called through the generated client by a caller actor, as a grain and
as an actor by PID; every argument type reaches the server; the builder
form; an answer from a later turn; the server answers the admin API too;
a call sent with no caller changes state and answers no one; a message that
is no call is unhandled; the generator refuses what it cannot generate,
saying so.

usage: typed_test.py TROUPE_NODE TROUPECTL BUILD_ROOT EMBED_SCHEMA
"""
import os
import shutil
import subprocess
import sys
import tempfile

import nodes as nodes_mod
from harness import check, finish
from nodes import metric, poll

NODE, CTL, BUILD_ROOT, EMBED = sys.argv[1:5]

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", "typed.so"), w.plugin_dir)


def ask(n, **fields):
    status, body = n.request("caller", "typed.Ask", fields)
    return body.get("message", {}) if status == 200 else {"error": body}


def dead(n, reason):
    return metric(n.scrape(), "troupe_dead_letters_total", f'{{reason="{reason}"}}') or 0


try:
    n = nodes_mod.node(w, "typed", plugins=("typed",), listen="127.0.0.1:0", kinds="",
                       key=w.secret("k", "a-secret-long-enough-for-the-node"))
    status, body = n.spawn("typed.caller", "caller")
    check("a caller spawns", status == 201, str(body))

    # ---- a grain, through the generated client
    a = ask(n, identity="L1", call="put", key="a", amount=5)
    check("a typed call to a grain: its answer, typed", a.get("ok") is True and a.get("amount") == 5
          and a.get("puts") == 1, str(a))
    check("every kind of argument reaches the server (struct, [int], [string], bool)",
          a.get("summary") == "at=3,4 tags=3 labels=red,green urgent=1", str(a))
    a = ask(n, identity="L1", call="put", key="a", amount=5)
    check("the same grain keeps its state between calls", a.get("amount") == 10 and a.get("puts") == 2, str(a))
    a = ask(n, identity="L1", call="read", key="a")
    check("a call with one argument", a.get("ok") is True and a.get("amount") == 10, str(a))
    a = ask(n, identity="L1", call="deep", key="a")
    check("the builder form, for a request with a table in it", a.get("ok") is True and a.get("amount") == 10, str(a))
    a = ask(n, identity="L1", call="slow", key="a", amount=300)
    check("an answer from a later turn (the responder kept until a timer)",
          a.get("ok") is True and a.get("amount") == 10, str(a))
    unanswered = dead(n, "not_found") + dead(n, "stopped")
    a = ask(n, identity="L3", call="put", key="z", amount=9)
    ask(n, identity="L3", call="drop", key="z")
    a = ask(n, identity="L3", call="read", key="z")
    check("a one-way call (troupe_oneway) reaches the grain, and its answer is no dead letter",
          a.get("ok") is True and a.get("amount") == 0 and a.get("puts") == 0
          and dead(n, "not_found") + dead(n, "stopped") == unanswered, str(a))
    a = ask(n, identity="L2", call="read", key="a")
    check("another identity is another grain", a.get("ok") is True and a.get("amount") == 0, str(a))

    status, body = n.call("POST", "/v1/grains/typed.ledger/L1/typed.Read?timeout_ms=3000", {"key": "a"})
    check("the server answers a call from the admin API as well",
          status == 200 and body.get("type") == "typed.Total" and body["message"].get("amount") == 10, str(body))

    # ---- an actor by PID
    status, body = n.spawn("typed.ledger", "book")
    check("a ledger spawned as a named actor", status == 201, str(body))
    a = ask(n, actor="book", call="put", key="b", amount=3)
    check("a typed call to an actor by its PID", a.get("ok") is True and a.get("amount") == 3 and a.get("puts") == 1,
          str(a))

    # ---- a call with no caller, and a message that is no call
    before = dead(n, "not_found") + dead(n, "stopped") + dead(n, "unhandled")
    n.call("POST", "/v1/actors/book/send", {"type": "typed.Put", "message": {"key": "b", "amount": 4}})
    a = ask(n, actor="book", call="read", key="b")
    after = dead(n, "not_found") + dead(n, "stopped") + dead(n, "unhandled")
    check("a call sent with no caller is handled, and its answer goes nowhere (no dead letter)",
          a.get("amount") == 7 and after == before, f"{a} {before} -> {after}")
    unhandled = dead(n, "unhandled")
    n.call("POST", "/v1/actors/book/send", {"type": "typed.Answer", "message": {"ok": True}})
    check("a message that is no call of the service is a dead letter, unhandled",
          poll(lambda: dead(n, "unhandled"), lambda v: v == unhandled + 1, 5) == unhandled + 1, "")

    # ---- failures, as the client's TypedReply says them
    a = ask(n, kind="no.such", identity="x", call="read", key="a")
    check("a call to a kind nobody hosts fails with the reason",
          a.get("ok") is False and a.get("text") == "no member hosts the grain kind 'no.such'", str(a))
    a = ask(n, identity="L1", call="slow", key="a", amount=5000)
    check("a call with no answer in time fails with the reason",
          a.get("ok") is False and a.get("text", "").startswith("no answer from typed.ledger/L1 within 2000 ms"),
          str(a))
    check("the node goes on", n.p.poll() is None, "")
finally:
    w.stop_all()

# ---- what the generator refuses
cases = {
    "none.fbs": ("namespace none; table A {}\n", "--services: the schema has no rpc_service"),
    "twice.fbs": ("namespace twice; table A {} table B {}\nrpc_service S { One(A): B; Two(A): B; }\n",
                  "service twice.S: calls One and Two both take twice.A; the server could not tell them apart"),
}
for name, (text, words) in cases.items():
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([sys.executable, EMBED, "--services", os.path.join(tmp, "out.h"), path,
                        os.path.join(tmp, "out.cpp")], capture_output=True, text=True)
    check(f"the generator refuses {name}, saying so", r.returncode == 1 and
          r.stderr.strip() == f"troupe-embed-schema: {path}: {words}", r.stderr)
shutil.rmtree(tmp, ignore_errors=True)
finish()
