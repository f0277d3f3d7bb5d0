#!/usr/bin/env python3
"""Behaviours, stash and unhandled messages as plugin authors use them, on a
real node with two real plugins: gate (C++, troupe.hpp) and c_gate (plain
C11 against abi.h). A door starts closed and keeps the knocks that come
(stash); opened (become), it answers them in the order they came, then
the new ones; a stacked behaviour comes off again (unbecome); a restart
brings back the first behaviour; a message the door does not handle is a
dead letter with reason `unhandled`, which a requester hears at once (422)
rather than after its timeout, and which the metrics count. A relay (both
languages again) asks a door for its own asker with a request whose reply
handler runs in the relay's turn (answered, timed out, undelivered), and
with a message whose sender is the asker, so that the door answers it,
finds doors by name (lookup), and spawns doors on a second node
(spawn_remote), refused there in the admin API's words.

usage: behaviours_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import os
import shutil
import sys
import tempfile
import threading
import time

import nodes as nodes_mod
from harness import check, finish
from nodes import metric

NODE, CTL, BUILD_ROOT = sys.argv[1:4]

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
for so in ("gate.so", "c_gate.so"):
    shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", so), w.plugin_dir)


def knocks_in_background(n, door, numbers):
    """Knocks n=... sent one after another (so that they arrive in order),
    each waiting for its answer on a thread of its own."""
    answers = {}

    def one(k):
        answers[k] = n.request(door, "gate.Knock", {"n": k}, timeout_ms=15000)

    threads = []
    for k in numbers:
        t = threading.Thread(target=one, args=(k,))
        t.start()
        threads.append(t)
        time.sleep(0.15)
    return threads, answers


def join(threads):
    for t in threads:
        t.join()


def unhandled_count(n):
    return metric(n.scrape(), "troupe_dead_letters_total", '{reason="unhandled"}') or 0


try:
    n = nodes_mod.node(w, "doors", plugins=("gate", "c_gate"), kinds="", listen="127.0.0.1:0",
                       key=w.secret("k", "a-secret-long-enough-for-the-node"))
    for kind, door, lang in (("gate.door", "d1", "C++"), ("c.door", "c1", "C")):
        status, body = n.spawn(kind, door)
        check(f"[{lang}] a door spawns", status == 201, str(body))

        # Closed: knocks wait (stash).
        threads, answers = knocks_in_background(n, door, [1, 2, 3])
        time.sleep(0.5)
        check(f"[{lang}] knocks on a closed door are kept, not answered", not answers, str(answers))

        # Open: become, then every kept knock comes back in, in order.
        status, _ = n.call("POST", f"/v1/actors/{door}/send", {"type": "gate.Open", "message": {}})
        join(threads)
        got = {k: a for k, a in answers.items()}
        ok = all(got.get(k, (0,))[0] == 200 for k in (1, 2, 3))
        check(f"[{lang}] opened, the door answers the three kept knocks", ok, str(got))
        if lang == "C++":
            orders = [got[k][1]["message"].get("order") for k in (1, 2, 3)] if ok else []
            check("[C++] ... in the order they came (unstash_all keeps it)", orders == [1, 2, 3], str(got))
            modes = {got[k][1]["message"].get("mode") for k in (1, 2, 3)} if ok else set()
            check("[C++] ... from the behaviour `open`", modes == {"open"}, str(modes))
        else:
            echoed = [got[k][1]["message"].get("n") for k in (1, 2, 3)] if ok else []
            check("[C] ... each answered with itself", echoed == [1, 2, 3], str(got))

        status, body = n.request(door, "gate.Knock", {"n": 4})
        check(f"[{lang}] a new knock on the open door is answered at once", status == 200, str(body))

        # A stacked behaviour, and back.
        n.call("POST", f"/v1/actors/{door}/send", {"type": "gate.Peek", "message": {}})
        if lang == "C++":
            status, body = n.request(door, "gate.Knock", {"n": 5})
            check("[C++] become_stacked: the knock is answered by `peeking`",
                  status == 200 and body["message"].get("mode") == "peeking", str(body))
            n.call("POST", f"/v1/actors/{door}/send", {"type": "gate.Unpeek", "message": {}})
            status, body = n.request(door, "gate.Knock", {"n": 6})
            check("[C++] unbecome: back to `open`", status == 200 and body["message"].get("mode") == "open", str(body))
        else:
            threads, answers = knocks_in_background(n, door, [5])
            time.sleep(0.4)
            check("[C] become stacked: in `peeking` a knock waits", not answers, str(answers))
            n.call("POST", f"/v1/actors/{door}/send", {"type": "gate.Unpeek", "message": {}})
            join(threads)
            check("[C] unbecome: back in `open`, the kept knock is answered",
                  answers.get(5, (0,))[0] == 200 and answers[5][1]["message"].get("n") == 5, str(answers))

        # Unhandled: at once, a 422, and counted.
        before = unhandled_count(n)
        t0 = time.time()
        status, body = n.request(door, "gate.Paint", {"colour": "red"}, timeout_ms=10000)
        took = time.time() - t0
        check(f"[{lang}] a message no behaviour handles: the requester hears at once ({took:.2f} s), 422 unhandled",
              status == 422 and body.get("error", {}).get("code") == "unhandled" and took < 2, str(body))
        check(f"[{lang}] ... counted as a dead letter with reason unhandled",
              nodes_mod.poll(lambda: unhandled_count(n), lambda v: v == before + 1, 5) == before + 1)

        # A restart brings back the first behaviour: closed.
        n.call("POST", f"/v1/actors/{door}/send", {"type": "gate.Break", "message": {}})
        time.sleep(0.3)
        threads, answers = knocks_in_background(n, door, [7])
        time.sleep(0.5)
        check(f"[{lang}] after a failure and restart the door is closed again (the knock waits)", not answers,
              str(answers))
        n.call("POST", f"/v1/actors/{door}/send", {"type": "gate.Open", "message": {}})
        join(threads)
        check(f"[{lang}] ... and opening it lets the knock in", answers.get(7, (0,))[0] == 200, str(answers))

    # Requests answered in the asking actor's turn (ABI 1.8). The doors are
    # open now; a third door, closed, never answers.
    status, body = n.spawn("gate.door", "shut")
    check("a closed door spawns", status == 201, str(body))
    pid_of = {d: n.call("GET", f"/v1/actors/{d}")[1].get("pid", "") for d in ("d1", "c1", "shut")}
    check("the doors' PIDs are listed", all(pid_of.values()), str(pid_of))
    for kind, relay, door, lang in (("gate.relay", "r1", "d1", "C++"), ("c.relay", "cr1", "c1", "C")):
        status, body = n.spawn(kind, relay)
        check(f"[{lang}] a relay spawns", status == 201, str(body))
        status, body = n.request(relay, "gate.Relay", {"to": pid_of[door], "n": 41})
        check(f"[{lang}] request with a reply handler: the door's reply comes back to the relay's turn, "
              "whose respond() answers the relay's own asker",
              status == 200 and body.get("type") == "gate.Relayed" and body["message"].get("n") == 41
              and body["message"].get("status", 0) == 0, str(body))
        t0 = time.time()
        status, body = n.request(relay, "gate.Relay", {"to": pid_of["shut"], "n": 42, "timeout_ms": 300},
                                 timeout_ms=5000)
        took = time.time() - t0
        check(f"[{lang}] no reply within the request's 300 ms: the handler runs with status timeout "
              f"(answered after {took:.2f} s)",
              status == 200 and body["message"].get("n") == -1 and body["message"].get("status") == 1
              and 0.25 < took < 3, str(body))
        status, body = n.request(relay, "gate.Relay", {"to": door, "n": 46})
        check(f"[{lang}] lookup: the door named '{door}' found by its name alone",
              status == 200 and body["message"].get("n") == 46 and body["message"].get("status", 0) == 0, str(body))
        status, body = n.request(relay, "gate.Relay", {"to": "nobody-here", "n": 47})
        check(f"[{lang}] lookup of a name no actor has: nothing, so the request is a dead letter",
              status == 200 and body["message"].get("status") == 2, str(body))
        gone = pid_of[door].rsplit("/", 1)[0] + "/nobody-here"
        status, body = n.request(relay, "gate.Relay", {"to": gone, "n": 43})
        check(f"[{lang}] a PID with no actor: the handler runs with status dead_letter",
              status == 200 and body["message"].get("n") == -1 and body["message"].get("status") == 2, str(body))
        # (The C door answers a knock with the knock itself.)
        answer = "gate.Entered" if lang == "C++" else "gate.Knock"
        status, body = n.request(relay, "gate.Relay", {"to": pid_of[door], "n": 44, "direct": True})
        check(f"[{lang}] a message sent with the asker as its sender: the door answers the asker itself",
              status == 200 and body.get("type") == answer and body["message"].get("n") == 44, str(body))
        status, body = n.request(relay, "gate.Relay", {"to": gone, "n": 45, "direct": True})
        check(f"[{lang}] ... and when it cannot be delivered, the asker hears where it went and why (404)",
              status == 404 and body.get("error", {}).get("message", "") ==
              f"'{relay}' passed the request on to an actor, which does not exist", str(body))

    # spawn_remote (ABI 1.8): on another node that lets peers spawn
    # gate.door only; its refusals in the admin API's words.
    far = nodes_mod.node(w, "far", plugins=("gate", "c_gate"), kinds="gate.door: { remote_spawn: true }",
                         listen="127.0.0.1:0", key=w.secret("k", "a-secret-long-enough-for-the-node"))

    def spawn_on(relay, address, kind, name):
        status, body = n.request(relay, "gate.SpawnOn", {"address": address, "kind": kind, "name": name},
                                 timeout_ms=10000)
        assert status == 200 and body.get("type") == "gate.SpawnedOn", body
        return body["message"].get("status", 0), body["message"].get("text", "")

    def admin_refusal(kind, name):
        status, body = n.call("POST", "/v1/actors", {"kind": kind, "name": name, "node": far.address})
        return status, body.get("error", {}).get("message", "")

    TROUPE_ERR_UNKNOWN_KIND, TROUPE_ERR_NAME_TAKEN, TROUPE_ERR_STATE, TROUPE_ERR_UNAVAILABLE = -4, -5, -2, -7
    for relay, lang, name in (("r1", "C++", "far-door"), ("cr1", "C", "far-door-c")):
        code, text = spawn_on(relay, far.address, "gate.door", name)
        check(f"[{lang}] spawn_remote: a door spawned on the other node, its PID there",
              code == 0 and text.startswith(far.address + "/"), f"{code} {text}")
        check(f"[{lang}] ... and the other node runs it",
              far.call("GET", f"/v1/actors/{name}")[0] == 200)
        status, body = n.request(relay, "gate.Relay", {"to": text, "n": 48, "timeout_ms": 300})
        check(f"[{lang}] ... a closed door, reached by that PID: the knock waits (timeout)",
              status == 200 and body["message"].get("status") == 1, str(body))
        for kind, nm, want, what in (("gate.door", name, TROUPE_ERR_NAME_TAKEN, "a name in use"),
                                     ("c.door", name + "-2", TROUPE_ERR_STATE, "a kind not open to peers"),
                                     # (the other node does not say which kinds it has)
                                     ("no.such", name + "-3", TROUPE_ERR_STATE, "a kind nobody registered")):
            code, text = spawn_on(relay, far.address, kind, nm)
            _, words = admin_refusal(kind, nm)
            check(f"[{lang}] spawn_remote refused for {what}: status {want}, in the admin API's words",
                  code == want and text == words and text != "", f"{code} {text!r} vs {words!r}")
        code, text = spawn_on(relay, n.address, "no.such", name + "-5")
        status, body = n.call("POST", "/v1/actors", {"kind": "no.such", "name": name + "-5"})
        check(f"[{lang}] spawn_remote to this node's own address spawns here: an unknown kind is said so",
              code == TROUPE_ERR_UNKNOWN_KIND and text == body.get("error", {}).get("message"), f"{code} {text}")
        code, text = spawn_on(relay, n.address, "gate.door", name + "-here")
        check(f"[{lang}] ... and a known one runs here", code == 0 and text.startswith(n.address + "/")
              and n.call("GET", f"/v1/actors/{name}-here")[0] == 200, f"{code} {text}")
        code, text = spawn_on(relay, f"127.0.0.1:{nodes_mod.free_port('127.0.0.1')}", "gate.door", name + "-4")
        check(f"[{lang}] spawn_remote to a node that is not there: unavailable, and why",
              code == TROUPE_ERR_UNAVAILABLE and text != "", f"{code} {text}")
    far.stop()

    check("the dead-letter log names the reason unhandled",
          any("unhandled" in l for l in n.err.lines), "\n".join(n.err.lines[-10:]))
    n.stop()
finally:
    w.stop_all()

finish()
