#!/usr/bin/env python3
"""Runs the infrai vendor page's own Python example (seed_example.py, verbatim but for BASE)
against qgate and checks what it printed. Standard library only.

Environment: QGATE_BASE (http://host:port), QGATE_BEARER (an infrai key)."""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
results = []


def check(name, cond, detail=""):
    results.append(cond)
    print(("PASS " if cond else "FAIL ") + name + ("" if cond else ": " + detail), flush=True)


def blocks(text):
    """Splits the example's output into {label: json} by its '== label ==' headers."""
    out, label, buf = {}, None, []
    for line in text.splitlines():
        if line.startswith("== ") and line.endswith(" =="):
            if label:
                out[label] = json.loads("\n".join(buf))
            label, buf = line[3:-3], []
        elif label:
            buf.append(line)
    if label:
        out[label] = json.loads("\n".join(buf))
    return out


env = dict(os.environ, INFRAI_API_KEY=os.environ["QGATE_BEARER"])
p = subprocess.run([sys.executable, os.path.join(HERE, "seed_example.py")], env=env, capture_output=True, text=True, timeout=120)
check("seed example exits 0", p.returncode == 0, p.stderr[-2000:])
got = blocks(p.stdout) if p.returncode == 0 else {}
create = got.get("queue.create", {})
check("queue.create made 'jobs'", create.get("queue") == "jobs" and create.get("type") == "standard", json.dumps(create))
publish = got.get("queue.publish", {})
check("queue.publish returned a message_id", isinstance(publish.get("message_id"), str), json.dumps(publish))
consume = got.get("queue.consume", {})
msgs = consume.get("messages", [])
check(
    "queue.consume returned the published message",
    len(msgs) == 1 and msgs[0].get("payload") == {"hello": "world"} and msgs[0].get("message_id") == publish.get("message_id"),
    json.dumps(consume),
)
sys.exit(0 if all(results) else 1)
