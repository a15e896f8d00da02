"""Many SDK agents as threads in one process (a benchmark helper).

``python -m bench._agent_host --coordinators A,B --count 8 --mode noop``

Modes: ``noop`` returns at once; ``sleepN`` sleeps N ms per task;
``hang`` sleeps until killed (for the dead-agent benchmark). Each handler
start is printed to stdout as ``START <wall time> <project> <task> <agent> <term>``,
each return as ``END <wall time> <project> <task>``.
Runs until SIGTERM/SIGINT (stops every agent) or SIGKILL. Agents log
warnings only, like the coordinators the benchmarks start (and dask's workers).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from types import FrameType

from bench._common import quiet_logs
from workhive.agent import Agent, Task


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--coordinators", required=True)
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--slots", type=int, default=1)
    p.add_argument("--prefetch", type=int, default=1)
    p.add_argument("--prefix", default="h-")
    p.add_argument("--mode", default="noop")
    args = p.parse_args()
    quiet_logs()
    out_lock = threading.Lock()
    delay = 0.0
    if args.mode.startswith("sleep"):
        delay = float(args.mode[5:] or "10") / 1000

    def handler_for(aid: str):  # type: ignore[no-untyped-def]
        def handle(task: Task) -> None:
            with out_lock:
                sys.stdout.write(
                    f"START {time.time():.6f} {task.project_id} {task.task_id} {aid} {task.term}\n"
                )
                sys.stdout.flush()
            if args.mode == "hang":
                time.sleep(3600)
            elif delay:
                time.sleep(delay)
            with out_lock:
                sys.stdout.write(f"END {time.time():.6f} {task.project_id} {task.task_id}\n")
                sys.stdout.flush()

        return handle

    agents = [
        Agent(
            args.coordinators,
            agent_id=f"{args.prefix}{i:04d}",
            slots=args.slots,
            prefetch=args.prefetch,
        )
        for i in range(args.count)
    ]
    threads = [
        threading.Thread(target=a.run, args=(handler_for(a.agent_id),), daemon=True) for a in agents
    ]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        for a in agents:
            a.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(timeout=0.5)


if __name__ == "__main__":
    main()
