"""A memory-limited cgroup made by a test for the processes it starts
(cgroup v2, or v1's memory controller), and removed when the test ends."""
import os
import time


def _own_path(controller):
    """This process's cgroup path: v2 (controller None) or a v1 controller's."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller is None and hid == "0" and ctrls == "":
                return path
            if controller is not None and controller in ctrls.split(","):
                return path
    return None


def _mounts():
    """(v2 mount point, v1 memory mount point), either None."""
    v2 = v1 = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields, kind = left.split(), right.split()
            root, point = fields[3], fields[4]
            if root != "/":
                continue
            if kind[0] == "cgroup2" and v2 is None:
                v2 = point
            if kind[0] == "cgroup" and "memory" in kind[2].split(",") and v1 is None:
                v1 = point
    return v2, v1


class memory_cgroup:
    """mkdir a child of this process's cgroup with a memory limit; `enter`
    is a preexec_fn that moves the new process into it."""

    def __init__(self, limit_bytes, name=None):
        name = name or f"troupe-test-{os.getpid()}"
        v2, v1 = _mounts()
        self.path = None
        why = []
        if v2:
            parent = os.path.join(v2, _own_path(None).lstrip("/"))
            try:
                with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                    enabled = f.read().split()
                if "memory" not in enabled:
                    with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                        f.write("+memory")
                path = os.path.join(parent, name)
                os.makedirs(path, exist_ok=True)
                with open(os.path.join(path, "memory.max"), "w") as f:
                    f.write(str(limit_bytes))
                with open(os.path.join(path, "memory.swap.max"), "w") as f:
                    f.write("0")
                self.path, self.version = path, 2
            except OSError as e:
                why.append(f"cgroup v2 at {parent}: {e}")
        if self.path is None and v1:
            parent = os.path.join(v1, (_own_path("memory") or "/").lstrip("/"))
            try:
                path = os.path.join(parent, name)
                os.makedirs(path, exist_ok=True)
                with open(os.path.join(path, "memory.limit_in_bytes"), "w") as f:
                    f.write(str(limit_bytes))
                self.path, self.version = path, 1
            except OSError as e:
                why.append(f"cgroup v1 memory at {parent}: {e}")
        if self.path is None:
            raise RuntimeError("no memory cgroup can be made here: " + ("; ".join(why) or "none mounted"))
        self.limit = limit_bytes

    def enter(self):
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def oom_kills(self):
        """Processes the kernel killed for want of memory in this cgroup."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            with open(os.path.join(self.path, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            pass
        return 0

    def usage(self):
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        with open(os.path.join(self.path, name)) as f:
            return int(f.read())

    def remove(self):
        """Once its processes are gone (waits a little for them)."""
        for _ in range(100):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)
