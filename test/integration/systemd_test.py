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
