#!/usr/bin/env python3
"""Node-to-node messaging between real troupe-node processes on loopback:
request/response across nodes, order over 100,000 messages, remote spawn,
remote watch (on stop and on kill -9), a peer's restart, refused
handshakes (wrong secret, wrong cluster), garbage on the wire and seeds
contacted at start and on reload, all seen through the admin API and
/metrics as an operator would.

usage: remote_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from harness import check, finish
import nodes as nodes_mod
from nodes import metric, poll, world

NODE, CTL, BUILD_ROOT = sys.argv[1], sys.argv[2], sys.argv[3]

tmp = tempfile.mkdtemp()
w = world(NODE, CTL, BUILD_ROOT, tmp)
good_secret = w.secret("cluster.key", "a-long-enough-cluster-secret")
bad_secret = w.secret("other.key", "another-secret-of-some-length")
nodes = w.nodes


def node(name, key=good_secret, **kw):
    return nodes_mod.node(w, name, key=key, **kw)


a, b = node("node-a"), node("node-b")
check("both nodes listen and say what their PIDs look like",
      a.address and b.address and a.address != b.address, a.err.text() + b.err.text())
if not (a.address and b.address and a.admin and b.admin):
    for n in nodes:
        n.p.kill()
    finish()

# ---- request and response across nodes
b.spawn("echo", "echo")
a.spawn("probe.relay", "relay")
status, body = a.request("relay", "troupe.test.Relay", {"to": f"{b.address}/echo", "n": 7})
check("a request crosses to the other node and its reply comes back",
      status == 200 and body.get("message") == {"n": 7}, f"{status} {body}")
pa, pb = a.peers(), b.peers()
check("/v1/peers on the dialing node shows the peer up, outbound, by node name",
      len(pa) == 1 and pa[0]["address"] == b.address and pa[0]["state"] == "up"
      and pa[0]["direction"] == "outbound" and pa[0]["node"] == "node-b", str(pa))
check("/v1/peers on the other node shows it inbound, with traffic counted",
      len(pb) == 1 and pb[0]["direction"] == "inbound" and pb[0]["messages_received"] >= 1
      and pb[0]["messages_sent"] >= 1, str(pb))

r = a.ctl("peers")
check("troupectl peers shows the peer, its node name and state",
      r.returncode == 0 and re.search(rf"^{re.escape(b.address)}\s+node-b\s+up\s+outbound\s", r.stdout,
                                      re.M), r.stdout + r.stderr)

# ---- remote spawn, allowed kinds only
status, body = a.spawn("probe.sink", "sink", on=b.address)
check("a node spawns an allowed kind on its peer and gets the remote PID",
      status == 201 and body.get("pid") == f"{b.address}/sink", f"{status} {body}")
status, body = b.call("GET", "/v1/actors?kind=probe.sink")
check("the spawned actor lives on the peer", status == 200 and body["total"] == 1, str(body))
status, body = a.spawn("echo", "not-allowed", on=b.address)
check("a kind the peer does not allow (kinds.<kind>.remote_spawn) is refused (403)",
      status == 403 and "kinds.echo.remote_spawn" in body["error"]["message"], f"{status} {body}")
status, body = a.spawn("probe.sink", "sink", on=b.address)
check("a remote spawn with a name in use says so (409)", status == 409, f"{status} {body}")
status, body = a.spawn("probe.sink", "", on=b.address)
check("a remote spawn with an empty name is refused as a local one is (400 invalid_name)",
      status == 400 and body["error"]["code"] == "invalid_name", f"{status} {body}")
r = a.ctl("spawn", "probe.sink", "--node", b.address)
check("troupectl spawn --node prints the remote PID",
      r.returncode == 0 and r.stdout.startswith(b.address + "/$"), r.stdout + r.stderr)
# The PID a command printed is taken by the others, through the node the
# command talks to: request, send and stop reach the actor on b.
echo_pid = f"{b.address}/echo"
r = a.ctl("request", echo_pid, "troupe.test.Num", '{"n": 41}')
check("troupectl request takes another node's PID as printed, and prints the reply",
      r.returncode == 0 and r.stdout.strip() == 'troupe.test.Num {"n":41}', r.stdout + r.stderr)
r = a.ctl("send", echo_pid, "troupe.test.Num", '{"n": 42}')
check("troupectl send takes it too", r.returncode == 0, r.stdout + r.stderr)
status, body = a.call("GET", "/v1/actors/" + urllib.parse.quote(echo_pid, safe=""))
check("GET of another node's actor says whose it is (409), not that it does not exist",
      status == 409 and b.address in body["error"]["message"], f"{status} {body}")
sink_pid = a.ctl("spawn", "probe.sink", "--name", "to-stop", "--node", b.address).stdout.strip()
r = a.ctl("stop", sink_pid)
status_b, _ = b.call("GET", "/v1/actors/to-stop")
check("troupectl stop takes another node's PID, and the actor there stops",
      r.returncode == 0 and sink_pid == f"{b.address}/to-stop" and status_b == 404, f"{sink_pid} {r.stdout} {r.stderr}")
r = a.ctl("request", f"{b.address}/nobody", "troupe.test.Num", '{"n": 1}')
check("a PID of another node that names no actor is a clear error, not a hang",
      r.returncode != 0 and "nobody" in r.stderr, r.stdout + r.stderr)
# b logs its dead letters, by type, target and sender, at a bounded rate.
nobody = urllib.parse.quote(f"{b.address}/nobody", safe="")
for _ in range(20):
    a.call("POST", f"/v1/actors/{nobody}/send", {"type": "troupe.test.Num", "message": {"n": 7}})
line = "dead letter (not_found): troupe.test.Num to 'nobody' (no actor of this node by that id)"
b.err.has(line, 5)
time.sleep(0.5)
logged = sum(line in l for l in b.err.lines)
peers_before = len(a.peers())
r = a.ctl("send", "127.0.0.1:1/x", "troupe.test.Num", '{"n": 1}')
check("a PID of a node this one has no link with is refused (404), and makes no link",
      r.returncode != 0 and "127.0.0.1:1 is not a node this one has a link with" in r.stderr
      and len(a.peers()) == peers_before, f"{r.stderr} {a.peers()}")
check("the node it reaches logs the dead letters, naming type and target, at most 5 in 10 s",
      1 <= logged <= 5, f"{logged} lines\n{b.err.text()[-1500:]}")
# kinds.all for every kind, and a kind's own false above it.
d = node("node-d", kinds="all: { remote_spawn: true }, echo: { remote_spawn: false }")
status, body = a.spawn("quiet.answer", "any-kind", on=d.address)
check("kinds.all.remote_spawn: true lets peers spawn a kind it does not name (201)",
      status == 201, f"{status} {body}")
status, body = a.spawn("echo", "excepted", on=d.address)
check("a kind's own remote_spawn: false wins over kinds.all (403)", status == 403, f"{status} {body}")
d.stop()

# ---- order over 100,000 messages
a.spawn("probe.sender", "sender")
status, body = a.request("sender", "troupe.test.Burst", {"to": f"{b.address}/sink", "count": 100000},
                         timeout_ms=30000)
check("the sender sent 100,000 messages", status == 200 and body["message"] == {"n": 100000},
      f"{status} {body}")
stats = poll(lambda: b.request("sink", "troupe.test.Ask", {})[1].get("message", {}),
             lambda m: m.get("received", 0) >= 100000, 30)
check("all 100,000 arrived, in the order they were sent",
      stats.get("received") == 100000 and stats.get("out_of_order", 0) == 0
      and stats.get("last") == 100000, str(stats))

# ---- remote watch: the watched actor stops
b.spawn("echo", "victim")
a.spawn("probe.sink", "watcher")
status, _ = a.request("watcher", "troupe.test.WatchPid", {"pid": f"{b.address}/victim"})
time.sleep(0.2)
b.call("DELETE", "/v1/actors/victim")
seen = poll(lambda: a.request("watcher", "troupe.test.Ask", {})[1].get("message", {}),
            lambda m: "victim" in m.get("terminated", ""))
check("a watcher of a remote actor gets Terminated when it stops",
      seen.get("terminated") == "victim:Stopped", str(seen))
status, _ = a.request("watcher", "troupe.test.WatchPid", {"pid": f"{b.address}/nobody"})
seen = poll(lambda: a.request("watcher", "troupe.test.Ask", {})[1].get("message", {}),
            lambda m: "nobody" in m.get("terminated", ""))
check("watching a remote id that does not exist answers Terminated (not found)",
      "nobody:NotFound" in seen.get("terminated", ""), str(seen))

text = a.scrape()
check("metrics count what went out and came in",
      (metric(text, "troupe_remote_messages_sent_total") or 0) >= 100001
      and (metric(text, "troupe_remote_messages_received_total") or 0) >= 1
      and (metric(text, "troupe_remote_sent_bytes_total") or 0) > 100000 * 8
      and metric(text, "troupe_remote_connections", '{state="up"}') == 1, text[-3000:])

# ---- refused handshakes: wrong secret, wrong cluster
for label, kw, reason in (("a wrong secret", {"key": bad_secret}, "secret"),
                          ("a wrong cluster", {"cluster": "elsewhere"}, "cluster")):
    before = metric(b.scrape(), "troupe_remote_handshake_failures_total", f'{{reason="{reason}"}}') or 0
    c = node("node-" + reason, **kw)
    c.spawn("probe.relay", "relay")
    status, body = c.request("relay", "troupe.test.Relay", {"to": f"{b.address}/echo", "n": 1},
                             timeout_ms=1500)
    check(f"a node with {label} gets no answer (504)", status == 504, f"{status} {body}")
    after = poll(lambda: metric(b.scrape(), "troupe_remote_handshake_failures_total",
                                f'{{reason="{reason}"}}') or 0, lambda v: v > before)
    check(f"{label} is refused, counted by reason and logged",
          after > before and b.err.has("refused", 2) and b.err.has(reason, 1),
          b.err.text()[-2000:])
    cp = c.peers()
    check(f"the refused node shows why in /v1/peers",
          len(cp) == 1 and cp[0]["state"] != "up" and cp[0]["last_error"], str(cp))
    c.stop()

# ---- garbage, plaintext frames and truncated records before TLS: that
# connection closes as a failed handshake, the node goes on
host, port = b.address.rsplit(":", 1)
failures = lambda: metric(b.scrape(), "troupe_remote_handshake_failures_total", '{reason="tls"}') or 0
before = failures()
for what, data in (("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64),
                   ("a plaintext frame", struct.pack("<I", 0x7FFFFFF0) + b"x" * 16),
                   ("a TLS record that is no handshake", b"\x16\x03\x01\x00\x10" + b"\xff" * 16)):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(data)
    s.settimeout(5)
    closed = False
    try:
        while s.recv(4096):
            pass
        closed = True
    except OSError:
        closed = True
    s.close()
    check(f"{what}: the node closes that connection and keeps running",
          closed and b.p.poll() is None, f"node-b rc {b.p.poll()}: {b.err.text()[-1500:]}")
s = socket.create_connection((host, int(port)), timeout=5)
s.sendall(b"\x16\x03\x01\x10\x00" + b"\0" * 10)  # truncated, then gone
s.close()
after = poll(failures, lambda v: v >= before + 3)
check("bytes that are no TLS handshake are counted as failed handshakes (tls) and logged",
      after >= before + 3 and b.err.has("does not speak TLS", 1), f"{before} -> {after}")
try:
    status, body = a.request("relay", "troupe.test.Relay", {"to": f"{b.address}/echo", "n": 8})
except OSError as e:
    status, body = None, str(e)
check("the node still serves its other peer", status == 200 and body["message"] == {"n": 8},
      f"{status} {body}; node-a rc {a.p.poll()}: {a.err.text()[-1500:]}; "
      f"node-b rc {b.p.poll()}: {b.err.text()[-1500:]}")

# ---- kill -9: watchers hear the node is lost; a restarted peer is reached again
a.spawn("probe.sink", "watcher2")
a.request("watcher2", "troupe.test.WatchPid", {"pid": f"{b.address}/echo"})
time.sleep(0.2)
b.p.kill()
b.p.wait()
seen = poll(lambda: a.request("watcher2", "troupe.test.Ask", {})[1].get("message", {}),
            lambda m: "echo" in m.get("terminated", ""))
check("kill -9 of the peer: its watchers get Terminated (node lost)",
      seen.get("terminated") == "echo:NodeLost", str(seen))
check("the loss is logged", a.err.has(f"lost {b.address}", 5), a.err.text()[-2000:])

# ---- a peer that is down: a spawn there fails at once, naming it and why,
# and the metrics show a peer backing off
t0 = time.time()
status, body = a.spawn("probe.sink", "never", on=b.address)
first = time.time() - t0
t0 = time.time()
status2, body2 = a.spawn("probe.sink", "never", on=b.address)
second = time.time() - t0
check("a spawn on a peer that cannot be reached fails at once with 503, naming it and why",
      status == 503 and status2 == 503 and first < 3 and second < 0.5
      and b.address in body2["error"]["message"] and "refused" in body2["error"]["message"],
      f"{status} {body} after {first:.2f}s; {status2} {body2} after {second:.2f}s")
waiting = lambda: sum(metric(a.scrape(), "troupe_remote_connections", f'{{state="{st}"}}') or 0
                      for st in ("backoff", "down"))
shown = poll(waiting, lambda v: v >= 1, 5)
peer_states = poll(lambda: a.peers(), lambda ps: any(p["state"] in ("backoff", "down") for p in ps), 5)
check("a peer that is down shows as backoff or down in /metrics, as in /v1/peers",
      shown >= 1 and any(p["address"] == b.address and p["state"] in ("backoff", "down") for p in peer_states),
      f"{shown} {peer_states}")

b2 = node("node-b", listen=b.address)
b2.spawn("echo", "echo")
status, body = poll(lambda: a.request("relay", "troupe.test.Relay",
                                      {"to": f"{b.address}/echo", "n": 9}, timeout_ms=1000),
                    lambda r: r[0] == 200 and r[1].get("message") == {"n": 9}, 20)
check("after the peer restarts on its address, messages reach it again",
      status == 200 and body["message"] == {"n": 9}, f"{status} {body}")

# ---- a peer that hangs (SIGSTOP): the heartbeat finds it lost; the queue stays bounded
d = node("node-d", send_queue=64)
b2.spawn("probe.sink", "sink")
d.spawn("probe.sink", "watcher")
d.spawn("probe.sender", "sender")
d.request("watcher", "troupe.test.WatchPid", {"pid": f"{b.address}/sink"})
time.sleep(0.3)
b2.p.send_signal(signal.SIGSTOP)
t0 = time.time()
status, body = d.request("sender", "troupe.test.Burst", {"to": f"{b.address}/sink", "count": 300000},
                         timeout_ms=30000)
seen = poll(lambda: d.request("watcher", "troupe.test.Ask", {})[1].get("message", {}),
            lambda m: "sink" in m.get("terminated", ""), 10)
lost_after = time.time() - t0
check("a peer that stops answering is lost by the heartbeat, and its watchers told",
      seen.get("terminated") == "sink:NodeLost" and d.err.has("heartbeat_timeout", 5),
      f"{seen} after {lost_after:.1f}s\n{d.err.text()[-1500:]}")
text = d.scrape()
full = metric(text, "troupe_dead_letters_total", '{reason="peer_queue_full"}') or 0
check("what a full send queue cannot hold is dropped and counted, not kept",
      status == 200 and full > 0 and (metric(text, "process_resident_memory_bytes") or 1e12) < 512e6,
      f"{status} {body} peer_queue_full={full}")
b2.p.send_signal(signal.SIGCONT)
d.stop()

# ---- both nodes dial each other at once: one connection stays
e, f = node("node-e"), node("node-f")
for n in (e, f):
    n.spawn("echo", "echo")
    n.spawn("probe.relay", "relay")
answers = {}
def relay(src, dst):
    answers[src.name] = src.request("relay", "troupe.test.Relay", {"to": f"{dst.address}/echo", "n": 5})
threads = [threading.Thread(target=relay, args=(e, f)), threading.Thread(target=relay, args=(f, e))]
for t in threads:
    t.start()
for t in threads:
    t.join()
check("requests crossing while both nodes dial each other both succeed",
      all(answers.get(n.name, (0,))[0] == 200 for n in (e, f)), str(answers))
pe = poll(lambda: e.peers(), lambda ps: len(ps) == 1 and ps[0]["state"] == "up")
pf = poll(lambda: f.peers(), lambda ps: len(ps) == 1 and ps[0]["state"] == "up")
check("each side keeps one connection, the same one",
      len(pe) == 1 and len(pf) == 1 and pe[0]["state"] == pf[0]["state"] == "up"
      and pe[0]["direction"] != pf[0]["direction"], f"{pe}\n{pf}")
# ---- a peer that stops cleanly says so: watchers are told, the log says it left
f.spawn("probe.sink", "watcher3")
f.request("watcher3", "troupe.test.WatchPid", {"pid": f"{e.address}/echo"})
e.spawn("probe.sink", "sink")
f.spawn("probe.sender", "sender")
f.request("sender", "troupe.test.Burst", {"to": f"{e.address}/sink", "count": 500})
# Stopped once all 500 arrived: what is still in flight at a stop is
# unconfirmed, rightly; what arrived must not be.
poll(lambda: e.request("sink", "troupe.test.Ask", {})[1].get("message", {}),
     lambda m: m.get("received", 0) >= 500, 15)
e_rc = e.stop()
seen = poll(lambda: f.request("watcher3", "troupe.test.Ask", {})[1].get("message", {}),
            lambda m: "echo" in m.get("terminated", ""))
check("a peer that stops: its watchers get Terminated (node lost), and it is logged as leaving",
      e_rc == 0 and seen.get("terminated") == "echo:NodeLost"
      and f.err.has(f"{e.address} left (it is stopping)", 5),
      f"rc {e_rc} {seen}\n{f.err.text()[-1500:]}")
check("what a peer received before it stopped is not counted unconfirmed: it acknowledges on its way out",
      (metric(f.scrape(), "troupe_dead_letters_total", '{reason="unconfirmed"}') or 0) == 0,
      f.err.text()[-1500:])
f.stop()

# ---- seeds: contacted at start, and those a reload adds
g = node("node-g", seeds=[a.address])
pg = poll(lambda: g.peers(), lambda ps: any(p["address"] == a.address and p["state"] == "up" for p in ps))
check("a node connects to its seeds at start, before anything is sent",
      any(p["address"] == a.address and p["state"] == "up" and p["direction"] == "outbound" for p in pg),
      f"{pg}\n{g.err.text()[-1500:]}")
g.set_seeds([a.address, b2.address])
g.p.send_signal(signal.SIGHUP)
pg = poll(lambda: g.peers(), lambda ps: any(p["address"] == b2.address and p["state"] == "up" for p in ps))
status, info = g.call("GET", "/v1/node")
check("a reload contacts newly listed seeds, and /v1/node lists them",
      any(p["address"] == b2.address and p["state"] == "up" for p in pg) and status == 200
      and info.get("seeds") == [a.address, b2.address] and g.err.has(f"contacting seeds {b2.address} ", 1),
      f"{pg} {info}\n{g.err.text()[-1500:]}")
g_rc = g.stop()

# A seed that is not up yet is dialed again, with backoff, until it is.
with socket.socket() as s_:
    s_.bind(("127.0.0.1", 0))
    later = f"127.0.0.1:{s_.getsockname()[1]}"
h = node("node-h", seeds=[later])
ph = poll(lambda: h.peers(), lambda ps: any(p["address"] == later and p["last_error"] for p in ps), 5)
waiting = [p for p in ph if p["address"] == later]
i = node("node-i", listen=later)
ph = poll(lambda: h.peers(), lambda ps: any(p["address"] == later and p["state"] == "up" for p in ps))
check("a seed that is down at start is dialed again until it answers",
      waiting and waiting[0]["state"] in ("backoff", "connecting") and
      any(p["address"] == later and p["state"] == "up" and p["node"] == "node-i" for p in ph),
      f"{waiting}\n{ph}\n{h.err.text()[-1500:]}")
check("the failed dials to it are logged once, not once per attempt",
      sum(f"cannot reach {later}" in l for l in h.err.lines) == 1, h.err.text()[-1500:])
# i sees h's connection as inbound (h dialed its seed). Once h is gone and
# i has something for it, i is the one dialing: outbound, not inbound.
inbound_before = [p["direction"] for p in i.peers() if p["node"] == "node-h"]
i.spawn("probe.relay", "relay")
hi_rc = [h.stop()]
i.relay(f"{h.address}/echo", 1, timeout_ms=500)
redial = poll(lambda: [p for p in i.peers() if p["address"] == h.address],
              lambda ps: ps and ps[0]["state"] in ("connecting", "backoff", "down"), 5)
check("a peer that dialed in and is gone shows as outbound while this node dials it",
      inbound_before == ["inbound"] and redial and redial[0]["direction"] == "outbound",
      f"{inbound_before} {redial}")
hi_rc.append(i.stop())

rcs = [a.stop(), b2.stop()]
check("the nodes stop cleanly", rcs == [0, 0] and g_rc == 0 and hi_rc == [0, 0],
      f"{rcs}\n{a.err.text()[-3000:]}\n{b2.err.text()[-3000:]}")
for n in nodes:
    if n.p.poll() is None:
        n.p.kill()
shutil.rmtree(tmp, ignore_errors=True)
finish()
