#!/usr/bin/env python3
"""docs/operations.md's configuration reference is the node's own.

  config_reference_test.py SCRIPT NODE DOC

The reference is printed by `troupe-node --config-reference` from the
definitions the parser uses; scripts/config-reference --check compares it
with the document, and must notice a document that drifted.
"""
import os
import shutil
import subprocess
import sys
import tempfile

script, node, doc = sys.argv[1:4]
failed = passed = 0


def check(what, ok, detail=""):
    global failed, passed
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else ": " + detail))
    failed += 0 if ok else 1
    passed += 1 if ok else 0


r = subprocess.run([script, "--check", node, doc], capture_output=True, text=True)
check("docs/operations.md holds the configuration reference the node defines", r.returncode == 0,
      r.stdout + r.stderr)

reference = subprocess.run([node, "--config-reference"], capture_output=True, text=True).stdout
for key in ("`node.listen`", "`remote.heartbeat_interval_ms`", "`admin.token_file`", "`kinds.<kind>.mailbox.capacity`"):
    check(f"the reference lists {key}", key in reference, reference[:400])

with tempfile.TemporaryDirectory() as tmp:
    drifted = os.path.join(tmp, "operations.md")
    shutil.copy(doc, drifted)
    with open(drifted, encoding="utf-8") as f:
        text = f.read()
    with open(drifted, "w", encoding="utf-8") as f:
        f.write(text.replace("| `remote.heartbeat_interval_ms` | milliseconds, 10-600000 | `1000` |",
                             "| `remote.heartbeat_interval_ms` | milliseconds, 10-600000 | `500` |"))
    r = subprocess.run([script, "--check", node, drifted], capture_output=True, text=True)
    check("a reference that says another default is caught", r.returncode == 1 and "differs" in r.stderr,
          f"rc={r.returncode} {r.stderr}")
    subprocess.run([script, node, drifted], check=True)
    r = subprocess.run([script, "--check", node, drifted], capture_output=True, text=True)
    check("scripts/config-reference NODE DOC brings it back", r.returncode == 0, r.stderr)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
