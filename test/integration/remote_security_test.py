#!/usr/bin/env python3
"""Node-to-node links under attack, between real troupe-node processes on
loopback: a relay between two members, a host without the secret that
claims a member's address, a flood of unauthenticated connections, secret
rotation by reload, certificates (mutual TLS) and the explicit plaintext
mode, all seen through the admin API, /metrics and the log.

usage: remote_security_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import os
import shutil
import signal
import socket
import subprocess
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


def node(name, key=key, **kw):
    return nodes_mod.node(w, name, key=key, **kw)


def failures(n, reason):
    return metric(n.scrape(), "troupe_remote_handshake_failures_total", f'{{reason="{reason}"}}') or 0


def split(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


a, b = node("node-a"), node("node-b")
if not (a.address and b.address and a.admin and b.admin):
    check("two nodes start", False, a.err.text() + b.err.text())
    w.stop_all()
    finish()
check("a node says it authenticates members with TLS 1.3 and the cluster secret",
      a.err.has("TLS 1.3, members authenticated by the cluster secret", 1), a.err.text()[-1000:])
b.spawn("echo", "echo")
a.spawn("probe.relay", "relay")
a.spawn("probe.sink", "watcher")
status, body = a.relay(f"{b.address}/echo", 1)
check("two members talk over TLS", status == 200 and body["message"] == {"n": 1}, f"{status} {body}")
a.request("watcher", "troupe.test.WatchPid", {"pid": f"{b.address}/echo"})

# ---- a relay: a node that dials an attacker's address reaches a member
# through it, byte for byte; it must not take that member for the node it
# dialed, and the relay can neither read nor inject anything.
relay_sock = socket.socket()
relay_sock.bind(("127.0.0.1", 0))
relay_sock.listen(8)
relay_addr = f"127.0.0.1:{relay_sock.getsockname()[1]}"
relayed = {"bytes": 0, "injected": False}


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            relayed["bytes"] += len(data)
            dst.sendall(data)
    except OSError:
        pass
    for s_ in (src, dst):
        try:
            s_.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def relay_loop():
    while True:
        try:
            c, _ = relay_sock.accept()
        except OSError:
            return
        try:
            u = socket.create_connection(split(b.address), timeout=5)
        except OSError:
            c.close()
            continue
        threading.Thread(target=pipe, args=(c, u), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c), daemon=True).start()


threading.Thread(target=relay_loop, daemon=True).start()
c = node("node-c", seeds=[relay_addr])
refused = c.err.has(f"dialed {relay_addr} but the node there advertises {b.address}", 10)
check("a node that dials a relay to a member refuses it: the member is not the node it dialed",
      refused and relayed["bytes"] > 0, c.err.text()[-1500:])
pc = [p for p in c.peers() if p["address"] == relay_addr]
check("the relayed address never shows up, and says why",
      pc and pc[0]["state"] != "up" and "address" in pc[0]["last_error"], str(pc))
check("the member behind the relay keeps no peer for it",
      all(p["address"] != c.address or p["state"] != "up" for p in b.peers()), str(b.peers()))
c.stop()
relay_sock.close()

# ---- a host without the secret claims node-a's address: plaintext Hellos,
# then a TLS hello with an unknown key. Nothing about node-a changes on b.
before_peers = b.peers()
before_tls, before_secret = failures(b, "tls"), failures(b, "secret")
# The Hello a node named node-a advertising a's address sends, captured
# from a plaintext node made to dial a listening socket.
cap = socket.socket()
cap.bind(("127.0.0.1", 0))
cap.listen(1)
cap.settimeout(20)
fake = node("node-a", key=None, remote_extra=", insecure_plaintext: true",
            node_extra=f", advertise: '{a.address}'", seeds=[f"127.0.0.1:{cap.getsockname()[1]}"])
conn, _ = cap.accept()
conn.settimeout(10)
fake_hello = conn.recv(65536)
conn.close()
cap.close()
fake.stop()
check("a plaintext node's Hello claiming a member's address was captured",
      len(fake_hello) > 8 and a.address.encode() in fake_hello, repr(fake_hello[:80]))
for i in range(2000):
    with socket.create_connection(split(b.address), timeout=5) as s:
        s.sendall(fake_hello)
        try:
            while s.recv(4096):  # until the node closes it
                pass
        except OSError:
            pass
# A real TLS client that offers a key b does not have (openssl s_client).
for i in range(3):
    subprocess.run(["openssl", "s_client", "-connect", b.address, "-tls1_3", "-psk_identity",
                    "troupe-0123456789abcdef", "-psk", "00" * 32, "-ciphersuites",
                    "TLS_AES_128_GCM_SHA256"], input="", capture_output=True, timeout=20)
after_tls = poll(lambda: failures(b, "tls"), lambda v: v >= before_tls + 1900, 30)
after_secret = poll(lambda: failures(b, "secret"), lambda v: v >= before_secret + 3, 10)
check("2,000 plaintext Hellos that claim a member's address are refused as no TLS, and counted",
      after_tls >= before_tls + 1900, f"{before_tls} -> {after_tls}")
check("a TLS client offering an unknown key is refused (secret), and counted",
      after_secret >= before_secret + 3, f"{before_secret} -> {after_secret}\n{b.err.text()[-800:]}")
after_peers = poll(lambda: b.peers(), lambda ps: len(ps) == len(before_peers))
on_a = [p for p in after_peers if p["address"] == a.address]
check("/v1/peers does not grow: nothing about a peer changes before it authenticates",
      len(after_peers) == len(before_peers) and on_a and on_a[0]["state"] == "up"
      and on_a[0]["node"] == "node-a", f"{before_peers}\n{after_peers}")
status, body = a.relay(f"{b.address}/echo", 2)
seen = a.ask("watcher")
check("the real link between the members stayed up, and no watcher heard of a lost node",
      status == 200 and body["message"] == {"n": 2} and not seen.get("terminated")
      and a.peers()[0]["state"] == "up" and not a.err.has(f"lost {b.address}", 0.1),
      f"{status} {body} {seen} {a.peers()}")
check("the flood is logged once per 1,024 refusals of each kind, not per connection",
      sum("refused an unidentified peer" in l for l in b.err.lines) <= 6, str(len(b.err.lines)))

# ---- 200 unauthenticated connections that hold still: past the limits on
# handshakes in progress they are refused at once, and counted.
before_limit = failures(b, "limit")
held = []
for i in range(200):
    try:
        s = socket.create_connection(split(b.address), timeout=5)
        s.sendall(b"\x16\x03\x01")  # a record begun, never finished
        held.append(s)
    except OSError:
        pass
after_limit = poll(lambda: failures(b, "limit"), lambda v: v >= before_limit + 150, 10)
check("connections past the handshake limits are refused at once and counted (limit)",
      after_limit >= before_limit + 150 and b.err.has("remote.max_pending_per_address", 1),
      f"{before_limit} -> {after_limit}")
status, body = a.relay(f"{b.address}/echo", 3)
check("members are served while unauthenticated connections hold the handshake slots",
      status == 200 and body["message"] == {"n": 3}, f"{status} {body}")
for s in held:
    s.close()

# ---- 200 unauthenticated connections, each sending 4 MiB as one record:
# memory stays bounded and members are still served.
rss_before = b.rss()
chunk = b"\x16\x03\x01\x40\x00" + b"\0" * (64 << 10)


def flood(results, i):
    try:
        s = socket.create_connection(split(b.address), timeout=10)
        s.settimeout(10)
        sent = 0
        try:
            while sent < (4 << 20):
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        results[i] = sent
        s.close()
    except OSError:
        results[i] = -1


results = [0] * 200
threads = [threading.Thread(target=flood, args=(results, i)) for i in range(200)]
peak = rss_before
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    peak = max(peak, b.rss())
    time.sleep(0.05)
for t in threads:
    t.join()
check("200 unauthenticated connections sending 4 MiB each do not grow the node by more than 64 MiB",
      peak - rss_before < 64 << 20 and b.p.poll() is None,
      f"rss {rss_before >> 20} MiB -> peak {peak >> 20} MiB")
status, body = a.relay(f"{b.address}/echo", 30)
check("members are still served after the flood", status == 200 and body["message"] == {"n": 30},
      f"{status} {body}")

# ---- rotation: b accepts a new secret beside the old by reload; a node
# that has only the new one gets in then, not before.
new_key_lines = ("the-next-cluster-secret-of-this-test", "the-cluster-secret-of-this-test")
new_only = w.secret("new.key", new_key_lines[0])
d = node("node-d", key=new_only)
d.spawn("probe.relay", "relay")
status, _ = d.relay(f"{b.address}/echo", 4, timeout_ms=1500)
check("a node with a secret the cluster does not accept yet is refused", status == 504,
      f"{status} {d.err.text()[-600:]}")
with open(key, "w") as f:
    f.write("# the new secret first: it is offered; both are accepted\n")
    f.write("\n".join(new_key_lines) + "\n")
b.p.send_signal(signal.SIGHUP)
check("the reload takes both secrets", b.err.has("accept any of them", 10), b.err.text()[-800:])
status, body = poll(lambda: d.relay(f"{b.address}/echo", 5, timeout_ms=1000), lambda r: r[0] == 200, 15)
check("after the reload, the node with the new secret gets in", status == 200, f"{status} {body}")
status, body = a.relay(f"{b.address}/echo", 6)
check("members on the old secret stay connected through the rotation",
      status == 200 and a.peers()[0]["state"] == "up", f"{status} {body}")
d.stop()

# ---- plaintext only when asked, loudly; a TLS node and a plaintext node
# tell each other what is wrong.
p1 = node("node-p1", key=None, remote_extra=", insecure_plaintext: true")
p2 = node("node-p2", key=None, remote_extra=", insecure_plaintext: true")
check("a plaintext node says loudly that TLS is off", p1.err.has("TLS IS OFF", 1), p1.err.text()[-800:])
p2.spawn("echo", "echo")
p1.spawn("probe.relay", "relay")
status, body = p1.relay(f"{p2.address}/echo", 7)
check("two plaintext nodes talk", status == 200 and body["message"] == {"n": 7}, f"{status} {body}")
status, _ = a.relay(f"{p2.address}/echo", 8, timeout_ms=1500)
check("a TLS node and a plaintext node do not talk, and each log says why",
      status == 504 and p2.err.has("speaks TLS, this node plaintext", 5)
      and a.err.has("does not speak TLS", 5),
      f"{status}\n{p2.err.text()[-800:]}\n{a.err.text()[-800:]}")
p1.stop()
p2.stop()

# ---- certificates: mutual TLS with a CA; the name must be the certificate's.
def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=tmp)


def ca(name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}")


def cert(ca_name, cn):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{cn}.key", "-out", f"{cn}.csr", "-subj", f"/CN={cn}")
    ext = os.path.join(tmp, f"{cn}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{cn}\n")
    openssl("x509", "-req", "-in", f"{cn}.csr", "-CA", f"{ca_name}.pem", "-CAkey", f"{ca_name}.key",
            "-CAcreateserial", "-out", f"{cn}.pem", "-days", "2", "-extfile", ext)


def tls_node(name, cn=None, ca_name="ca"):
    cn = cn or name
    return node(name, key=None, remote_extra=(
        f", tls: {{ cert_file: {tmp}/{cn}.pem, key_file: {tmp}/{cn}.key, ca_file: {tmp}/{ca_name}.pem }}"))


ca("ca")
ca("other-ca")
for cn in ("node-m1", "node-m2", "node-m3"):
    cert("ca", cn)
cert("other-ca", "node-x")
m1, m2 = tls_node("node-m1"), tls_node("node-m2")
m2.spawn("echo", "echo")
m1.spawn("probe.relay", "relay")
status, body = m1.relay(f"{m2.address}/echo", 9)
check("two nodes with certificates from the cluster's CA talk", status == 200 and body["message"] == {"n": 9},
      f"{status} {body}\n{m1.err.text()[-800:]}")
x = tls_node("node-x", ca_name="ca")  # its certificate is another CA's
x.spawn("probe.relay", "relay")
status, _ = x.relay(f"{m2.address}/echo", 10, timeout_ms=1500)
check("a certificate from another CA is refused (certificate)",
      status == 504 and poll(lambda: failures(m2, "certificate"), lambda v: v >= 1) >= 1,
      f"{status}\n{m2.err.text()[-800:]}")
liar = tls_node("node-liar", cn="node-m3")  # a valid certificate, for another name
liar.spawn("probe.relay", "relay")
status, _ = liar.relay(f"{m2.address}/echo", 11, timeout_ms=1500)
check("a member whose certificate names another node is refused",
      status == 504 and m2.err.has("its certificate names another", 5), f"{status}\n{m2.err.text()[-800:]}")

rcs = [n.stop() for n in (a, b, m1, m2, x, liar)]
check("the nodes stop cleanly", rcs == [0] * 6, str(rcs))
w.stop_all()
shutil.rmtree(tmp, ignore_errors=True)
finish()
