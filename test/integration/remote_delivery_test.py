#!/usr/bin/env python3
"""Delivery between real troupe-node processes when the link between them
breaks: every message is delivered once, in order per sender and receiver,
or counted as a dead letter with a reason; a request whose message can
never be confirmed fails at once. The link is cut by a proxy the test runs
on loopback (the receiving node advertises the proxy's address): while cut,
it swallows what it is sent and holds new connections silent, as a
partition does; then it lets connections through again.

usage: remote_delivery_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

from harness import check, finish
import nodes as nodes_mod
from nodes import metric, poll, world

NODE, CTL, BUILD_ROOT = sys.argv[1], sys.argv[2], sys.argv[3]
tmp = tempfile.mkdtemp()
w = world(NODE, CTL, BUILD_ROOT, tmp)
key = w.secret("cluster.key", "the-cluster-secret-of-this-test")


class cutter:
    """A TCP proxy from a loopback port to `target` that can cut the link."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.target = None
        self.cut_ = False
        self.swallowed = 0
        self.links = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        # While cut, a new connection is held silent (a partition: no
        # refusal, no answer) until the cut ends or it is given up on.
        while self.cut_:
            time.sleep(0.05)
        try:
            u = socket.create_connection(("127.0.0.1", int(self.target.rsplit(":", 1)[1])), timeout=5)
        except OSError:
            c.close()
            return
        with self.lock:
            self.links.append((c, u))
        threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
        threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.cut_:
                    self.swallowed += len(data)  # lost in the partition
                    continue
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def cut(self):
        self.cut_ = True

    def heal(self):
        """Ends the cut: links open during it are reset (their bytes are
        gone), new ones go through."""
        with self.lock:
            links, self.links = self.links, []
        for pair in links:
            for s in pair:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                except OSError:
                    pass
        self.cut_ = False


def dead_letters(n, reason):
    return metric(n.scrape(), "troupe_dead_letters_total", f'{{reason="{reason}"}}') or 0


def stats(n, actor):
    return n.ask(actor)


def burst(n, to, count, out):
    status, body = n.request("sender", "troupe.test.Burst", {"to": to, "count": count}, timeout_ms=60000)
    out.append((status, body))


def pair(name_a, name_b, unreachable_ms):
    """Two nodes, each behind a cutter of its own (both dial through them),
    so that cutting both is a partition between them."""
    pa, pb = cutter(), cutter()
    extra = f", unreachable_timeout_ms: {unreachable_ms}"
    x = nodes_mod.node(w, name_a, key=key, node_extra=f", advertise: '{pa.address}'", remote_extra=extra)
    y = nodes_mod.node(w, name_b, key=key, node_extra=f", advertise: '{pb.address}'", remote_extra=extra)
    pa.target, pb.target = x.listen, y.listen
    return x, y, pa, pb


def cut(*ps):
    for p in ps:
        p.cut()


def heal(*ps):
    for p in ps:
        p.heal()


# ---- a partition of 6 s while 50,000 messages are in flight, shorter than
# remote.unreachable_timeout_ms: all arrive once, in order, by resending.
a, b, pa, pb = pair("node-a", "node-b", 30000)
if not (a.address and b.address and a.listen and b.listen):
    check("two nodes start", False, a.err.text() + b.err.text())
    w.stop_all()
    finish()
b.spawn("probe.sink", "sink")
b.spawn("echo", "echo")
a.spawn("probe.sender", "sender")
a.spawn("probe.relay", "relay")
status, body = a.relay(f"{b.address}/echo", 1)
check("a node reaches another through the proxies", status == 200 and body["message"] == {"n": 1},
      f"{status} {body}\n{a.err.text()[-1000:]}")

cut(pa, pb)
out = []
burst(a, f"{b.address}/sink", 50000, out)
time.sleep(6)
heal(pa, pb)
final = poll(lambda: stats(b, "sink"), lambda m: m.get("received", 0) >= 50000, 60)
check("50,000 messages sent into a 6 s partition all arrive once, in order",
      out and out[0][0] == 200 and final.get("received") == 50000 and final.get("out_of_order") == 0
      and final.get("backwards") == 0 and final.get("last") == 50000 and pa.swallowed + pb.swallowed > 0,
      f"{out} {final} swallowed={pa.swallowed}+{pb.swallowed}\n{a.err.text()[-1500:]}")
text = a.scrape()
check("what the partition swallowed was sent again, and counted",
      (metric(text, "troupe_remote_resent_total") or 0) > 0 and dead_letters(a, "unconfirmed") == 0
      and a.err.has("unacknowledged items", 1), text[-1500:])
time.sleep(0.5)
again = stats(b, "sink")
check("nothing arrives twice afterwards", again.get("received") == 50000, str(again))
status, body = a.relay(f"{b.address}/echo", 2)
check("the link serves requests again after the partition", status == 200 and body["message"] == {"n": 2},
      f"{status} {body}")
# A watch survives a partition that ends in time: no NodeLost.
a.spawn("probe.sink", "watcher")
a.request("watcher", "troupe.test.WatchPid", {"pid": f"{b.address}/echo"})
cut(pa, pb)
time.sleep(3)
heal(pa, pb)
status, body = poll(lambda: a.relay(f"{b.address}/echo", 3, timeout_ms=2000),
                    lambda r: r[0] == 200 and r[1].get("message") == {"n": 3}, 20)
check("a partition shorter than the bound tells no watcher the node is lost",
      status == 200 and not stats(a, "watcher").get("terminated"), f"{status} {body} {stats(a, 'watcher')}")
a.stop()
b.stop()

# ---- a partition longer than the bound: what was sent and never
# acknowledged becomes dead letters (unconfirmed), a request in flight
# fails at once with that reason, and everything is accounted for.
c, d, pc, pd = pair("node-c", "node-d", 2000)
d.spawn("probe.sink", "sink")
d.spawn("echo", "echo")
c.spawn("probe.sender", "sender")
c.spawn("probe.relay", "relay")
c.spawn("probe.sink", "watcher")
status, body = c.relay(f"{d.address}/echo", 1)
c.request("watcher", "troupe.test.WatchPid", {"pid": f"{d.address}/echo"})
before = {r: dead_letters(c, r) for r in ("unconfirmed", "node_lost", "peer_queue_full")}
cut(pc, pd)
out = []
burst(c, f"{d.address}/sink", 20000, out)
t0 = time.time()
status, body = c.relay(f"{d.address}/echo", 5, timeout_ms=30000)
waited = time.time() - t0
check("a request into a partition longer than the bound fails with its reason, long before its timeout",
      status == 200 and body.get("type") == "troupe.test.Failed" and body["message"]["reason"] == "Unconfirmed"
      and waited < 10, f"{status} {body} after {waited:.1f}s\n{c.err.text()[-1500:]}")
seen = poll(lambda: stats(c, "watcher"), lambda m: "echo" in m.get("terminated", ""), 10)
check("its watchers are told the node is lost", seen.get("terminated") == "echo:NodeLost", str(seen))
heal(pc, pd)
status, body = poll(lambda: c.relay(f"{d.address}/echo", 6, timeout_ms=2000),
                    lambda r: r[0] == 200 and r[1].get("message") == {"n": 6}, 20)
check("after the partition heals, the nodes talk again", status == 200, f"{status} {body}")
got = stats(d, "sink")
after = {r: dead_letters(c, r) for r in ("unconfirmed", "node_lost", "peer_queue_full")}
lost = sum(after[r] - before[r] for r in after)
check("every message of the burst arrived in order or is a dead letter with a reason",
      got.get("received", 0) + lost >= 20000 and got.get("backwards") == 0
      and after["unconfirmed"] > before["unconfirmed"],
      f"received {got}, dead letters {after} (before {before})")
check("the loss is logged with what it cost", c.err.has("is lost: it could not be reached", 1)
      and c.err.has("dead letters (unconfirmed)", 1), c.err.text()[-1500:])
d.stop()

# ---- kill -9 with a request in flight: it fails at once, since the
# address refuses connections (that incarnation is gone).
e = nodes_mod.node(w, "node-e", key=key, remote_extra=", unreachable_timeout_ms: 30000")
e.spawn("echo", "echo")
status, body = c.relay(f"{e.address}/echo", 8)
e.p.send_signal(signal.SIGSTOP)
results = []
t = threading.Thread(target=lambda: results.append(c.relay(f"{e.address}/echo", 7, timeout_ms=30000)))
t.start()
time.sleep(0.5)
e.p.kill()
e.p.wait()
t0 = time.time()
t.join(40)
waited = time.time() - t0
status, body = results[0] if results else (None, None)
check("a request in flight to a node killed with kill -9 fails at once, not at its timeout",
      status == 200 and body.get("type") == "troupe.test.Failed" and body["message"]["reason"] == "Unconfirmed"
      and waited < 3, f"{status} {body} after {waited:.1f}s\n{c.err.text()[-1500:]}")

rcs = [c.stop()]
check("the nodes stop cleanly", rcs == [0], str(rcs))
w.stop_all()
shutil.rmtree(tmp, ignore_errors=True)
finish()
