"""A PostgreSQL 15 server of the test's own: initdb into a temporary folder
as the `postgres` user (the server refuses to run as root), listening on a
free loopback port, stopped by its PID. The tests that use it drive it as a
database operator would: kill -9, start again, and read tables with psql."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class server:
    def __init__(self, parent=None):
        if not os.path.exists(os.path.join(BIN, "initdb")):
            raise RuntimeError(f"no PostgreSQL 15 server in {BIN}: scripts/install-deps installs postgresql-15")
        self.dir = tempfile.mkdtemp(prefix="troupe-pg-", dir=parent)
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.pid = None
        self.as_postgres = os.getuid() == 0
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run([os.path.join(BIN, "initdb"), "-D", self.data, "-U", "troupe", "-A", "trust", "-E", "UTF8",
                   "--no-sync"], quiet=True)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                    "max_connections = 100\nfsync = on\n")
        self.start()
        self.psql("CREATE DATABASE troupe")

    def _run(self, cmd, quiet=False, check=True):
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {out.stdout}")
        return out.stdout

    def conninfo(self, db="troupe"):
        return f"host=127.0.0.1 port={self.port} dbname={db} user=troupe connect_timeout=5"

    def start(self):
        log = os.path.join(self.dir, "server.log")
        self._run([os.path.join(BIN, "pg_ctl"), "-D", self.data, "-l", log, "-w", "-t", "60", "start"], quiet=True)
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())

    def kill(self):
        """kill -9 the postmaster and its backends, as a crash would."""
        if self.pid is None:
            return
        os.kill(self.pid, signal.SIGKILL)
        # The backends notice their postmaster is gone; make sure of it.
        subprocess.run(["pkill", "-9", "-P", str(self.pid)], check=False)
        deadline = time.time() + 10
        while time.time() < deadline and _alive(self.pid):
            time.sleep(0.05)
        subprocess.run(["pkill", "-9", "-f", f"postgres: .*{self.port}"], check=False)
        self.pid = None
        # What a crashed postmaster leaves: its PID may live on as a zombie
        # here, which would make the next one believe it still runs.
        for left in (os.path.join(self.data, "postmaster.pid"),
                     os.path.join(self.dir, f".s.PGSQL.{self.port}.lock")):
            try:
                os.unlink(left)
            except FileNotFoundError:
                pass
        time.sleep(0.3)

    def psql(self, sql, db="postgres"):
        return self._run([os.path.join(BIN, "psql"), "-X", "-q", "-t", "-A", "-h", "127.0.0.1", "-p",
                          str(self.port), "-U", "troupe", "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql]).strip()

    def stop(self):
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGQUIT)  # immediate shutdown
            except ProcessLookupError:
                pass
            deadline = time.time() + 20
            while time.time() < deadline and _alive(self.pid):
                time.sleep(0.05)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
