#!/usr/bin/env python3
"""Scrapes the real troupe-node's /metrics and checks what an operator's
dashboards rely on: the metric names, their values moving, and no
per-actor labels.

usage: metrics_test.py TROUPE_NODE BUILD_ROOT
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from harness import check, copy_plugins, finish, http, listening_url, stderr_reader, wait_or_kill

NODE, BUILD_ROOT = sys.argv[1], sys.argv[2]




def parse(text):
    """{name: [(labels dict, value)]} from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if not m:
            raise ValueError(f"not a sample line: {line!r}")
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(4))))
    return out


tmp = tempfile.mkdtemp()
plugin_dir = os.path.join(tmp, "plugins")
copy_plugins(BUILD_ROOT, plugin_dir, ["counter"])
cfg = os.path.join(tmp, "node.yaml")
with open(cfg, "w") as f:
    f.write(f"node: {{ name: metrics }}\nplugins: {{ dir: {plugin_dir}, load: [counter, absent] }}\n"
            "metrics: { listen: 127.0.0.1:0 }\nadmin: { listen: 127.0.0.1:0 }\ndemo: true\n")

p = subprocess.Popen([NODE, "--config", cfg], stderr=subprocess.PIPE, text=True)
err = stderr_reader(p)
lines = err.lines
url = None
deadline = time.time() + 20
while time.time() < deadline and url is None:
    for l in list(lines):
        m = re.search(r"metrics on (http://\S+/metrics)", l)
        if m:
            url = m.group(1)
    time.sleep(0.05)
check("the node says where its metrics are", url is not None, "".join(lines))

admin = listening_url(err, "admin API")
if url and admin:
    # An actor spawned and stopped through the admin API, and a message its
    # plugin's schema refuses: the counters an operator alerts on must move.
    spawned = http("POST", admin + "/v1/actors", {"kind": "counter", "name": "c"})[0] == 201
    stopped = http("DELETE", admin + "/v1/actors/c")[0] == 200
    time.sleep(0.5)
    first = parse(urllib.request.urlopen(url, timeout=10).read().decode())
    time.sleep(0.5)
    second = parse(urllib.request.urlopen(url, timeout=10).read().decode())
    wanted = ["troupe_build_info", "troupe_actors", "troupe_actor_spawns_total",
              "troupe_actor_failures_total", "troupe_actor_restarts_total",
              "troupe_messages_processed_total", "troupe_dead_letters_total",
              "troupe_mailbox_dropped_total", "troupe_plugins_loaded",
              "troupe_plugin_load_failures_total", "troupe_event_loop_idle_seconds_total",
              "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
              "troupe_actor_stops_total", "troupe_plugin_invalid_messages_total", "troupe_timers"]
    missing = [n for n in wanted if n not in second]
    check("every documented metric is there", not missing, f"missing {missing}")

    def value(snapshot, name, **labels):
        for l, v in snapshot.get(name, []):
            if all(l.get(k) == w for k, w in labels.items()):
                return v
        return None

    check("troupe_build_info carries the version", value(second, "troupe_build_info") == 1.0 and
          second["troupe_build_info"][0][0].get("version"), str(second.get("troupe_build_info")))
    check("the demo's 1000 actors are counted by kind",
          value(second, "troupe_actors", kind="demo.ring") == 1000.0, str(second.get("troupe_actors")))
    check("messages processed keep rising",
          (value(second, "troupe_messages_processed_total") or 0) >
          (value(first, "troupe_messages_processed_total") or 0) > 0)
    check("an actor spawned and stopped through the admin API is counted",
          spawned and stopped and (value(second, "troupe_actor_stops_total") or 0) >= 1 and
          (value(second, "troupe_actor_spawns_total") or 0) >= 1001,
          f"{spawned} {stopped} {second.get('troupe_actor_stops_total')}")
    check("process metrics describe a live process: CPU used and rising, memory, open files",
          0 < (value(first, "process_cpu_seconds_total") or 0) < (value(second, "process_cpu_seconds_total") or 0)
          and (value(second, "process_resident_memory_bytes") or 0) > 4 << 20
          and (value(second, "process_open_fds") or 0) >= 5,
          str({n: (value(first, n), value(second, n)) for n in
               ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds")}))
    idle = (value(second, "troupe_event_loop_idle_seconds_total") or 0) - \
           (value(first, "troupe_event_loop_idle_seconds_total") or 0)
    check("the event loop's idle time grows while it waits (half a second between scrapes)",
          0.05 < idle <= 1.0, f"grew by {idle}")
    check("no plugin message failed verification, no timer is pending",
          value(second, "troupe_plugin_invalid_messages_total") == 0.0 and
          value(second, "troupe_timers") is not None and value(second, "troupe_timers") >= 0,
          str((second.get("troupe_plugin_invalid_messages_total"), second.get("troupe_timers"))))
    check("one plugin loaded, one refused",
          value(second, "troupe_plugins_loaded") == 1.0 and
          value(second, "troupe_plugin_load_failures_total") == 1.0)
    check("dead letters are labelled by reason",
          {l.get("reason") for l, _ in second["troupe_dead_letters_total"]} >=
          {"not_found", "stopped", "mailbox_full"})
    labels = {k for samples in second.values() for l, _ in samples for k in l}
    check("no label names an actor", not ({"id", "pid", "actor"} & labels), str(labels))
    names_ok = all(re.match(r"^(troupe|process)_", n) for n in second)
    check("metric names are prefixed", names_ok, str(list(second)))

p.send_signal(signal.SIGTERM)
rc = wait_or_kill(p)
check("the node stops cleanly after being scraped", rc == 0, "".join(lines))
shutil.rmtree(tmp)
finish()
