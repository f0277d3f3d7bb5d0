#!/usr/bin/env python3
"""The EventStream and pipe_to from plugins (ABI 1.10), on a real node with
the gate plugins: listeners (gate.listener in C++, c.listener in C)
subscribe with a type filter and hear dead letters, failures and
supervision decisions with their fields; an event one plugin publishes
reaches the other; an ended subscription hears no more; a piped request
delivers its reply, its dead letter response or its timeout to another
actor; each refusal says what and why.

usage: events_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import shutil
import sys
import tempfile

import nodes as nodes_mod
from harness import check, finish
from nodes import poll

NODE, CTL, BUILD_ROOT = sys.argv[1:4]


def type_id(name):
    h = 0xcbf29ce484222325
    for c in name.encode():
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def hex_of(name):
    return f"{type_id(name):016x}"


tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp, test_plugins=("gate", "c_gate"))


def heard(n, who):
    st, text = n.gate(who, "gate.Heard", {})
    return text.splitlines() if st is not None else []


def hears(n, who, line, timeout=5):
    return poll(lambda: heard(n, who), lambda lines: line in lines, timeout)


try:
    n = nodes_mod.node(w, "events", plugins=("gate", "c_gate"), listen="127.0.0.1:0", kinds="",
                       key=w.secret("k", "a-secret-long-enough-for-the-node"))
    pids = {}
    for p, lang, door in (("", "C++", "gate.door"), ("c", "C", "c.door")):
        listener = "gate.listener" if lang == "C++" else "c.listener"
        for name, kind in ((f"{p}l", listener), (f"{p}m", listener), (f"{p}x", listener), (f"{p}d", door),
                           (f"{p}open", door), (f"{p}shut", door)):
            status, body = n.spawn(kind, name)
            pids[name] = body.get("pid", "")
            check(f"[{lang}] {kind} {name} spawns", status == 201, str(body))
        L, M, X, D = f"{p}l", f"{p}m", f"{p}x", f"{p}d"

        # ---- dead letters, with their fields
        st, sub = n.gate(L, "gate.Listen", {"names": "troupe.system.DeadLetterEvent"})
        check(f"[{lang}] a subscription to dead letters", st == 0 and sub.isdigit() and int(sub) > 0, f"{st} {sub!r}")
        n.call("POST", f"/v1/actors/{D}/send", {"type": "gate.Paint", "message": {"colour": "red"}})
        line = f"dead_letter who={pids[D]} type={hex_of('gate.Paint')} reason=12"
        got = hears(n, L, line)
        check(f"[{lang}] an unhandled message is heard as a dead letter: its target, type and reason",
              got and line in got, str(got))

        # ---- failures and supervision decisions
        st, _ = n.gate(M, "gate.Listen", {"names": "troupe.system.ActorFailedEvent,troupe.system.SupervisionEvent"})
        check(f"[{lang}] a subscription to two types", st == 0, "")
        n.call("POST", f"/v1/actors/{D}/send", {"type": "gate.Break", "message": {}})
        failed = f"failed who={pids[D]} text=the door broke"
        decided = f"supervision who={pids[D]} reason=1 text=the door broke"
        got = poll(lambda: heard(n, M), lambda lines: failed in lines and decided in lines, 5)
        check(f"[{lang}] a failure and its supervisor's restart are heard, with the reason",
              got and failed in got and decided in got, str(got))
        check(f"[{lang}] ... and no dead letter by that filter", got and not any(
            x.startswith("dead_letter") for x in got), str(got))

        # ---- unsubscribe: no more events
        st, _ = n.gate(L, "gate.Unlisten", {"id": int(sub) if sub.isdigit() else 0})
        check(f"[{lang}] unsubscribe", st == 0, "")
        n.gate(X, "gate.Listen", {"names": "troupe.system.DeadLetterEvent"})
        n.call("POST", f"/v1/actors/{D}/send", {"type": "gate.Paint", "message": {}})
        # X got the event, so L's mailbox would have had it before the Heard asked next.
        hears(n, X, line)
        got = heard(n, L)
        check(f"[{lang}] an ended subscription hears no more", sum(1 for x in got if x == line) == 1, str(got))
        st, text = n.gate(L, "gate.Unlisten", {"id": int(sub) if sub.isdigit() else 0})
        suffix = " (status -6)" if lang == "C++" else ""
        check(f"[{lang}] unsubscribing twice is refused, saying so",
              st == -6 and text == f"event_unsubscribe: this actor has no subscription {sub}" + suffix, f"{st} {text!r}")

        # ---- pipe_to
        n.call("POST", f"/v1/actors/{p}open/send", {"type": "gate.Open", "message": {}})
        st, _ = n.gate(L, "gate.Pipe", {"to": f"{p}open", "n": 5, "timeout_ms": 2000, "target": M})
        line = f"reply n=5 from={pids[L]}"
        got = hears(n, M, line)
        check(f"[{lang}] a piped request's reply goes to the target, the piping actor its sender",
              st == 0 and got and line in got, str(got))
        n.gate(L, "gate.Pipe", {"to": f"{p}shut", "n": 6, "timeout_ms": 300, "target": M})
        line = f"timed_out who={pids[p + 'shut']} type={hex_of('gate.Knock')} from={pids[L]}"
        got = hears(n, M, line)
        check(f"[{lang}] a piped request with no reply in time delivers RequestTimedOut: whom it asked, what",
              got and line in got, str(got))
        n.call("DELETE", f"/v1/actors/{p}shut")
        poll(lambda: n.call("GET", f"/v1/actors/{p}shut")[0], lambda s: s == 404, 5)
        st, text = n.gate(L, "gate.Pipe", {"to": "nobody", "n": 7, "timeout_ms": 2000, "target": M})
        line = f"dead_letter_response who=none reason=0 from={pids[L]}"
        got = hears(n, M, line)
        check(f"[{lang}] a piped request to no actor delivers its dead letter response",
              got and line in got, f"{st} {text} {got}")
        st, text = n.gate(L, "gate.Pipe", {"to": f"{p}open", "n": 8, "timeout_ms": 2000, "target": "nobody"})
        expected = "pipe_to: no target to deliver the outcome to"
        check(f"[{lang}] a pipe with no target is refused, saying so",
              st == -1 and text == expected + (" (status -1)" if lang == "C++" else ""), f"{st} {text!r}")

        # ---- refusals
        suffix = " (status -1)" if lang == "C++" else ""
        names = ",".join(f"gate.Announce{i}" for i in range(65))
        st, text = n.gate(X, "gate.Listen", {"names": names})
        check(f"[{lang}] a filter of 65 types is refused, saying so",
              st == -1 and text == "event_subscribe: a filter has at most 64 types, this one has 65" + suffix,
              f"{st} {text!r}")
        st, text = n.gate(X, "gate.Listen", {"names": "gate.Nothing"})
        check(f"[{lang}] a type nobody declares is refused, saying so",
              st == -1 and text == f"event_subscribe: type 0x{hex_of('gate.Nothing')} is not an event type: neither "
                                   "the node's nor one a loaded plugin's schema declares" + suffix, f"{st} {text!r}")
        for _ in range(15):  # X has 1 already
            n.gate(X, "gate.Listen", {"names": "gate.Tick"})
        st, text = n.gate(X, "gate.Listen", {"names": "gate.Tick"})
        check(f"[{lang}] a 17th subscription is refused, saying so",
              st == -1 and text == "event_subscribe: this actor has 16 subscriptions already, the most it may have"
              + suffix, f"{st} {text!r}")
        st, text = n.gate(X, "gate.Shout", {"name": "troupe.system.DeadLetterEvent"})
        check(f"[{lang}] publishing the node's event is refused, saying so",
              st == -1 and text == "event_publish: troupe.system.DeadLetterEvent is the node's; only the node "
                                   "publishes it", f"{st} {text!r}")
        st, text = n.gate(X, "gate.Shout", {"name": "gate.Nothing"})
        check(f"[{lang}] publishing a type nobody declares is refused, saying so",
              st == -1 and text == f"event_publish: type 0x{hex_of('gate.Nothing')} is declared by no loaded "
                                   "plugin's schema", f"{st} {text!r}")

    # ---- events from one plugin to the other
    n.gate("l", "gate.Listen", {"names": "gate.Announce"})
    n.gate("cl", "gate.Listen", {"names": "gate.Announce"})
    st_c, _ = n.gate("cm", "gate.Shout", {"n": 7})
    st_cpp, _ = n.gate("m", "gate.Shout", {"n": 8})
    got = poll(lambda: (heard(n, "l"), heard(n, "cl")),
               lambda both: all("announce n=7" in x and "announce n=8" in x for x in both), 5)
    check("an event published in C reaches the C++ listener and back, each once",
          st_c == 0 and st_cpp == 0 and got and all(x.count("announce n=7") == 1 and x.count("announce n=8") == 1
                                                    for x in got), str(got))
    check("a listener that subscribed to nothing hears no announcement",
          not any(x.startswith("announce") for x in heard(n, "x") + heard(n, "cx")), "")

    # ---- a subscription ends with its actor
    def subscribers():
        for line in n.scrape().splitlines():
            if line.startswith("troupe_event_subscribers "):
                return float(line.split()[1])
        return None

    before = subscribers()
    n.call("DELETE", "/v1/actors/x")  # 16 subscriptions
    n.call("DELETE", "/v1/actors/cx")
    after = poll(subscribers, lambda v: v is not None and before is not None and v == before - 32, 5)
    check("an actor's subscriptions end when it stops (troupe_event_subscribers)",
          before is not None and after == before - 32, f"{before} -> {after}")
    check("the node goes on", n.p.poll() is None and n.call("GET", "/v1/actors/m")[0] == 200, "")
finally:
    w.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)

finish()
