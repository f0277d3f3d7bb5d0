#!/usr/bin/env python3
"""Runs the real troupe-node binary: it starts, reports its demo workload,
stops cleanly on SIGTERM and SIGINT, and refuses bad configs with the file,
line and key and exit status 78.

It also loads plugins as an operator configures them: the example plugins
load, a broken one is refused with its file and reason while the node goes
on, and a required one that does not load stops start-up with status 78.
Its state directory is made, locked against a second node, and found in
systemd's $STATE_DIRECTORY when the config names none.

usage: node_test.py TROUPE_NODE CONFIG_DIR BUILD_ROOT
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import check, copy_plugins, finish, run_until_ready, stderr_reader

NODE, CONFIG_DIR, BUILD_ROOT = sys.argv[1], sys.argv[2], sys.argv[3]




def run_until(config, sig, wait_for, timeout=20):
    """Starts the node, waits for a line containing `wait_for` on stderr,
    sends `sig`, returns (exit status, full stderr)."""
    p = subprocess.Popen([NODE, "--config", config], stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.time() + timeout
    seen = False
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        if wait_for in line:
            seen = True
            break
    p.send_signal(sig)
    try:
        _, rest = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        _, rest = p.communicate()
    return p.returncode, "".join(lines) + rest, seen


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# dev.yaml as it is, with its plugin dir pointed at this build's plugins.
plugin_tmp = tempfile.mkdtemp()
plugin_dir = os.path.join(plugin_tmp, "plugins")
copy_plugins(BUILD_ROOT, plugin_dir, ["echo", "counter", "worker-pool", "news"])
with open(os.path.join(CONFIG_DIR, "dev.yaml")) as f:
    dev_text = f.read()
check("dev.yaml keeps its state under the build tree", "state_dir: ../build/state" in dev_text, dev_text)
check("dev.yaml makes a cluster of one on loopback, under the secret make run makes",
      "listen: 127.0.0.1:7700" in dev_text and "secret_file: ../build/dev-cluster.key" in dev_text, dev_text)
dev_key = write(plugin_tmp, "dev-cluster.key", "a-secret-long-enough-for-the-dev-node\n")
os.chmod(dev_key, 0o600)
dev_text = dev_text.replace("../build/plugin-dir", plugin_dir).replace("../build/state", "state")
dev_text = dev_text.replace("127.0.0.1:7700", "127.0.0.1:0").replace("../build/dev-cluster.key", dev_key)
dev_text += "metrics: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\n"  # tests never take a fixed port
dev = write(plugin_tmp, "dev.yaml", dev_text)
for sig in (signal.SIGTERM, signal.SIGINT):
    rc, err, seen = run_until(dev, sig, " messages/s, ")
    check(f"the node reports its work and {sig.name} stops it with status 0",
          seen and rc == 0 and "all actors stopped" in err, f"rc={rc}\n{err}")
check("the node loads the example plugins",
      all(f"plugin {n} 1.0.0 loaded" in err for n in ("echo", "counter", "worker_pool", "news")), err)
state = os.path.join(plugin_tmp, "state")
check("a relative state_dir is made beside the config file and locked while the node runs",
      f"state directory {state} (locked while the node runs)" in err
      and os.path.isfile(os.path.join(state, "troupe-node.lock")), err)

# Two nodes on one state directory: the second stops before it binds anything.
first = subprocess.Popen([NODE, "--config", dev], stderr=subprocess.PIPE, text=True)
first_err = stderr_reader(first)
first_up = first_err.has("ready:", 20)
r = subprocess.run([NODE, "--config", dev], capture_output=True, text=True, timeout=20)
with open(os.path.join(state, "troupe-node.lock")) as f:
    holder = f.read().strip()
check("a second node on the same state directory exits 1 naming the node that holds it",
      first_up and r.returncode == 1 and holder == str(first.pid) and
      f"state directory {state} is in use by another node (pid {first.pid})" in r.stderr
      and "admin API on" not in r.stderr, f"rc={r.returncode} holder={holder}\n{r.stderr}")
# `make run` shows a node at work, not a core kept busy.
def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


c0, t0 = cpu_seconds(first.pid), time.time()
time.sleep(3)
share = (cpu_seconds(first.pid) - c0) / (time.time() - t0)
check("the demo of make run takes a modest share of a core (under half)", share < 0.5,
      f"{share:.2f} of a core")
print(f"info: the dev node used {share:.3f} of a core while idle but for its demo")
first.send_signal(signal.SIGTERM)
first.wait(timeout=20)

# Without node.state_dir, systemd's StateDirectory= (as $STATE_DIRECTORY).
env = dict(os.environ, STATE_DIRECTORY=os.path.join(plugin_tmp, "from-systemd") + ":/elsewhere")
no_state = write(plugin_tmp, "no-state.yaml", "metrics: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\n")
seen, rc, reader = run_until_ready(NODE, no_state, env)
check("without node.state_dir the node takes systemd's $STATE_DIRECTORY (its first folder)",
      seen and rc == 0 and reader.has(f"state directory {plugin_tmp}/from-systemd (locked", 1), reader.text())
env.pop("STATE_DIRECTORY")
seen, rc, reader = run_until_ready(NODE, no_state, env)
check("with neither, the node says it has no state directory",
      seen and rc == 0 and reader.has("no state directory: node.state_dir is not set", 1), reader.text())

with open(os.path.join(plugin_dir, "broken.so"), "w") as f:
    f.write("not a library\n")
cfg = write(plugin_tmp, "broken.yaml",
            f"plugins:\n  dir: {plugin_dir}\n  load: [broken, counter]\n"
            "metrics: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\n")
seen, rc, reader = run_until_ready(NODE, cfg)
err = reader.text()
check("a plugin that does not fit is refused with its file and reason, and the node goes on",
      seen and rc == 0 and f"{plugin_dir}/broken.so: not a shared object" in err
      and "plugin counter 1.0.0 loaded" in err, f"rc={rc}\n{err}")
for name in ("broken", "absent"):
    cfg = write(plugin_tmp, "required.yaml",
                f"plugins:\n  dir: {plugin_dir}\n  load: [counter]\n  required: [{name}]\n")
    r = subprocess.run([NODE, "--config", cfg], capture_output=True, text=True, timeout=20)
    check(f"a required plugin that does not load ({name}) stops start-up with 78",
          r.returncode == 78 and f"{plugin_dir}/{name}.so:" in r.stderr
          and f"required plugin '{name}' did not load" in r.stderr,
          f"rc={r.returncode} stderr={r.stderr!r}")
shutil.rmtree(plugin_tmp)

rc = subprocess.run([NODE, "--version"], capture_output=True, text=True)
check("--version prints the version", rc.returncode == 0 and rc.stdout.startswith("troupe-node "),
      rc.stdout + rc.stderr)
rc = subprocess.run([NODE, "--help"], capture_output=True, text=True)
check("--help explains every option on stdout and exits 0",
      rc.returncode == 0 and all(o in rc.stdout for o in ("--config", "--check-config", "--version")),
      rc.stdout + rc.stderr)
rc = subprocess.run([NODE, "--frobnicate"], capture_output=True, text=True)
check("an unknown option is named, then the usage, and exits 64",
      rc.returncode == 64 and rc.stderr.startswith("troupe-node: unknown option '--frobnicate'\nUsage: troupe-node"),
      rc.stdout + rc.stderr)
rc = subprocess.run([NODE, "--config"], capture_output=True, text=True)
check("--config without its file says so and exits 64",
      rc.returncode == 64 and rc.stderr.startswith("troupe-node: --config needs a FILE\n"), rc.stdout + rc.stderr)

with tempfile.TemporaryDirectory() as tmp:
    empty = write(tmp, "empty.token", "\n")
    short = write(tmp, "short.key", "tiny\n")
    key = write(tmp, "cluster.key", "a-secret-long-enough-for-the-cluster\n")
    blank = write(tmp, "blank.key", "# no secret yet\n\n")
    cases = [
        ("unknown key", "node:\n  name: a\n  colour: blue\n", ":3:", "unknown key 'node.colour'"),
        ("bad thread count", "dispatcher:\n  threads: lots\n", ":2:", "'dispatcher.threads' must be a whole number"),
        ("bad log level", "log:\n  level: loud\n", ":2:", "'log.level' must be one of"),
        ("invalid YAML", "node: [unclosed\n", ":", "invalid YAML"),
        ("plugin path instead of name", "plugins:\n  dir: /tmp\n  load:\n    - ../x\n", ":2:",
         "plugin name '../x' must be a name in 'plugins.dir'"),
        ("plugins without dir", "plugins:\n  load: [counter]\n", ":2:", "'plugins.dir' is needed"),
        ("unreadable plugin folder", "plugins:\n  dir: /nonexistent/plugins\n  load: [counter]\n",
         ":2:", "'plugins.dir' /nonexistent/plugins is not a readable directory"),
        ("no plugin folder of a list exists",
         "plugins:\n  dir: [/nonexistent/a, /nonexistent/b]\n  load: [counter]\n", ":2:",
         "'plugins.dir' lists no readable directory: /nonexistent/a, /nonexistent/b"),
        ("bad listen address", "node:\n  listen: example.com:7700\n", ":2:",
         "'node.listen' 'example.com:7700' is not a valid address: 'example.com' is not an IP address"),
        ("bad port", "admin:\n  listen: 127.0.0.1:99999\n", ":2:", "the port must be 0-65535"),
        ("bad seed", "seeds:\n  - 10.0.0.5\n", ":2:", "seed '10.0.0.5' is not a valid address"),
        ("missing secret file", "node:\n  secret_file: /nonexistent/cluster.key\n", ":2:",
         "'node.secret_file' /nonexistent/cluster.key is not a readable file"),
        ("empty token file", f"admin:\n  token_file: {empty}\n", ":2:",
         f"'admin.token_file' {empty} holds no token"),
        ("a histogram that is not a flag", "kinds:\n  counter: { histogram: some }\n", ":2:",
         "'kinds.counter.histogram' must be true or false"),
        ("the old list of histograms", "metrics:\n  histograms: [counter]\n", ":2:",
         "'metrics.histograms' has moved: set kinds.<kind>.histogram: true"),
        ("listen without a secret", "node:\n  listen: 127.0.0.1:0\n", ":2:",
         "'node.secret_file' (or 'remote.tls') is needed with 'node.listen'"),
        ("a secret file with no secret", f"node:\n  secret_file: {blank}\n", ":2:",
         f"'node.secret_file' {blank} holds no secret"),
        ("remote.tls without its key", f"remote:\n  tls:\n    cert_file: {key}\n", ":3:",
         "'remote.tls' needs cert_file, key_file and ca_file together"),
        ("remote.insecure_plaintext not a boolean", "remote:\n  insecure_plaintext: maybe\n", ":2:",
         "'remote.insecure_plaintext' must be true or false"),
        ("a secret too short", f"node:\n  secret_file: {short}\n", ":2:",
         "holds a secret of 4 bytes; at least 16 are needed"),
        ("wildcard listen without advertise",
         f"node:\n  secret_file: {key}\n  listen: 0.0.0.0:7700\n", ":3:",
         "'node.advertise' is needed when 'node.listen' is 0.0.0.0:7700"),
        ("heartbeat timeout not above the interval",
         "remote:\n  heartbeat_interval_ms: 500\n  heartbeat_timeout_ms: 500\n", ":2:",
         "'remote.heartbeat_timeout_ms' (500) must be longer"),
        ("frame cap too small", "remote:\n  max_frame_bytes: 1000\n", ":2:",
         "'remote.max_frame_bytes' must be between 65536"),
        ("remote_spawn not a flag", "kinds:\n  all: { remote_spawn: everything }\n", ":2:",
         "'kinds.all.remote_spawn' must be true or false"),
        ("the old list of kinds peers may spawn", "remote:\n  spawn: ['*']\n", ":2:",
         "'remote.spawn' has moved: set kinds.<kind>.remote_spawn: true"),
        ("unknown section", "node:\n  name: a\ncolour: blue\n", ":3:", "unknown key 'colour'"),
        ("a list for a name", "node:\n  name: [a, b]\n", ":2:", "'node.name' must be a string"),
        ("a section that is not a mapping", "admin: 127.0.0.1:7780\n", ":1:", "'admin' must be a mapping"),
        ("missing token file", "admin:\n  token_file: /nonexistent/admin.token\n", ":2:",
         "'admin.token_file' /nonexistent/admin.token is not a readable file"),
        ("state_dir a file", f"node:\n  state_dir: {key}\n", ":2:", f"'node.state_dir' {key} is not a directory"),
        ("state_dir that cannot be made", f"node:\n  state_dir: {key}/state\n", ":2:",
         f"'node.state_dir' {key}/state does not exist and cannot be created in {key}"),
        ("an admin API open to other hosts without a token", "admin:\n  listen: 0.0.0.0:0\n", ":2:",
         "'admin.listen' 0.0.0.0:0 accepts connections from other hosts, and 'admin.token_file' is not set"),
        ("a mapping used as a key", "node:\n  name: a\n? {x: 1}\n: 2\n", ":3:",
         "a mapping is used as a key; keys are names"),
        ("a list used as a key", "? [a, b]\n: 3\n", ":1:", "a list is used as a key; keys are names"),
        ("a second section of the same name", "admin:\n  listen: 127.0.0.1:0\nadmin:\n"
         "  token_file: /etc/hostname\n", ":3:", "duplicate key 'admin' (first at line 1)"),
        ("a key twice in a section", "node:\n  name: a\n  name: b\n", ":3:",
         "duplicate key 'name' (first at line 2)"),
        ("nesting past any use", "node:\n  name: " + "[" * 200 + "]" * 200 + "\n", ":",
         "more than 64 levels deep"),
        ("a queue budget in an unknown unit", "node:\n  max_queued_bytes: 2 parsecs\n", ":2:",
         "'node.max_queued_bytes' '2 parsecs': unknown unit 'parsecs'"),
        ("a queue budget of all memory", "node:\n  max_queued_bytes: 100%\n", ":2:",
         "a share of the memory limit must be from 1% to 90%"),
        ("a mailbox overflow nobody knows", "kinds:\n  all:\n    mailbox: { capacity: 10, overflow: sometimes }\n",
         ":3:", "'kinds.all.mailbox.overflow' must be drop_newest, drop_oldest or block"),
        ("the old plugins.mailbox", "plugins:\n  mailbox: { capacity: 10 }\n", ":2:",
         "'plugins.mailbox' has moved: set kinds.all.mailbox"),
        ("a kind's mailbox key misspelt", "kinds:\n  counter: { mailbx: {} }\n", ":2:",
         "unknown key 'kinds.counter.mailbx'"),
        ("a mailbox capacity past reason", "kinds:\n  counter:\n    mailbox: { capacity: -1 }\n",
         ":3:", "'kinds.counter.mailbox.capacity' must be between 0 and 100000000 messages"),
        ("a grain idle timeout that is no duration", "kinds:\n  counter:\n    grain: { idle_timeout: soon }\n",
         ":3:", "'kinds.counter.grain.idle_timeout' must be a duration such as 500ms, 30s, 10m, 2h or 1d (not 'soon')"),
        ("a grain idle timeout too short", "kinds:\n  counter:\n    grain: { idle_timeout: 10ms }\n",
         ":3:", "'kinds.counter.grain.idle_timeout' must be between 1s and 7d"),
    ]
    for name, text, where, what in cases:
        path = write(tmp, name.replace(" ", "_") + ".yaml", text)
        r = subprocess.run([NODE, "--config", path], capture_output=True, text=True, timeout=20)
        check(f"config error ({name}) exits 78 naming file, line and problem",
              r.returncode == 78 and (path + where) in r.stderr and what in r.stderr,
              f"rc={r.returncode} stderr={r.stderr!r}")
    for label, extra in (("with a token", f"  token_file: {key}\n"), ("said in so many words", "  insecure_no_token: true\n")):
        path = write(tmp, "open-admin.yaml", "admin:\n  listen: 0.0.0.0:0\n" + extra)
        r = subprocess.run([NODE, "--check-config", path], capture_output=True, text=True, timeout=20)
        check(f"an admin API open to other hosts is accepted {label}", r.returncode == 0, r.stdout + r.stderr)
    for flag in ("--config", "--check-config"):
        r = subprocess.run([NODE, flag, tmp], capture_output=True, text=True, timeout=20)
        check(f"a directory given to {flag} exits 78 saying so",
              r.returncode == 78 and f"{tmp}: is a directory, not a configuration file" in r.stderr,
              f"rc={r.returncode} stderr={r.stderr!r}")
    # As shipped, but for the token the package makes at install.
    with open(os.path.join(CONFIG_DIR, "node.yaml")) as f:
        shipped = f.read()
    check("the packaged node.yaml wants the token the package makes",
          "  token_file: /etc/troupe/admin.token" in shipped, shipped)
    packaged = write(tmp, "packaged-node.yaml", shipped.replace("/etc/troupe/admin.token", key))
    r = subprocess.run([NODE, "--check-config", packaged], capture_output=True, text=True, timeout=20)
    check("the packaged node.yaml is valid", r.returncode == 0, r.stdout + r.stderr)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(tmp, "taken.yaml", f"admin: {{ listen: 127.0.0.1:{port} }}\n"
                                        "metrics: { listen: 127.0.0.1:0 }\n")
        r = subprocess.run([NODE, "--config", path], capture_output=True, text=True, timeout=20)
    check("an admin port in use stops start-up with the address and status 1",
          r.returncode == 1 and f"admin: cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(tmp, "taken-node.yaml",
                     f"node: {{ listen: 127.0.0.1:{port}, secret_file: {key} }}\n"
                     "admin: { listen: 127.0.0.1:0 }\nmetrics: { listen: 127.0.0.1:0 }\n")
        r = subprocess.run([NODE, "--config", path], capture_output=True, text=True, timeout=20)
    check("a node port in use stops start-up with the address and status 1",
          r.returncode == 1 and f"remote: cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr)
    r = subprocess.run([NODE, "--config", os.path.join(tmp, "missing.yaml")],
                       capture_output=True, text=True, timeout=20)
    check("a missing config file exits 78", r.returncode == 78 and "cannot read" in r.stderr, r.stderr)

finish()
