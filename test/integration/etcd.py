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


def certificates(folder):
    """A CA, a certificate for etcd (127.0.0.1) and a client's, made with openssl: {name: path}."""
    os.makedirs(folder, exist_ok=True)
    f = {k: os.path.join(folder, k) for k in ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")}

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
        "-subj", "/CN=troupe test CA", "-keyout", f["ca.key"], "-out", f["ca.pem"])
    # The client's has no CommonName: with users on, etcd's JSON gateway
    # refuses a certificate that has one (the name would not be the user).
    # etcd's own serves as a client's too: its gateway dials etcd with it.
    for who, subject, ext in (("server", "/CN=server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
                              ("client", "/O=troupe node", "extendedKeyUsage=clientAuth")):
        csr = os.path.join(folder, who + ".csr")
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject,
            "-keyout", f[who + ".key"], "-out", csr)
        extfile = os.path.join(folder, who + ".ext")
        with open(extfile, "w") as e:
            e.write(ext + "\n")
        run("x509", "-req", "-in", csr, "-CA", f["ca.pem"], "-CAkey", f["ca.key"], "-CAcreateserial", "-days", "2",
            "-extfile", extfile, "-out", f[who + ".pem"])
    return f


class member:
    def __init__(self, name, parent, tls):
        self.name = name
        self.client, self.peer = _port(), _port()
        self.dir = os.path.join(parent, name)
        self.p = None
        self.tls = tls

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client}"


class cluster:
    """`size` etcd members forming one cluster."""

    def __init__(self, size=1, parent=None, tls=None):
        """`tls`: certificates() — clients then need a certificate the CA signed."""
        if not os.path.exists(ETCD):
            raise RuntimeError("no etcd server: scripts/install-deps installs etcd-server")
        self.dir = tempfile.mkdtemp(prefix="troupe-etcd-", dir=parent)
        self.tls = tls
        self.members = [member(f"e{i}", self.dir, tls) for i in range(size)]
        self.user = None
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
             "--experimental-watch-progress-notify-interval", "1s", "--logger", "zap", "--log-outputs", "stderr"]
            + (["--cert-file", self.tls["server.pem"], "--key-file", self.tls["server.key"], "--client-cert-auth",
                "--trusted-ca-file", self.tls["ca.pem"]] if self.tls else []),
            stdout=log, stderr=subprocess.STDOUT)

    def healthy(self, m):
        if self.tls:
            return self.ctl("endpoint", "health", endpoints=[m.url]).returncode == 0
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

    def ctl(self, *args, endpoints=None):
        cmd = [ETCDCTL, "--endpoints", ",".join(endpoints or self.endpoints())]
        if self.tls:
            cmd += ["--cacert", self.tls["ca.pem"], "--cert", self.tls["client.pem"], "--key", self.tls["client.key"]]
        if self.user:
            cmd += ["--user", self.user]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, ETCDCTL_API="3"))

    def enable_auth(self, password):
        """Users on: root (with `password`) may do everything, nobody else anything."""
        for args in (("user", "add", f"root:{password}"), ("auth", "enable")):
            out = self.ctl(*args)
            if out.returncode != 0:
                raise RuntimeError(f"etcdctl {' '.join(args)}: {out.stdout}{out.stderr}")
        self.user = f"root:{password}"

    def close(self):
        self.kill_all()
        shutil.rmtree(self.dir, ignore_errors=True)
