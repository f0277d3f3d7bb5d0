#!/usr/bin/env python3
"""The SDK as a plugin author meets it: every public header compiles on its
own, and a plugin outside this tree builds through pkg-config alone (the
uninstalled troupe-sdk.pc), loads into a real actor system and answers.

usage: sdk_test.py CXX SDK_INCLUDE BUILD_ROOT OUT_OF_TREE_SRC PLUGIN_PROBE
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from harness import check, finish

CXX, SDK_INCLUDE, BUILD_ROOT, OOT_SRC, PROBE = sys.argv[1:6]




def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---- every public header on its own
headers = sorted(os.listdir(os.path.join(SDK_INCLUDE, "troupe")))
with tempfile.TemporaryDirectory() as tmp:
    for h in headers:
        src = os.path.join(tmp, "one.cpp")
        with open(src, "w") as f:
            f.write(f"#include <troupe/{h}>\n")
        r = run(CXX.split() + ["-std=c++20", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                               "-I", SDK_INCLUDE, src])
        check(f"troupe/{h} compiles on its own as C++", r.returncode == 0, r.stderr)
        if h.endswith(".h"):
            csrc = os.path.join(tmp, "one.c")
            with open(csrc, "w") as f:
                f.write(f"#include <troupe/{h}>\n")
            cc = shutil.which("cc") or "gcc"
            r = run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only",
                     "-I", SDK_INCLUDE, csrc])
            check(f"troupe/{h} compiles on its own as C", r.returncode == 0, r.stderr)

# ---- a plugin from outside the tree, through pkg-config only
env = dict(os.environ)
env["PKG_CONFIG_PATH"] = os.path.join(BUILD_ROOT, "sdk")
r = run(["pkg-config", "--variable=plugindir", "troupe-sdk"], env=env)
check("the build tree's troupe-sdk.pc installs plugins where `make run` loads them (BUILD/plugin-dir)",
      r.returncode == 0 and os.path.realpath(r.stdout.strip()) == os.path.realpath(os.path.join(BUILD_ROOT, "plugin-dir")),
      r.stdout + r.stderr)

with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "greeter")
    shutil.copytree(OOT_SRC, src)
    build = os.path.join(tmp, "build")
    r = run(["meson", "setup", build, src], env=env)
    check("meson setup of the out-of-tree plugin", r.returncode == 0, r.stdout + r.stderr)
    if r.returncode == 0:
        r = run(["ninja", "-C", build], env=env)
        check("the out-of-tree plugin builds", r.returncode == 0, r.stdout + r.stderr)
        with open(os.path.join(build, "compile_commands.json")) as f:
            commands = " ".join(c["command"] for c in json.load(f))
        daemon = os.path.join(os.path.dirname(SDK_INCLUDE.rstrip("/")), "..", "daemon")
        check("its build sees nothing under daemon/",
              "/daemon" not in commands and os.path.normpath(daemon) not in commands, commands)
        so = os.path.join(build, "greeter.so")
        r = run([PROBE, so, "world"])
        check("it loads into a node and answers", r.returncode == 0 and
              r.stdout.strip() == "hello, world", r.stdout + r.stderr)

finish()
