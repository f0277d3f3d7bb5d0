"""A network namespace of a test's own: the test script runs itself inside
it (its loopback up, each node on its own 127.0.0.x address) and the
namespace, with every nftables rule made in it, is removed afterwards,
even when the test fails."""
import os
import shutil
import subprocess
import sys


def usable():
    """Whether this process can make namespaces and rules (root, ip, nft)."""
    return os.geteuid() == 0 and shutil.which("nft") is not None and shutil.which("ip") is not None


def run_inside(script, argv, prefix):
    """Runs `script --inner ARGV...` inside a new namespace; its exit status."""
    ns = f"{prefix}-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        return subprocess.call(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(script), "--inner"] + argv)
    finally:
        subprocess.run(["ip", "netns", "delete", ns])
        if ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout:
            print(f"FAIL the namespace {ns} is still there")


def main(script, inner, prefix, what):
    """A test's entry point: `script ARGV` runs `script --inner ARGV` in a
    namespace of its own (skipped, status 77, without root, ip or nft); the
    inner run calls inner(ARGV)."""
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        inner(sys.argv[2:])
        return
    if not usable():
        print(f"SKIP: {what} needs root, ip and nft (scripts/install-deps installs them)")
        sys.exit(77)  # meson's "skipped"
    sys.exit(run_inside(script, sys.argv[1:], prefix))


def nft(*rules):
    """Applies nftables rules (one command each) in the current namespace."""
    subprocess.run(["nft", "-f", "-"], input="\n".join(rules) + "\n", text=True, check=True)
