#!/usr/bin/env python3
"""The operator's and the plugin author's path, from the built Debian
packages to a running plugin, walked as the README tells it.

usage: package_test.py PACKAGE_DIR      (what scripts/package produced)

The packages are unpacked into a throwaway root, never into this
machine's /usr. Then every command of the README blocks marked
`<!-- package-test: ... -->` runs in order, translated only where a
machine-wide action has a throwaway equivalent:
  - paths under /usr, /etc, /lib and /var are taken inside the root;
  - `apt install ./x.deb ...` unpacks the packages into the root;
  - `systemctl enable --now troupe-node` starts the packaged node as its
    unit says (ExecStartPre, then ExecStart with NOTIFY_SOCKET), with the
    packaged config adjusted to free loopback ports; `systemctl reload` and
    `stop` send SIGHUP and SIGTERM; `journalctl -u troupe-node` reads its log;
  - `troupectl` is the packaged one, pointed at that node;
  - `meson install` installs into the root (--destdir);
  - `sudo` is dropped.
A command the translation does not know fails the test, so the README
cannot drift from what runs. A comment `# prints: TEXT` checks the output;
a block marked `file PATH` must equal that packaged file.
"""
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import check, finish, listening_url, stderr_reader  # noqa: E402

REPO = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PACKAGE_DIR = os.path.realpath(sys.argv[1])
tmp = tempfile.mkdtemp(prefix="troupe-package-")
ROOT = os.path.join(tmp, "root")
os.makedirs(ROOT)
MACHINE_PATHS = ("/usr/", "/etc/", "/lib/", "/var/")
TOKEN = os.path.join(ROOT, "etc/troupe/admin.token")


def inside(arg):
    """An argument naming a machine path, taken inside the root."""
    return ROOT + arg if arg.startswith(MACHINE_PATHS) else arg


def readme_blocks():
    """(marker, language, text) of every marked block of the README."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    return re.findall(r"<!-- package-test: (.*?) -->\n```(\w*)\n(.*?)```", text, re.S)


class node_service:
    """The packaged troupe-node, started the way its unit starts it."""

    def __init__(self):
        self.p = None
        self.err = None
        self.admin = None

    def unit_commands(self, key):
        with open(os.path.join(ROOT, "lib/systemd/system/troupe-node.service")) as f:
            return [shlex.split(line.split("=", 1)[1]) for line in f
                    if line.startswith(key + "=")]

    def adjust_config(self):
        """The packaged config on free loopback ports, with plugin folders
        inside the root. Only those lines change; the rest stays as shipped."""
        path = os.path.join(ROOT, "etc/troupe/node.yaml")
        with open(path) as f:
            text = f.read()
        adjusted = re.sub(r"(?m)^(  listen: )127\.0\.0\.1:\d+", r"\g<1>127.0.0.1:0", text)
        adjusted = re.sub(r"(?m)^(  dir: )\[(.*)\]$",
                          lambda m: m.group(1) + "[" + ", ".join(
                              inside(d.strip()) for d in m.group(2).split(",")) + "]", adjusted)
        check("the packaged config has the admin and metrics addresses, the token and plugin "
              "folders the test adjusts",
              adjusted.count("127.0.0.1:0") == 2 and adjusted.count(ROOT) == 3, adjusted)
        with open(path, "w") as f:
            f.write(adjusted)

    def start(self):
        self.adjust_config()
        for cmd in self.unit_commands("ExecStartPre"):
            r = subprocess.run([inside(a) for a in cmd], capture_output=True, text=True, cwd=tmp)
            check(f"the unit's ExecStartPre passes: {' '.join(cmd)}", r.returncode == 0,
                  r.stdout + r.stderr)
        (cmd,) = self.unit_commands("ExecStart")
        notify_path = os.path.join(tmp, "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(notify_path)
        self.notify.settimeout(30)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        self.p = subprocess.Popen([inside(a) for a in cmd], stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=tmp)
        self.err = stderr_reader(self.p)
        self.admin = listening_url(self.err, "admin API")
        check("the packaged node starts as its unit says and tells systemd it is ready",
              self.admin is not None and self.wait_notify("READY=1"), self.err.text()[-2000:])

    def wait_notify(self, what):
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if what in self.notify.recv(4096).decode():
                    return True
            except socket.timeout:
                return False
        return False

    def reload(self):
        self.p.send_signal(signal.SIGHUP)
        return self.wait_notify("RELOADING=1") and self.wait_notify("READY=1")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return -1


node = node_service()
cwd = tmp
# troupectl reads the token where the package puts it; here, in the root.
env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(ROOT, "usr/share/pkgconfig"),
           TROUPE_TOKEN_FILE=TOKEN)


def run(argv):
    """Runs one README command, translated; returns (ok, output)."""
    global cwd
    if argv[0] == "sudo":
        argv = argv[1:]
    name = argv[0]
    if name == "make" and argv[1:] == ["package"]:
        debs = glob.glob(os.path.join(PACKAGE_DIR, "*.deb"))
        return len(debs) >= 2, f"{len(debs)} packages in {PACKAGE_DIR}"
    if name == "apt" and argv[1] == "install":
        debs = []
        for pattern in argv[2:]:
            debs += sorted(glob.glob(os.path.join(PACKAGE_DIR, os.path.basename(pattern))))
        out = ""
        for deb in debs:
            r = subprocess.run(["dpkg-deb", "-x", deb, ROOT], capture_output=True, text=True)
            if r.returncode != 0:
                return False, r.stderr
            out += os.path.basename(deb) + "\n"
        ok = len(debs) == len(argv) - 2
        node_deb = [d for d in debs if os.path.basename(d).startswith("troupe-node_")]
        if ok and node_deb:
            # The postinst makes the admin token; here it runs as the
            # postinst runs it, but for the chown to users a throwaway
            # root does not have.
            control = os.path.join(tmp, "control")
            subprocess.run(["dpkg-deb", "-e", node_deb[0], control], check=True)
            with open(os.path.join(control, "postinst")) as f:
                postinst = f.read()
            call = "/usr/lib/troupe/troupe-admin-token /etc/troupe/admin.token troupe:troupe-admin"
            r = subprocess.run([inside("/usr/lib/troupe/troupe-admin-token"), TOKEN],
                               capture_output=True, text=True)
            ok = call in postinst and r.returncode == 0
            # The config names the token by its machine path: point it into
            # the root, so that --check-config before the start reads it.
            config = os.path.join(ROOT, "etc/troupe/node.yaml")
            with open(config) as f:
                text = f.read()
            with open(config, "w") as f:
                f.write(text.replace("token_file: /etc/troupe/admin.token", "token_file: " + TOKEN))
            if ok:
                with open(TOKEN) as f:
                    token_text = f.read()
                mode = os.stat(TOKEN).st_mode & 0o777
                check("the admin token is 32 random bytes in hex, readable by owner and group only",
                      re.fullmatch(r"[0-9a-f]{64}\n", token_text) is not None and mode == 0o640,
                      f"mode {mode:o}")
            out += f"postinst makes the token: {call in postinst}\n" + r.stdout + r.stderr
        return ok, out
    if name == "systemctl":
        action = argv[1:]
        if action == ["enable", "--now", "troupe-node"]:
            node.start()
            return node.p.poll() is None, ""
        if action == ["reload", "troupe-node"]:
            return node.reload(), node.err.text()[-1000:]
        if action == ["stop", "troupe-node"]:
            rc = node.stop()
            return rc == 0, f"exit {rc}\n" + node.err.text()[-1000:]
    if name == "journalctl" and argv[1:] == ["-u", "troupe-node"]:
        return "ready:" in node.err.text(), node.err.text()
    if name == "cd" and len(argv) == 2:
        cwd = os.path.join(cwd, argv[1])
        return os.path.isdir(cwd), cwd
    if name == "troupectl":
        argv = [os.path.join(ROOT, "usr/bin/troupectl"), "--admin", node.admin] + argv[1:]
    elif name == "troupe-node":
        argv = [os.path.join(ROOT, "usr/bin/troupe-node")] + [inside(a) for a in argv[1:]]
    elif name == "meson" and argv[1] == "install":
        argv = argv + ["--destdir", ROOT]
    elif name in ("cp", "sed", "meson"):
        argv = [argv[0]] + [inside(a) for a in argv[1:]]
    else:
        return False, f"the test does not know how to run '{name}' in a throwaway root"
    r = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    return r.returncode == 0, r.stdout + r.stderr


for marker, lang, text in readme_blocks():
    if marker.startswith("file "):
        packaged = inside(marker.split(" ", 1)[1])
        try:
            with open(packaged) as f:
                same = f.read() == text
        except OSError as e:
            same, text = False, str(e)
        check(f"the README shows {marker[5:]} as packaged", same, text[:300])
        continue
    for line in text.splitlines():
        command, _, comment = line.partition("  #")
        command = command.strip()
        if not command:
            continue
        expected = comment.strip()[len("prints:"):].strip() if "prints:" in comment else None
        for part in command.split(" && "):
            ok, out = run(shlex.split(part))
            if expected is not None:
                want = inside(expected) if expected.startswith(MACHINE_PATHS) else expected
                ok = ok and want in out
            check(f"README ({marker}): {part}", ok, out[-1500:])
            if not ok:
                break

if node.p is not None and node.p.poll() is None:
    node.p.kill()
shutil.rmtree(tmp, ignore_errors=True)
finish()
