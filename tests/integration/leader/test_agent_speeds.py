"""The leader learns each agent's speed from the durations its completions
report (docs/scheduling.md, "Agent speeds") and says so in ``status``: an
agent whose tasks take twice as long shows a larger ``speed_factor``."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from tests.security.conftest import RawAgent, base_settings, coordinator
from workhive.client import Client, Project, Task, TaskState
from workhive.v1 import agent_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _serve(agent: RawAgent, seconds: float, done: list[str], stop: threading.Event) -> None:
    """Start what is assigned and report each task as having taken ``seconds``."""
    while not stop.is_set():
        try:
            msg = agent.next(timeout=0.2)
        except TimeoutError:
            continue
        except (EOFError, grpc.RpcError):
            return
        ref = agent.runnable(msg)
        if ref is not None:
            agent.send(completed=agent_pb2.TaskCompleted(task=ref, duration_seconds=seconds))
            done.append(ref.task_id)


def test_status_shows_an_agent_that_takes_twice_as_long_as_slower(etcd_url: str) -> None:
    tasks = tuple(Task(f"t{i}", estimate=1.0) for i in range(24))
    stop = threading.Event()
    with coordinator(base_settings(etcd_url, plan_time_box=0)) as node:
        client = Client([node.address])
        channel = grpc.insecure_channel(node.address)
        done: list[str] = []
        threads = []
        for name, seconds in (("slow", 2.0), ("fast", 1.0)):
            agent = RawAgent(channel)
            agent.hello(name)
            agent.next("welcome")
            t = threading.Thread(target=_serve, args=(agent, seconds, done, stop), daemon=True)
            t.start()
            threads.append((agent, t))
        try:
            client.submit(Project("speeds", tasks))
            deadline = time.monotonic() + 20
            while client.status("speeds").projects[0].count(TaskState.SUCCEEDED) < len(tasks):
                assert time.monotonic() < deadline, f"only {len(done)} tasks done"
                time.sleep(0.1)
            factor = {a.agent_id: a.speed_factor for a in client.status().agents}
            assert factor["slow"] > 1.2 * factor["fast"] > 0
        finally:
            stop.set()
            for agent, t in threads:
                agent.close()
                t.join(timeout=5)
            client.close()
            channel.close()
