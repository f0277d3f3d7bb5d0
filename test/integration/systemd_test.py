#!/usr/bin/env python3
"""systemd/troupe-node.service passes `systemd-analyze verify` (pointed at
the built binary) and `systemd-analyze security` rates it OK or better.

usage: systemd_test.py UNIT TROUPE_NODE
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from harness import check, finish

UNIT, NODE = sys.argv[1], sys.argv[2]




# What operators and the node rely on, whatever the analyzers think of it.
with open(UNIT) as f:
    service = {}
    section = None
    for line in f:
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            service[k.strip()] = v.strip()
wanted = {
    "Type": lambda v: v == "notify",
    "ExecStart": lambda v: v.startswith("/usr/bin/troupe-node --config /etc/troupe/node.yaml"),
    "ExecReload": lambda v: "kill -HUP $MAINPID" in v,
    "Restart": lambda v: v == "on-failure",
    "RestartPreventExitStatus": lambda v: "78" in v.split(),
    "WatchdogSec": lambda v: re.fullmatch(r"[1-9][0-9]*s?", v) is not None,
    "StateDirectory": lambda v: v == "troupe",
    "ConfigurationDirectory": lambda v: v == "troupe",
    "LimitNOFILE": lambda v: v.isdigit() and int(v) >= 65536,
    "User": lambda v: v == "troupe",
}
bad = {k: service.get(k) for k, ok in wanted.items() if k not in service or not ok(service[k])}
check("the unit has what the node relies on (notify, watchdog, reload, restart, state and config dirs, files)",
      not bad, str(bad))

analyze = shutil.which("systemd-analyze")
check("systemd-analyze is installed", analyze is not None, "install the systemd package")
if analyze:
    with tempfile.TemporaryDirectory() as tmp:
        with open(UNIT) as f:
            text = f.read().replace("/usr/bin/troupe-node", os.path.abspath(NODE))
        unit = os.path.join(tmp, "troupe-node.service")
        with open(unit, "w") as f:
            f.write(text)
        r = subprocess.run([analyze, "verify", unit], capture_output=True, text=True)
        problems = [l for l in (r.stdout + r.stderr).splitlines() if "troupe-node.service" in l]
        check("systemd-analyze verify finds nothing", r.returncode == 0 and not problems,
              "\n".join(problems) or r.stderr)
        r = subprocess.run([analyze, "security", "--offline=yes", unit], capture_output=True, text=True)
        m = re.search(r"Overall exposure level for troupe-node.service: ([0-9.]+)", r.stdout + r.stderr)
        level = float(m.group(1)) if m else 99.0
        check("systemd-analyze security rates the unit's exposure 2.0 or less", level <= 2.0,
              r.stdout[-500:] + r.stderr)

finish()
