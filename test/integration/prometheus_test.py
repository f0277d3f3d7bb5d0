#!/usr/bin/env python3
"""A real Prometheus server scrapes the real troupe-node on loopback; the
checks read what Prometheus stored, through its HTTP query API, as a
dashboard or an alert would.

usage: prometheus_test.py TROUPE_NODE BUILD_ROOT PROMETHEUS
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from harness import check, copy_plugins, finish, listening_url, stderr_reader, wait_or_kill

NODE, BUILD_ROOT, PROMETHEUS = sys.argv[1], sys.argv[2], sys.argv[3]

if not os.access(PROMETHEUS, os.X_OK):
    check("a Prometheus server is installed (scripts/install-deps installs it)", False, PROMETHEUS)
    finish()

tmp = tempfile.mkdtemp()
plugin_dir = os.path.join(tmp, "plugins")
copy_plugins(BUILD_ROOT, plugin_dir, ["counter"])
cfg = os.path.join(tmp, "node.yaml")
with open(cfg, "w") as f:
    f.write(f"node: {{ name: scraped }}\nplugins: {{ dir: {plugin_dir}, load: [counter] }}\n"
            "admin: { listen: 127.0.0.1:0 }\n"
            "metrics: { listen: 127.0.0.1:0 }\ndemo: true\n"
            "kinds: { demo.ring: { histogram: true }, counter: { histogram: true } }\n")


def stop(p):
    p.send_signal(signal.SIGTERM)
    return wait_or_kill(p, 30)


node = subprocess.Popen([NODE, "--config", cfg], stderr=subprocess.PIPE, text=True)
node_err = stderr_reader(node)
metrics = listening_url(node_err, "metrics")
check("the node serves metrics", metrics is not None, node_err.text())
if metrics is None:
    node.kill()
    finish()
target = metrics[len("http://"):].split("/")[0]

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    web_port = s.getsockname()[1]
prom_cfg = os.path.join(tmp, "prometheus.yml")
with open(prom_cfg, "w") as f:
    f.write("global: { scrape_interval: 1s, evaluation_interval: 1s }\n"
            "scrape_configs:\n"
            "  - job_name: troupe\n"
            f"    static_configs: [ {{ targets: ['{target}'] }} ]\n")
prom = subprocess.Popen([PROMETHEUS, f"--config.file={prom_cfg}",
                         f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
                         f"--web.listen-address=127.0.0.1:{web_port}"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
prom_err = stderr_reader(prom)
api = f"http://127.0.0.1:{web_port}/api/v1"


def query(expr):
    """The instant vector of `expr`: [(labels, value)], [] on any failure."""
    url = f"{api}/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            j = json.loads(r.read())
    except (OSError, ValueError):
        return []
    if j.get("status") != "success":
        return []
    return [(s["metric"], float(s["value"][1])) for s in j["data"]["result"]]


def eventually(expr, ok, timeout=40.0):
    """Polls `expr` until `ok(result)`; returns the last result."""
    deadline = time.time() + timeout
    while True:
        res = query(expr)
        if (res and ok(res)) or time.time() > deadline:
            return res
        time.sleep(0.5)


up = eventually('up{job="troupe"}', lambda r: r[0][1] == 1.0)
check("Prometheus scrapes the node: up == 1", up and up[0][1] == 1.0, f"{up}\n{prom_err.text()[-2000:]}")

try:
    with urllib.request.urlopen(f"{api}/targets", timeout=5) as r:
        targets = json.loads(r.read())["data"]["activeTargets"]
except (OSError, ValueError, KeyError):
    targets = []
check("the target is healthy with no scrape error",
      len(targets) == 1 and targets[0]["health"] == "up" and targets[0]["lastError"] == "", str(targets))

actors = eventually('troupe_actors{kind="demo.ring"}', lambda r: r[0][1] == 1000.0)
check("troupe_actors by kind is stored", actors and actors[0][1] == 1000.0, str(actors))
build = query("troupe_build_info")
check("troupe_build_info carries the version label",
      len(build) == 1 and build[0][0].get("version") and build[0][1] == 1.0, str(build))
rate = eventually("rate(troupe_messages_processed_total[5s])", lambda r: r[0][1] > 1000)
check("the message rate is positive over scrapes", rate and rate[0][1] > 1000, str(rate))
p99 = eventually('histogram_quantile(0.99, rate(troupe_message_processing_seconds_bucket'
                 '{kind="demo.ring"}[5s]))', lambda r: 0 < r[0][1] < 5)
check("a p99 of handler time comes from the opt-in histogram", p99 and 0 < p99[0][1] < 5, str(p99))
names = query('count by (__name__) ({__name__=~"troupe_.+"})')
stored = {m["__name__"] for m, _ in names}
wanted = {"troupe_build_info", "troupe_actors", "troupe_actor_spawns_total",
          "troupe_actor_failures_total", "troupe_actor_restarts_total",
          "troupe_messages_processed_total", "troupe_dead_letters_total",
          "troupe_mailbox_dropped_total", "troupe_plugins_loaded",
          "troupe_plugin_load_failures_total", "troupe_event_loop_idle_seconds_total",
          "troupe_message_processing_seconds_bucket"}
check("every documented family is stored", wanted <= stored, f"missing {wanted - stored}")
ids = query('count({__name__=~"troupe_.+", id!=""}) or count({__name__=~"troupe_.+", actor!=""})')
check("no series carries an actor label", ids == [], str(ids))

check("Prometheus stops", stop(prom) == 0, prom_err.text()[-2000:])
check("the node stops cleanly after being scraped", stop(node) == 0, node_err.text())
shutil.rmtree(tmp)
finish()
