#!/usr/bin/env python3
"""The layering check: the tree passes it, and a tree with an include across
layers fails it, naming the file, the line and the rule.

usage: layers_test.py CHECK_LAYERS SOURCE_ROOT
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import check, finish  # noqa: E402

CHECK, ROOT = sys.argv[1], sys.argv[2]


def run(root):
    return subprocess.run([sys.executable, CHECK, "--root", root], capture_output=True, text=True, timeout=60)


r = run(ROOT)
check("the tree keeps its layers", r.returncode == 0, r.stdout + r.stderr)

with tempfile.TemporaryDirectory() as tmp:
    def write(rel, text):
        path = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    write("daemon/actor/ok.hpp", '#include <vector>\n#include "actor/message.hpp"\n#include <troupe/abi.h>\n')
    write("daemon/node/ok.cpp", '#include "remote/transport.hpp"\n#include "plugin/plugin_host.hpp"\n')
    r = run(tmp)
    check("includes downward and of the SDK pass", r.returncode == 0, r.stdout + r.stderr)

    write("daemon/actor/bad.cpp", '#include "actor/context.hpp"\n\n#include "remote/transport.hpp"\n')
    write("daemon/remote/sideways.hpp", '#include "plugin/plugin_host.hpp"\n')
    r = run(tmp)
    check("an include of a higher layer fails, naming file and line",
          r.returncode == 1 and "daemon/actor/bad.cpp:3: includes remote/transport.hpp; the actor layer "
          "may include only actor, sdk, system_generated.h" in r.stdout, r.stdout + r.stderr)
    check("so does one across layers (remote to plugin)",
          "daemon/remote/sideways.hpp:1: includes plugin/plugin_host.hpp" in r.stdout, r.stdout)

    os.remove(os.path.join(tmp, "daemon/actor/bad.cpp"))
    os.remove(os.path.join(tmp, "daemon/remote/sideways.hpp"))
    write("daemon/unlisted/x.cpp", '#include "actor/message.hpp"\n')
    r = run(tmp)
    check("a folder the check does not know fails until it is given its place",
          r.returncode == 1 and "daemon/unlisted/: a folder scripts/check-layers does not know" in r.stdout,
          r.stdout)

finish()
