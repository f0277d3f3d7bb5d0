#!/usr/bin/env python3
"""The admin API of the real troupe-node, driven the way an operator would:
through troupectl, and with raw HTTP for what troupectl never sends (bad
JSON, wrong methods, oversized bodies). The counter plugin is the workload.

usage: admin_test.py TROUPE_NODE TROUPECTL BUILD_ROOT
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request

from harness import check, copy_plugins, finish, http as raw_http, listening_url, stderr_reader, wait_or_kill

NODE, CTL, BUILD_ROOT = sys.argv[1], sys.argv[2], sys.argv[3]

tmp = tempfile.mkdtemp()
plugin_dir = os.path.join(tmp, "plugins")
copy_plugins(BUILD_ROOT, plugin_dir, ["counter", "echo"])
token_file = os.path.join(tmp, "admin.token")
with open(token_file, "w") as f:
    f.write("s3cret-token\n")
cfg = os.path.join(tmp, "node.yaml")


def write_config(token_path):
    with open(cfg, "w") as f:
        f.write(f"node: {{ name: adm, cluster: test }}\n"
                f"plugins: {{ dir: [{tmp}/not-made-yet, {plugin_dir}], load: [counter, echo] }}\n"
                f"admin: {{ listen: 127.0.0.1:0, token_file: {token_path} }}\n"
                "metrics: { listen: 127.0.0.1:0 }\n"
                "kinds: { counter: { histogram: true } }\n")


write_config(token_file)
p = subprocess.Popen([NODE, "--config", cfg], stderr=subprocess.PIPE, text=True)
err = stderr_reader(p)
admin = listening_url(err, "admin API")
metrics = listening_url(err, "metrics")
err.has("ready:", 20)
check("the node says where its admin API is and that it wants a token",
      admin is not None and err.has("(bearer token required)", 1), err.text())
if admin is None:
    p.kill()
    finish()


def ctl(*args, token=True, timeout=30):
    cmd = [CTL, "--admin", admin] + (["--token-file", token_file] if token else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def http(method, path, body=None, token="s3cret-token", raw=None):
    return raw_http(method, admin + path, body, token, raw)


def is_error(answer, status, code, part=""):
    s, j = answer
    return (s == status and isinstance(j, dict) and set(j) == {"error"} and
            j["error"].get("code") == code and part in j["error"].get("message", ""))


# ---- reading the node
r = ctl("status")
check("troupectl status shows the node", r.returncode == 0 and re.search(r"name:\s+adm", r.stdout)
      and re.search(r"state:\s+ready", r.stdout) and re.search(r"plugins:\s+2", r.stdout),
      r.stdout + r.stderr)
r = ctl("--json", "status")
j = json.loads(r.stdout) if r.returncode == 0 else {}
check("troupectl --json status gives the API's JSON",
      j.get("name") == "adm" and j.get("cluster") == "test" and j.get("kinds") == 2, r.stdout + r.stderr)
env = dict(os.environ, TROUPE_ADMIN=admin)
r = subprocess.run([CTL, "--token-file", token_file, "status"], capture_output=True, text=True,
                   timeout=30, env=env)
check("troupectl finds the node through $TROUPE_ADMIN", r.returncode == 0 and
      re.search(r"name:\s+adm", r.stdout), r.stdout + r.stderr)
usage = [ctl("send", "c1"), ctl("actors", "--limit", "many"), ctl(), ctl("restart"),
         ctl("request", "c1", "counter.Get", "{}", "--timeout", "abc")]
check("troupectl with a wrong command line: exit 64, one line that says what is wrong",
      all(u.returncode == 64 and u.stderr.count("\n") == 1 and u.stderr.startswith("troupectl: ")
          and "see troupectl --help" in u.stderr for u in usage)
      and "TYPE is required" in usage[0].stderr and "--limit" in usage[1].stderr
      and "no command 'restart'; the commands are status, members" in usage[3].stderr
      and "'abc' is not a number of milliseconds" in usage[4].stderr,
      "\n".join(f"{u.returncode} {u.stderr!r}" for u in usage))
# The node's address and --json may come after the command as well as before.
r = subprocess.run([CTL, "actors", "--json", "--admin", admin, "--token-file", token_file], capture_output=True,
                   text=True, timeout=30)
check("troupectl takes --admin, --token-file and --json after the command too",
      r.returncode == 0 and "actors" in json.loads(r.stdout or "{}"), r.stdout + r.stderr)
r = ctl("actors", "--limit", "0")
check("troupectl actors --limit 0 goes to the node, which refuses it, rather than being ignored",
      r.returncode != 0 and "limit" in r.stderr, f"{r.returncode} {r.stdout} {r.stderr}")
r = ctl("plugins")
check("troupectl plugins lists both plugins with version and ABI",
      r.returncode == 0 and re.search(r"^counter\s+1\.0\.0\s+1\.\d+\s+counter\s", r.stdout, re.M)
      and re.search(r"^echo\s+1\.0\.0", r.stdout, re.M), r.stdout + r.stderr)
r = ctl("kinds")
check("troupectl kinds lists kinds and message types",
      r.returncode == 0 and re.search(r"^counter\s+counter$", r.stdout, re.M)
      and re.search(r"^counter\.Add\s+counter$", r.stdout, re.M), r.stdout + r.stderr)
r = ctl("members")
check("troupectl members shows this node", r.returncode == 0 and re.search(r"^adm\s.*\byes$", r.stdout, re.M),
      r.stdout + r.stderr)
check("/healthz and /readyz answer without a token",
      http("GET", "/healthz", token=None) == (200, {"status": "ok"}) and
      http("GET", "/readyz", token=None) == (200, {"status": "ready"}))

# ---- spawn, send, request, stop
r = ctl("spawn", "counter", "--name", "c1")
check("troupectl spawn with a name prints the id", r.returncode == 0 and r.stdout.strip() == "c1",
      r.stdout + r.stderr)
r = ctl("spawn", "counter")
anon = r.stdout.strip()
check("troupectl spawn without a name prints a fresh id", r.returncode == 0 and anon.startswith("$"),
      r.stdout + r.stderr)
for by in (5, 10, 27):
    r = ctl("send", "c1", "counter.Add", json.dumps({"by": by}))
check("troupectl send delivers", r.returncode == 0 and "sent counter.Add to adm/c1" in r.stdout,
      r.stdout + r.stderr)
r = ctl("request", "c1", "counter.Get", "{}")
check("troupectl request prints the reply as JSON",
      r.returncode == 0 and r.stdout.strip() == 'counter.Value {"value":42}', r.stdout + r.stderr)
r = ctl("--json", "request", anon, "counter.Get", "{}")
check("the anonymous counter is its own", r.returncode == 0 and
      json.loads(r.stdout) == {"type": "counter.Value", "message": {"value": 0}}, r.stdout + r.stderr)
r = ctl("actors", "--kind", "counter")
rows = [l.split() for l in r.stdout.splitlines()[1:]]
check("troupectl actors lists both counters with kind and mailbox depth",
      r.returncode == 0 and sorted(row[0] for row in rows) == sorted(["c1", anon]) and
      all(row[1] == "counter" and row[2] == "0" for row in rows), r.stdout + r.stderr)
r = ctl("--json", "actors", "--limit", "1")
j = json.loads(r.stdout) if r.returncode == 0 else {}
check("a limit truncates the listing and says so",
      len(j.get("actors", [])) == 1 and j.get("total") == 2 and j.get("truncated") is True, r.stdout)

# ---- mistakes: each a clear error, nothing else disturbed
r = ctl("spawn", "counter", "--name", "c1")
check("a taken name: 409 name_taken, exit 1",
      r.returncode == 1 and r.stderr.strip() == "troupectl: 409 name_taken: an actor named 'c1' is alive",
      r.stdout + r.stderr)
r = ctl("spawn", "nothing")
check("an unknown kind: 404 unknown_kind", r.returncode == 1 and "404 unknown_kind" in r.stderr, r.stderr)
r = ctl("send", "nobody", "counter.Add", '{"by": 1}')
check("an unknown actor: 404 unknown_actor",
      r.returncode == 1 and "404 unknown_actor: no actor 'nobody' on this node" in r.stderr, r.stderr)
r = ctl("send", "c1", "counter.Ad", '{"by": 1}')
check("an unknown message type: 400 unknown_type",
      r.returncode == 1 and "400 unknown_type: unknown message type 'counter.Ad'" in r.stderr, r.stderr)
r = ctl("send", "c1", "counter.Add", '{"by": "lots"}')
check("a body that does not match the schema: 400 schema_mismatch, naming the field and what it must be",
      r.returncode == 1 and "400 schema_mismatch: the body does not match counter.Add: 'by' must be a whole "
      'number, not a string ("lots")' in r.stderr, r.stderr)
r = ctl("send", "c1", "counter.Add", '{"bye": 1}')
check("an unknown field is named, with the fields there are",
      r.returncode == 1 and "'bye' is not a field of counter.Add (its fields: by)" in r.stderr, r.stderr)
r = ctl("send", "c1", "counter.Add", "{by: 1")
check("troupectl refuses a message that is not JSON before sending",
      r.returncode == 1 and "must be a JSON object" in r.stderr, r.stderr)
r = ctl("request", anon, "counter.Reset", '{}', "--timeout", "300")  # one way: no answer
check("a request nobody answers: 504 timeout",
      r.returncode == 1 and f"504 timeout: no reply from '{anon}' within 300 ms" in r.stderr, r.stderr)
check("bad JSON over HTTP: 400 bad_json",
      is_error(http("POST", "/v1/actors/c1/send", raw=b'{"type": '), 400, "bad_json", "line 1"))
deep = b'{"type": "counter.Add", "message": ' + b"[" * 2000 + b"]" * 2000 + b"}"
check("a body nested 2,000 deep (4 KB) is refused before parsing: 400, and the node lives",
      is_error(http("POST", "/v1/actors/c1/send", raw=deep), 400, "bad_json", "deeper than 32")
      and http("GET", "/healthz")[0] == 200)
nested_in_string = b'{"type": "counter.Add", "message": {"by": 1}, "note": "' + b"[" * 100 + b'"}'
check("brackets inside a string are no nesting",
      not is_error(http("POST", "/v1/actors/c1/send", raw=nested_in_string), 400, "bad_json"))
check("a number out of range (1e999): 400, not 500",
      is_error(http("POST", "/v1/actors/c1/send", raw=b'{"type": "counter.Add", "message": {"by": 1e999}}'),
               400, "bad_json"))
check("invalid UTF-8 in a body: 400, not 500",
      is_error(http("POST", "/v1/actors", raw=b'{"kind": "\xff\xfe"}'), 400, "bad_json"))
check("a JSON array where an object belongs: 400",
      is_error(http("POST", "/v1/actors", raw=b"[1, 2]"), 400, "bad_request", "JSON object"))
check("an unknown field in the request: 400",
      is_error(http("POST", "/v1/actors", {"kind": "counter", "colour": "red"}), 400, "bad_request",
               "unknown field 'colour'"))
check("a wrong method: 405", is_error(http("PUT", "/v1/plugins", {}), 405, "method_not_allowed"))
check("an unknown endpoint: 404", is_error(http("GET", "/v1/nothing"), 404, "not_found"))
check("grains and topics on a node in no cluster: 503 that says what is missing",
      all(is_error(http(m, p, b), 503, "no_cluster", "node.listen is not set")
          for m, p, b in (("GET", "/v1/grains", None), ("POST", "/v1/topics/news/counter.Add", {"by": 1}))))
check("a body over 1 MiB: 413",
      is_error(http("POST", "/v1/actors/c1/send", raw=b" " * (2 << 20)), 413, "too_large"))
check("no token: 401", is_error(http("GET", "/v1/node", token=None), 401, "unauthorized"))
check("a wrong token: 401", is_error(http("GET", "/v1/node", token="s3cret-tokem"), 401, "unauthorized"))
r = ctl("status", token=False)
check("troupectl without the token: exit 1 with the reason",
      r.returncode == 1 and "401 unauthorized" in r.stderr, r.stderr)
r = ctl("request", "c1", "counter.Get", "{}")
check("after all that the counter still holds 42",
      r.returncode == 0 and r.stdout.strip() == 'counter.Value {"value":42}', r.stdout + r.stderr)

# ---- stop
r = ctl("stop", "c1")
check("troupectl stop waits for the stop", r.returncode == 0 and r.stdout.strip() == "c1 stopped",
      r.stdout + r.stderr)
r = ctl("--json", "actors", "--kind", "counter")
check("the stopped actor is gone from the listing",
      r.returncode == 0 and [a["id"] for a in json.loads(r.stdout)["actors"]] == [anon], r.stdout)
r = ctl("request", "c1", "counter.Get", "{}")
check("a stopped actor is unknown", r.returncode == 1 and "404 unknown_actor" in r.stderr, r.stderr)

# ---- metrics of the admin API and of the counter's handler times
text = urllib.request.urlopen(metrics, timeout=10).read().decode()


def sample(name, **labels):
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and \
                all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


check("errors are counted by status class", (sample("troupe_admin_requests_total", status="4xx") or 0) >= 15,
      text)
check("the counter's handler times are a histogram",
      (sample("troupe_message_processing_seconds_count", kind="counter") or 0) >= 8 and
      sample("troupe_message_processing_seconds_bucket", kind="counter", le="+Inf") is not None, text)

# ---- a new token on reload
new_token = os.path.join(tmp, "new.token")
with open(new_token, "w") as f:
    f.write("another-token\n")
write_config(new_token)
p.send_signal(signal.SIGHUP)
reloaded = err.has("the admin API takes the new token", 10)
check("a reload swaps the token",
      reloaded and is_error(http("GET", "/v1/node"), 401, "unauthorized") and
      http("GET", "/v1/node", token="another-token")[0] == 200, err.text())

# ---- stopping
p.send_signal(signal.SIGTERM)
rc = wait_or_kill(p, 30)
check("the node stops with status 0", rc == 0, err.text())
r = ctl("status")
check("troupectl against a stopped node: exit 2, one line",
      r.returncode == 2 and r.stderr.startswith("troupectl: cannot reach the node at ") and
      r.stderr.count("\n") == 1, r.stderr)
shutil.rmtree(tmp)
finish()
