#!/usr/bin/env python3
"""Routers from plugins (ABI 1.9), on a real node with the gate plugins: a
dispatcher (gate.dispatcher in C++, c.dispatcher in C) makes a pool of
fragile actors and a group of named ones, with each routing; round robin
spreads messages evenly, broadcast reaches every routee, consistent hash
sends one key to one routee, a routee added or removed and a pool resized
show in the routee list; refusals say what and why.

usage: routers_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import shutil
import sys
import tempfile
from urllib.parse import quote

import nodes as nodes_mod
from harness import check, finish
from nodes import poll

NODE, CTL, BUILD_ROOT = sys.argv[1:4]
ROUND_ROBIN, RANDOM, BROADCAST, HASH = range(4)
ADD, REMOVE, RESIZE = range(3)

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp, test_plugins=("gate", "c_gate"))


def routees(n, d, router):
    st, text = n.gate(d, "gate.ListRoutees", {"router": router})
    return [p for p in text.split(",") if p] if st == 0 else None


def counts(n, pids):
    """Messages each routee handled, the Count asked now excluded."""
    out = []
    for p in pids:
        status, body = n.request(quote(p, safe=""), "gate.Count", {})
        out.append(body["message"]["n"] - 1 if status == 200 else None)
    return out


def ticks(n, router, k):
    for _ in range(k):
        n.call("POST", f"/v1/actors/{router}/send", {"type": "gate.Tick", "message": {}})


try:
    n = nodes_mod.node(w, "routers", plugins=("gate", "c_gate"), listen="127.0.0.1:0", kinds="",
                       key=w.secret("k", "a-secret-long-enough-for-the-node"))
    for kind, d, lang in (("gate.dispatcher", "d", "C++"), ("c.dispatcher", "cd", "C")):
        status, body = n.spawn(kind, d)
        check(f"[{lang}] a dispatcher spawns", status == 201, str(body))

        # ---- a round-robin pool
        st, text = n.gate(d, "gate.MakePool", {"kind": "gate.fragile", "size": 3, "routing": ROUND_ROBIN,
                                               "name": f"{d}-rr"})
        pool = poll(lambda: routees(n, d, f"{d}-rr"), lambda r: r is not None and len(r) == 3, 5)
        check(f"[{lang}] a round-robin pool of 3 fragile routees", st == 0 and pool and len(pool) == 3,
              f"{st} {text} {pool}")
        st, body = n.call("GET", f"/v1/actors/{quote(pool[0], safe='')}") if pool else (0, {})
        check(f"[{lang}] its routees are the router's children, of the kind asked",
              st == 200 and body.get("kind") == "gate.fragile", str(body))
        ticks(n, f"{d}-rr", 9)
        got = counts(n, pool or [])
        check(f"[{lang}] 9 messages to the router: 3 to each routee", got == [3, 3, 3], str(got))

        # ---- broadcast, through the router's management
        st, _ = n.gate(d, "gate.Blast", {"router": f"{d}-rr"})
        got = counts(n, pool or [])  # the 3 ticks, the Count before, the broadcast
        check(f"[{lang}] a broadcast reaches every routee", st == 0 and got == [5, 5, 5], str(got))

        # ---- resize
        st, _ = n.gate(d, "gate.Manage", {"router": f"{d}-rr", "op": RESIZE, "change": 2})
        grown = poll(lambda: routees(n, d, f"{d}-rr"), lambda r: r is not None and len(r) == 5, 5)
        check(f"[{lang}] a pool resized by +2 has 5 routees", st == 0 and grown and len(grown) == 5, str(grown))

        # ---- consistent hash
        n.gate(d, "gate.MakePool", {"kind": "gate.fragile", "size": 4, "routing": HASH, "name": f"{d}-ch"})
        hashed = poll(lambda: routees(n, d, f"{d}-ch"), lambda r: r is not None and len(r) == 4, 5) or []
        st, _ = n.gate(d, "gate.Keyed", {"router": f"{d}-ch", "key": "customer-17", "n": 10})
        got = counts(n, hashed)
        check(f"[{lang}] consistent hash: 10 messages with one key go to one routee",
              st == 0 and sorted(got) == [0, 0, 0, 10], str(got))
        for k in range(40):
            n.gate(d, "gate.Keyed", {"router": f"{d}-ch", "key": f"k{k}", "n": 1})
        spread = [b - a - 1 for a, b in zip(got, counts(n, hashed))]  # less the Count before
        check(f"[{lang}] ... and 40 keys spread over the routees", sum(spread) == 40 and sum(
            1 for c in spread if c > 0) >= 3, str(spread))
        n.call("POST", f"/v1/actors/{d}-ch/send", {"type": "gate.Tick", "message": {}})
        check(f"[{lang}] a message with no key to a consistent-hash router is a dead letter, counted",
              poll(lambda: n.scrape().count('reason="no_routee"') > 0 and "troupe_dead_letters_total" in n.scrape(),
                   lambda ok: ok, 5), "")

        # ---- a group of named actors, and its management
        names = [f"{d}-g{i}" for i in range(3)]
        for name in names:
            n.spawn("gate.fragile", name)
        st, text = n.gate(d, "gate.MakeGroup", {"names": ",".join(names[:2]), "routing": ROUND_ROBIN,
                                                "name": f"{d}-grp"})
        group = routees(n, d, f"{d}-grp")
        check(f"[{lang}] a group router in front of two named actors", st == 0 and group and len(group) == 2,
              f"{st} {text} {group}")
        ticks(n, f"{d}-grp", 4)
        got = counts(n, names)
        check(f"[{lang}] its messages go to them in turn", got == [2, 2, 0], str(got))
        n.gate(d, "gate.Manage", {"router": f"{d}-grp", "op": ADD, "routee": names[2]})
        added = poll(lambda: routees(n, d, f"{d}-grp"), lambda r: r is not None and len(r) == 3, 5)
        check(f"[{lang}] a routee added", added is not None and len(added) == 3, str(added))
        n.gate(d, "gate.Manage", {"router": f"{d}-grp", "op": REMOVE, "routee": names[0]})
        removed = poll(lambda: routees(n, d, f"{d}-grp"), lambda r: r is not None and len(r) == 2, 5)
        check(f"[{lang}] a routee removed", removed is not None and len(removed) == 2, str(removed))
        n.call("DELETE", f"/v1/actors/{d}-grp")
        check(f"[{lang}] stopping a group router stops none of its routees",
              poll(lambda: n.call("GET", f"/v1/actors/{d}-grp")[0] == 404, lambda ok: ok, 5)
              and all(n.call("GET", f"/v1/actors/{x}")[0] == 200 for x in names), "")
        n.call("DELETE", f"/v1/actors/{d}-rr")
        check(f"[{lang}] stopping a pool router stops its routees",
              poll(lambda: all(n.call("GET", f"/v1/actors/{quote(p, safe='')}")[0] == 404 for p in grown or []), lambda ok: ok, 5), "")

        # ---- refusals
        suffix = " (status -1)" if lang == "C++" else ""
        st, text = n.gate(d, "gate.MakePool", {"kind": "gate.fragile", "size": 3, "routing": 7})
        check(f"[{lang}] a routing that does not exist is refused, saying so",
              st == -1 and text == "spawn of a router of 'gate.fragile' failed: routing 7 is not one of "
                                   "TROUPE_ROUTE_ROUND_ROBIN, _RANDOM, _BROADCAST, _CONSISTENT_HASH (0 to 3)" + suffix,
              f"{st} {text!r}")
        st, text = n.gate(d, "gate.MakePool", {"kind": "gate.fragile", "size": 0})
        check(f"[{lang}] a pool of 0 routees is refused, saying so",
              st == -1 and text == "spawn of a router of 'gate.fragile' failed: a pool has 1 to 10000 routees, "
                                   "not 0" + suffix, f"{st} {text!r}")
        st, text = n.gate(d, "gate.MakePool", {"kind": "no.such", "size": 2})
        check(f"[{lang}] a pool of a kind nobody registered is refused, saying so",
              st == -4 and text.startswith("spawn of a router of 'no.such' failed: no loaded plugin has a kind "
                                           "'no.such'"), f"{st} {text!r}")
        if lang == "C":
            st, text = n.gate(d, "gate.Manage", {"router": f"{d}-ch", "op": 5})
            check("[C] a management op that does not exist is refused, saying so",
                  st == -1 and text == "router_manage: op 5 is not one of TROUPE_ROUTER_ADD, _REMOVE, _RESIZE (0 to 2)",
                  f"{st} {text!r}")
        st, text = n.gate(d, "gate.Manage", {"router": f"{d}-ch", "op": RESIZE, "change": 0})
        check(f"[{lang}] a resize by 0 is refused, saying so",
              st == -1 and text == "router_manage: a pool grows or shrinks by 1 to 10000 routees, not 0" + suffix,
              f"{st} {text!r}")
    check("the node goes on", n.p.poll() is None and n.call("GET", "/v1/actors/d")[0] == 200, "")
finally:
    w.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)

finish()
