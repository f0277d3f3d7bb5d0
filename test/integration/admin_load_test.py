#!/usr/bin/env python3
"""The admin API and /metrics of a real troupe-node under clients that hold
connections: half-open connections, idle keep-alive clients, slowloris
senders, a slow reader of /metrics and requests that wait for a reply. The
probes and the metrics must answer throughout; the connection limits and the
idle timeout must hold and be counted.

A probe here must answer within PROBE_S seconds: a liveness bound (before the
server was event-driven they took 12 to 29 s), not a speed measurement; the
speed is `make bench` (admin_healthz_p99_under_slowloris).

usage: admin_load_test.py TROUPE_NODE BUILD_ROOT
"""
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from harness import check, copy_plugins, finish, listening_url, stderr_reader, wait_or_kill
from nodes import metric, poll

NODE, BUILD_ROOT = sys.argv[1], sys.argv[2]
PROBE_S = 5.0

# 1,100 client sockets and then some.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

tmp = tempfile.mkdtemp()
plugin_dir = os.path.join(tmp, "plugins")
copy_plugins(BUILD_ROOT, plugin_dir, ["counter"])


def start(admin_extra=""):
    cfg = os.path.join(tmp, "node.yaml")
    with open(cfg, "w") as f:
        f.write("node: { name: load, cluster: test }\n"
                f"plugins: {{ dir: {plugin_dir}, load: [counter] }}\n"
                f"admin: {{ listen: 127.0.0.1:0{admin_extra} }}\n"
                "metrics: { listen: 127.0.0.1:0 }\n")
    p = subprocess.Popen([NODE, "--config", cfg], stderr=subprocess.PIPE, text=True)
    err = stderr_reader(p)
    admin, metrics = listening_url(err, "admin API"), listening_url(err, "metrics")
    err.has("ready:", 20)
    return p, err, admin, metrics


def host_port(url):
    m = re.match(r"http://([^:/]+):(\d+)", url)
    return m.group(1), int(m.group(2))


def get(url, timeout=PROBE_S):
    """(status, body, seconds) of a GET on a new connection; status None if
    it did not answer within `timeout`."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - t0
    except OSError as e:
        return None, str(e).encode(), time.monotonic() - t0


def connect(url):
    s = socket.create_connection(host_port(url), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s):
    """One HTTP response (headers and a Content-Length body) from `s`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length: *(\d+)", head)
    want = int(m.group(1)) if m else 0
    while len(body) < want:
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
    return head.split(b"\r\n", 1)[0]


def closed_by_server(s, within):
    """Whether the server closes `s` (recv sees EOF or a reset) within `within` s."""
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


p, err, admin, metrics = start(", idle_timeout: 2")
if admin is None or metrics is None:
    p.kill()
    check("the node starts", False, err.text())
    finish()
healthz = admin + "/healthz"

# Half-open: connected, never a byte. Four of them used to take every thread.
silent = [connect(admin) for _ in range(8)]
silent_metrics = [connect(metrics) for _ in range(4)]
status, _, took = get(healthz)
check("8 connections that send nothing do not stop /healthz", status == 200, f"{status} after {took:.1f}s")
status, body, took = get(metrics)
check("4 silent connections to /metrics do not stop a scrape",
      status == 200 and b"troupe_actors" in body, f"{status} after {took:.1f}s")
check("the idle timeout (2 s) closes a connection that never sent a byte",
      all(closed_by_server(s, 6) for s in silent[:2]), "still open after 6 s")
for s in silent + silent_metrics:
    s.close()

# A scrape read slowly: the client sends its request and reads nothing.
slow_reader = connect(metrics)
slow_reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
slow_reader.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
status, body, took = get(metrics)
check("a client that does not read its scrape does not hold up another",
      status == 200 and b"troupe_admin_connections" in body, f"{status} after {took:.1f}s")
slow_reader.close()

# 1,000 idle keep-alive clients (each made one request and stays) and 100
# slowloris senders (a header line every second, never the end).
idle = []
for _ in range(1000):
    s = connect(admin)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.append(s)
answered = sum(1 for s in idle if (read_response(s) or b"").startswith(b"HTTP/1.1 200"))
check("1,000 keep-alive clients are all served", answered == 1000, f"{answered} answered")
loris = [connect(admin) for _ in range(100)]
for s in loris:
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
stop_loris = threading.Event()


def trickle():
    while not stop_loris.wait(0.5):
        for s in loris:
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:
                pass


trickler = threading.Thread(target=trickle, daemon=True)
trickler.start()
slowest = 0.0
failed = []
for _ in range(50):
    status, _, took = get(healthz)
    slowest = max(slowest, took)
    if status != 200:
        failed.append(status)
check("/healthz answers every time beside 1,000 idle clients and 100 slowloris senders",
      not failed, f"failures {failed}, slowest {slowest:.2f}s")
status, body, _ = get(metrics)
open_now = metric(body.decode(), "troupe_admin_connections") if status == 200 else None
check("troupe_admin_connections counts the open connections",
      open_now is not None and open_now >= 1100, f"{open_now}")
stop_loris.set()
trickler.join()
for s in idle + loris:
    s.close()

# Requests that wait for a reply hold no thread: six of them (counter.Reset
# is one way: never answered), then the probes and a quick call.
waiting = []


def wait_request():
    data = b'{"type": "counter.Reset", "message": {}, "timeout_ms": 4000}'
    req = urllib.request.Request(admin + "/v1/actors/slow/request", data=data, method="POST")
    try:
        urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e:
        waiting.append(e.code)
    except OSError as e:
        waiting.append(str(e))


req = urllib.request.Request(admin + "/v1/actors", data=b'{"kind": "counter", "name": "slow"}',
                             method="POST")
urllib.request.urlopen(req, timeout=10).read()
threads = [threading.Thread(target=wait_request) for _ in range(6)]
t0 = time.monotonic()
for t in threads:
    t.start()
time.sleep(0.5)
status, _, took = get(healthz)
status_list, body, _ = get(admin + "/v1/actors")
check("six requests waiting for replies do not hold up /healthz or other calls",
      status == 200 and status_list == 200 and b'"slow"' in body, f"{status} {status_list} {took:.1f}s")
for t in threads:
    t.join()
check("the waiting requests time out on their own clock: 504 each",
      waiting == [504] * 6 and time.monotonic() - t0 < 15, f"{waiting}")
p.send_signal(signal.SIGTERM)
check("the node stops cleanly", wait_or_kill(p) == 0, err.text()[-2000:])



def limit_case(limits, held_count, refused_label, reason):
    """Holds `held_count` connections on a node with `limits`, checks that
    one more is closed at once and counted under `reason`, and that the
    API answers again once they close."""
    p, err, admin, metrics = start(limits)
    held = [connect(admin) for _ in range(held_count)]
    for s in held:  # each served once: surely counted by the server
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(s)
    extra = connect(admin)
    check(f"{refused_label} is closed at once", closed_by_server(extra, 5))
    extra.close()
    status, body, _ = get(metrics)
    text = body.decode() if status == 200 else ""
    check(f"it is counted as over {reason}, and /metrics (a server of its own) still answers",
          (metric(text, "troupe_admin_connections_refused_total", f'{{reason="{reason}"}}') or 0) >= 1,
          text[-3000:])
    for s in held:
        s.close()
    check("once they close, /healthz answers again",
          poll(lambda: get(admin + "/healthz")[0], lambda st: st == 200, 10) == 200, err.text()[-1500:])
    p.send_signal(signal.SIGTERM)
    check("the node stops cleanly", wait_or_kill(p) == 0, err.text()[-2000:])


limit_case(", max_connections: 20, max_connections_per_address: 5", 5,
           "a sixth connection from one address", "max_connections_per_address")
limit_case(", max_connections: 20", 20, "connection 21", "max_connections")
finish()
