"""An ``--exec`` task for the living-graph tests: its result is
``{"task": id, "sum": 1 + the parents' sums, "parents": sorted parent ids}``;
payload ``{"big": n}`` writes an n-byte result instead; ``{"sleep": s}`` waits;
``{"spawn": [task, ...]}`` adds those tasks with the completion."""

import json
import os
import sys
import time

payload = json.loads(os.environ.get("WORKHIVE_PAYLOAD") or "null") or {}
time.sleep(payload.get("sleep", 0.05))
with open(os.environ["WORKHIVE_INPUTS"]) as f:
    inputs = json.load(f)
if "big" in payload:
    result: object = "x" * payload["big"]
else:
    result = {
        "task": os.environ["WORKHIVE_TASK_ID"],
        "sum": 1 + sum(v["sum"] for v in inputs.values()),
        "parents": sorted(inputs),
    }
with open(os.environ["WORKHIVE_RESULT"], "w") as f:
    json.dump(result, f)
if "spawn" in payload:
    with open(os.environ["WORKHIVE_NEW_TASKS"], "w") as f:
        json.dump(payload["spawn"], f)
print("done", os.environ["WORKHIVE_TASK_ID"], file=sys.stderr)
