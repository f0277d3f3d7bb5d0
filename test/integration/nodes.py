"""Real troupe-node processes for the node-to-node tests: each with its own
config in a temporary folder, the admin API and metrics on free ports, the
echo, thrower and remote_probe plugins, and helpers to drive and read it as
an operator would."""
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request

from harness import copy_plugins, http, listening_url, stderr_reader, wait_or_kill


class world:
    """The folder the nodes of one test live in, and what they share."""

    def __init__(self, node_bin, ctl_bin, build_root, tmp, test_plugins=()):
        """`test_plugins`: more of test/plugins for the nodes (gate, c_gate, ...)."""
        self.node_bin, self.ctl_bin, self.tmp = node_bin, ctl_bin, tmp
        self.plugin_dir = os.path.join(tmp, "plugins")
        copy_plugins(build_root, self.plugin_dir, ["echo"])
        for name in ("thrower", "remote_probe") + tuple(test_plugins):
            shutil.copy(os.path.join(build_root, "test", "plugins", name + ".so"), self.plugin_dir)
        self.nodes = []

    def secret(self, name, *lines):
        """A secret file holding `lines`, one secret each."""
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("".join(l + "\n" for l in lines))
        return path

    def stop_all(self):
        for n in self.nodes:
            if n.p.poll() is None:
                n.p.kill()


class node:
    """One troupe-node. `security` is the YAML of the node's secret or TLS
    settings: by default `secret_file: KEY` in the node section."""

    def __init__(self, w, name, cluster="rt", key=None, listen="127.0.0.1:0", send_queue=65536,
                 seeds=(), remote_extra="", node_extra="", plugins=("echo", "thrower", "remote_probe"),
                 extra="", preexec_fn=None, kinds="probe.sink: { remote_spawn: true }"):
        self.w, self.name = w, name
        self.cfg = os.path.join(w.tmp, name + ".yaml")
        secret = f", secret_file: {key}" if key else ""
        self.text = (f"node: {{ name: {name}, cluster: {cluster}, listen: {listen}{secret}{node_extra} }}\n"
                     f"plugins: {{ dir: {w.plugin_dir}, load: [{', '.join(plugins)}] }}\n"
                     "admin: { listen: 127.0.0.1:0 }\n"
                     "metrics: { listen: 127.0.0.1:0 }\n"
                     "remote: { heartbeat_interval_ms: 200, heartbeat_timeout_ms: 1000,"
                     f" send_queue: {send_queue}{remote_extra} }}\n"
                     f"kinds: {{ {kinds} }}\n" + extra)
        self.set_seeds(seeds)
        self.p = subprocess.Popen([w.node_bin, "--config", self.cfg], stderr=subprocess.PIPE, text=True,
                                  preexec_fn=preexec_fn)
        self.err = stderr_reader(self.p)
        self.admin = listening_url(self.err, "admin API")
        self.metrics = listening_url(self.err, "metrics")
        self.err.has("ready:", 20)
        m = None
        if self.err.has("PIDs as ", 1):
            for line in self.err.lines:
                m = m or re.search(r"PIDs as (\S+)/ID", line)
        self.address = m.group(1) if m else None
        m = None
        for line in self.err.lines:
            m = m or re.search(r"remote: listening on (\S+),", line)
        self.listen = m.group(1) if m else None  # as bound (port 0 resolved)
        w.nodes.append(self)

    def set_seeds(self, seeds):
        with open(self.cfg, "w") as f:
            f.write(self.text + f"seeds: [{', '.join(seeds)}]\n")

    def call(self, method, path, body=None, raw=None):
        return http(method, self.admin + path, body, raw=raw)

    def spawn(self, kind, name, on=None):
        body = {"kind": kind, "name": name}
        if on:
            body["node"] = on
        return self.call("POST", "/v1/actors", body)

    def request(self, actor, type_, message, timeout_ms=5000):
        return self.call("POST", f"/v1/actors/{actor}/request",
                         {"type": type_, "message": message, "timeout_ms": timeout_ms})

    def relay(self, to, n, timeout_ms=5000):
        """A request from this node's `relay` actor to the echo actor `to`."""
        return self.request("relay", "troupe.test.Relay", {"to": to, "n": n}, timeout_ms)

    def ask(self, actor):
        """What a probe.sink actor saw."""
        status, body = self.request(actor, "troupe.test.Ask", {})
        return body.get("message", {}) if status == 200 else {}

    def gate(self, to, type_, msg):
        """A request to a gate test actor, which answers gate.SpawnedOn:
        (status, text), or (None, what went wrong)."""
        status, body = self.request(to, type_, msg)
        m = body.get("message", {}) if status == 200 else {}
        return m.get("status", 0 if status == 200 else None), m.get("text", "" if status == 200 else str(body))

    def ctl(self, *args):
        return subprocess.run([self.w.ctl_bin, "--admin", self.admin] + list(args), capture_output=True,
                              text=True, timeout=30)

    def scrape(self):
        with urllib.request.urlopen(self.metrics, timeout=10) as r:
            return r.read().decode()

    def said_dead(self, name):
        """Whether this node logged a dead verdict about member `name`."""
        return any(f"cluster: {name} (" in l and (l.rstrip().endswith(") dead") or ") dead, " in l) for l in self.err.lines)

    def members(self):
        """{name: member} as /v1/members shows them."""
        status, body = self.call("GET", "/v1/members")
        return {m["name"]: m for m in body.get("members", [])} if status == 200 else {}

    def peers(self):
        status, body = self.call("GET", "/v1/peers")
        return body["peers"] if status == 200 else []

    def rss(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        return wait_or_kill(self.p)


def free_port(host):
    """A port free on `host` for TCP and UDP now (the node binds both)."""
    import socket
    while True:
        with socket.socket() as t:
            t.bind((host, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                    return port
                except OSError:
                    continue


def metric(text, name, labels=""):
    m = re.search("^" + re.escape(name + labels) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def poll(fn, ok, timeout=15.0):
    deadline = time.time() + timeout
    value = fn()
    while not ok(value) and time.time() < deadline:
        time.sleep(0.05)
        value = fn()
    return value
