"""What the integration tests share: reporting checks in the form
scripts/run-tests counts ("N passed, N failed"), the built example
plugins, and reading a running node's stderr."""
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

_passed = 0
_failed = 0


def check(name, ok, detail=""):
    """Reports one check; `detail` says what was seen when it fails."""
    global _passed, _failed
    if ok:
        _passed += 1
        print(f"ok   {name}")
    else:
        _failed += 1
        print(f"FAIL {name}: {detail}")


def finish():
    """Prints the summary line and exits with the tests' status."""
    print(f"{_passed} passed, {_failed} failed")
    sys.exit(1 if _failed else 0)


def copy_plugins(build_root, dest, subdirs):
    """Copies the built example plugins of plugins/<subdir> into `dest`, one
    folder as a node's plugins.dir holds them."""
    os.makedirs(dest, exist_ok=True)
    for sub in subdirs:
        d = os.path.join(build_root, "plugins", sub)
        for f in os.listdir(d):
            if f.endswith(".so"):
                shutil.copy(os.path.join(d, f), dest)


_started = []


def _report_and_reap(kind=None, value=None, tb=None):
    """On an uncaught exception, says how every started process ended and
    what it last wrote; at exit, kills what still runs so that a failed
    test never leaves nodes behind holding the runner's pipes."""
    if kind is not None:
        sys.__excepthook__(kind, value, tb)
        for proc, reader in _started:
            rc = proc.poll()
            state = "still running" if rc is None else f"exited with {rc}"
            print(f"--- process {proc.args[0]} (pid {proc.pid}) {state}; its stderr ends:\n"
                  f"{reader.text()[-3000:]}", file=sys.stderr)
    for proc, _ in _started:
        if proc.poll() is None:
            proc.kill()


sys.excepthook = _report_and_reap
atexit.register(_report_and_reap)


class stderr_reader:
    """Collects a process's stderr lines on a thread of its own; the process
    is killed when the test ends, and described if the test dies."""

    def __init__(self, proc):
        self.lines = []
        _started.append((proc, self))
        threading.Thread(target=self._run, args=(proc,), daemon=True).start()

    def _run(self, proc):
        for line in proc.stderr:
            self.lines.append(line)

    def has(self, part, timeout=10.0):
        """Waits up to `timeout` for a line containing `part`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(part in l for l in self.lines):
                return True
            time.sleep(0.02)
        return False

    def text(self):
        return "".join(self.lines)


def wait_or_kill(p, timeout=20):
    """The exit status of `p` once it ends, or -1 (after killing it) if it
    is still running after `timeout` seconds."""
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return -1


def run_until_ready(node, config, env=None, marker="ready:"):
    """Starts the node, waits for `marker`, stops it with SIGTERM; returns
    (saw the marker, exit status, stderr_reader)."""
    p = subprocess.Popen([node, "--config", config], stderr=subprocess.PIPE, text=True, env=env)
    err = stderr_reader(p)
    ok = err.has(marker)
    p.send_signal(signal.SIGTERM)
    rc = wait_or_kill(p)
    return ok, rc, err


def listening_url(reader, what, timeout=20.0):
    """The URL a node logged for `what` ("admin API" or "metrics"), or None."""
    if not reader.has(f"{what} on http://", timeout):
        return None
    for line in reader.lines:
        m = re.search(what + r" on (http://\S+)", line)
        if m:
            return m.group(1)
    return None


def http(method, url, body=None, token=None, raw=None):
    """(status, parsed JSON, or the raw bytes when not JSON) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text or b"null")
    except ValueError:
        return status, text
