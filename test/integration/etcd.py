"""etcd servers of the test's own (Debian's etcd-server): one, or a cluster
of three, each on free loopback ports with its data in a temporary folder,
killed and started again by PID as an operator (or a crash) would.

This machine is slow and shared: the election timeout is raised to 2 s
(heartbeat 200 ms) so that a busy moment does not start an election. etcd
holds every lease to at least 1.5 times the election timeout, so the
shortest lease TTL here is 3 s; the tests print the TTL etcd granted.
Progress notifications go out every second, so that a watch that died is
noticed quickly."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
HEARTBEAT_MS, ELECTION_MS = 200, 2000
MIN_TTL_S = -(-3 * ELECTION_MS // 2000)  # 1.5 x the election timeout, rounded up


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class member:
    def __init__(self, name, parent):
        self.name = name
        self.client, self.peer = _port(), _port()
        self.dir = os.path.join(parent, name)
        self.p = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.client}"


class cluster:
    """`size` etcd members forming one cluster."""

    def __init__(self, size=1, parent=None):
        if not os.path.exists(ETCD):
            raise RuntimeError("no etcd server: scripts/install-deps installs etcd-server")
        self.dir = tempfile.mkdtemp(prefix="troupe-etcd-", dir=parent)
        self.members = [member(f"e{i}", self.dir) for i in range(size)]
        self.initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer}" for m in self.members)
        for m in self.members:
            self.start(m, new=True)
        self.wait_healthy()

    def endpoints(self):
        return [m.url for m in self.members]

    def start(self, m, new=False):
        log = open(os.path.join(self.dir, m.name + ".log"), "a")
        m.p = subprocess.Popen(
            [ETCD, "--name", m.name, "--data-dir", m.dir,
             "--listen-client-urls", m.url, "--advertise-client-urls", m.url,
             "--listen-peer-urls", f"http://127.0.0.1:{m.peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer}",
             "--initial-cluster", self.initial, "--initial-cluster-state", "new",
             "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
             "--experimental-watch-progress-notify-interval", "1s", "--logger", "zap", "--log-outputs", "stderr"],
            stdout=log, stderr=subprocess.STDOUT)

    def healthy(self, m):
        try:
            with urllib.request.urlopen(m.url + "/health", timeout=2) as r:
                return b'"true"' in r.read()
        except Exception:
            return False

    def wait_healthy(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(m.p and m.p.poll() is None and self.healthy(m) for m in self.members):
                return True
            time.sleep(0.1)
        raise RuntimeError(f"etcd did not become healthy within {timeout} s (logs in {self.dir})")

    def kill(self, m):
        if m.p and m.p.poll() is None:
            m.p.send_signal(signal.SIGKILL)
            m.p.wait()

    def kill_all(self):
        for m in self.members:
            self.kill(m)

    def wipe(self, m):
        """Its data gone (leases included), as a server rebuilt from nothing."""
        shutil.rmtree(m.dir, ignore_errors=True)

    def ctl(self, *args):
        return subprocess.run([ETCDCTL, "--endpoints", ",".join(self.endpoints())] + list(args),
                              capture_output=True, text=True, timeout=30, env=dict(os.environ, ETCDCTL_API="3"))

    def close(self):
        self.kill_all()
        shutil.rmtree(self.dir, ignore_errors=True)
