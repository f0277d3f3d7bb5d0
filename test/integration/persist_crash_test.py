#!/usr/bin/env python3
"""Nothing acknowledged is lost: 100 persistent actors (the persist_probe
test plugin) persist one event after another, and after each
acknowledgement tell an observer in this process (a UNIX datagram socket)
which event of theirs it was. The node is killed with kill -9 at a random
moment, started again, the actors carry on from where their journals end,
and it is killed again. Then each actor's journal, read through the admin
API as an operator would, must hold every acknowledged event, numbered
1, 2, 3, ... without a gap, none twice, each carrying the number its
writer meant it to have; and of the events persisted together (every
tenth persist writes three), all or none. The journal sorts its log every
500 events here, so that the kills also land between, and during, sorts.
With --postgres, the journal is in a PostgreSQL server of the test's own
(pg.py) instead: the kills then land between a commit and its answer.

usage: persist_crash_test.py TROUPE_NODE TROUPECTL BUILD_ROOT [--postgres] [SEED]
"""
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse

import nodes as nodes_mod
from harness import check, finish

NODE, CTL, BUILD_ROOT = sys.argv[1:4]
rest = sys.argv[4:]
postgres = "--postgres" in rest
rest = [a for a in rest if a != "--postgres"]
rng = random.Random(int(rest[0]) if rest else time.time_ns())
ACTORS = 100

tmp = tempfile.mkdtemp()
w = nodes_mod.world(NODE, CTL, BUILD_ROOT, tmp)
shutil.copy(os.path.join(BUILD_ROOT, "test", "plugins", "persist_probe.so"), w.plugin_dir)
key = w.secret("cluster.key", "a-secret-long-enough-for-the-cluster")
state = os.path.join(tmp, "state")
server = None
STORE = "persistence: { provider: sqlite, sort_after_events: 500 }\n"
if postgres:
    import pg
    server = pg.server()
    conninfo = w.secret("pg.conninfo", server.conninfo())
    STORE = f"persistence: {{ provider: postgres, postgres_conninfo_file: {conninfo} }}\n"

# The observer: what the actors said was acknowledged.
observer_path = os.path.join(tmp, "observer.sock")
observer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
observer.bind(observer_path)
observer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
observer.settimeout(0.2)
acked = {}  # persistence id -> [seq, ...] in the order told
lock = threading.Lock()
listening = threading.Event()
listening.set()


def observe():
    while listening.is_set():
        try:
            data = observer.recv(256).decode()
        except socket.timeout:
            continue
        pid, seq = data.split()
        with lock:
            acked.setdefault(pid, []).append(int(seq))


os.environ["TROUPE_PERSIST_OBSERVER"] = observer_path


def start():
    n = nodes_mod.node(w, "writer", key=key, plugins=("persist_probe",), kinds="",
                       node_extra=f", state_dir: {state}", extra=STORE)
    for i in range(ACTORS):
        n.spawn("persist.writer", f"w{i}")
    return n


def journal(n, pid):
    """Every event of `pid`, through GET /v1/journal, page after page."""
    events, after = [], 0
    while True:
        status, body = n.call("GET", f"/v1/journal/{urllib.parse.quote(pid, safe='')}?after={after}&limit=4096")
        if status != 200:
            raise RuntimeError(f"{pid}: {status} {body}")
        events += body["events"]
        if not body["more"]:
            return events
        after = events[-1]["seq"]


watcher = threading.Thread(target=observe, daemon=True)
watcher.start()
try:
    for round_ in (1, 2):
        n = start()
        time.sleep(rng.uniform(1.0, 3.0))
        n.p.send_signal(signal.SIGKILL)
        n.p.wait()
        time.sleep(0.5)  # what the actors sent before the kill reaches the observer
    listening.clear()
    watcher.join()
    with lock:
        told = {pid: list(seqs) for pid, seqs in acked.items()}
    total = sum(len(s) for s in told.values())
    print(f"info: {total} acknowledgements from {len(told)} actors over two kills")
    check("every actor had events acknowledged", len(told) == ACTORS, str(sorted(told)[:5]))
    # Each actor's acknowledgements: 1, 2, ... in each life, the second
    # life going on from where the journal ended (at least the last
    # acknowledged event of the first).
    bad_order = {pid: s[:10] for pid, s in told.items() if any(b <= a for a, b in zip(s, s[1:]))}
    check("each actor's acknowledgements only go up, across the kill", not bad_order, str(list(bad_order.items())[:3]))

    n = nodes_mod.node(w, "reader", key=key, plugins=("persist_probe",), kinds="",
                       node_extra=f", state_dir: {state}", extra=STORE)
    lost, gaps, wrong, torn = {}, {}, {}, {}
    stored = 0
    for pid, seqs in told.items():
        events = journal(n, pid)
        stored += len(events)
        numbers = [e["seq"] for e in events]
        if numbers != list(range(1, len(numbers) + 1)):
            gaps[pid] = numbers[:10]
        if not set(seqs) <= set(numbers):
            lost[pid] = sorted(set(seqs) - set(numbers))[:10]
        for e in events:
            if e.get("type") != "persist_probe.Written" or e["event"].get("id") != pid or e["event"].get("seq") != e["seq"]:
                wrong[pid] = e
                break
        # Events persisted together are all there, or none.
        for e in events:
            m = e["event"]
            first, of = m.get("first", 0), m.get("of", 1)
            if not all(first <= s <= len(numbers) for s in range(first, first + of)):
                torn[pid] = e
                break
    print(f"info: {stored} events in the journals")
    check("every acknowledged event is in its journal", not lost, str(list(lost.items())[:3]))
    check("each journal is numbered 1, 2, 3, ... without a gap, none twice", not gaps, str(list(gaps.items())[:3]))
    check("each event carries the number its writer meant it to have", not wrong, str(list(wrong.items())[:3]))
    check("events persisted together (every tenth persist: three) are all there, or none", not torn,
          str(list(torn.items())[:3]))
    n.stop()
finally:
    w.stop_all()
    observer.close()
    if server:
        server.stop()

finish()
