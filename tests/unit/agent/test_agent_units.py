"""Pieces of the agent SDK that need no server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import workhive.agent
from workhive.agent import Agent, Backoff, Task, TaskKey
from workhive.agent._execlog import ExecLog
from workhive.agent._types import tail


def test_exported_members() -> None:
    exported = {n for n in dir(workhive.agent) if not n.startswith("_")}
    assert set(workhive.agent.__all__) <= exported
    assert sorted(workhive.agent.__all__) == sorted(
        [
            "CHANNEL_OPTIONS",
            "KEEPALIVE_TIMEOUT_MS",
            "KEEPALIVE_TIME_MS",
            "MAX_RESULT_BYTES",
            "OUTPUT_TAIL_BYTES",
            "PullAgent",
            "Agent",
            "Backoff",
            "ConnectionState",
            "CoordinatorUnavailable",
            "CredentialsRefused",
            "ExecHandler",
            "Result",
            "Handler",
            "Task",
            "TaskFailure",
            "TaskKey",
        ]
    )


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    b = Backoff(base=0.1, cap=1.0, floor=0.0, rand=lambda: 1.0)
    assert [round(b.next_delay(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next_delay() == pytest.approx(0.1)
    half = Backoff(base=0.1, cap=1.0, floor=0.0, rand=lambda: 0.5)
    assert half.next_delay() == pytest.approx(0.05)
    floored = Backoff(base=0.1, cap=1.0, floor=0.02, rand=lambda: 0.0)
    assert floored.next_delay() == 0.02
    with pytest.raises(ValueError):
        Backoff(base=1.0, cap=0.5)


def test_payload_decoding() -> None:
    assert Task.decode_payload("") is None
    assert Task.decode_payload('{"a": [1]}') == {"a": [1]}
    assert Task.decode_payload("not json") == "not json"


def test_tail_cuts_on_character_boundary() -> None:
    assert tail("abc", 10) == "abc"
    assert tail("x" * 10 + "é" * 3, 5) == "éé"
    assert tail("abcdef", 3) == "def"


def test_exec_log_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = ExecLog(path, "a1", clock=lambda: 12.5)
    log.record("start", TaskKey("p", "t", 7, 1))
    log.record("dropped", TaskKey("p", "u", 8, 2), reason="stolen")
    log.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    pid = os.getpid()  # which process of the agent id ran it (the audit tells them apart)
    assert lines == [
        {"t": 12.5, "agent": "a1", "pid": pid, "event": "start", "project": "p", "task": "t",
         "fence": 7, "attempt": 1},
        {"t": 12.5, "agent": "a1", "pid": pid, "event": "dropped", "project": "p", "task": "u",
         "fence": 8, "attempt": 2, "reason": "stolen"},
    ]  # fmt: skip


def test_exec_log_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.jsonl"
    monkeypatch.setenv("WORKHIVE_EXEC_LOG", str(path))
    agent = Agent("127.0.0.1:1", agent_id="x")
    assert agent._exec_log.enabled
    agent._exec_log.close()


def test_constructor_validation() -> None:
    a = Agent("h1:1, h2:2", agent_id="x")
    assert a.coordinators == ("h1:1", "h2:2")
    assert Agent(["h1:1,h2:2", "h3:3"]).coordinators == ("h1:1", "h2:2", "h3:3")
    assert Agent("h:1").agent_id
    for bad in ({"slots": 0}, {"prefetch": -1}):
        with pytest.raises(ValueError):
            Agent("h:1", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Agent(" , ")


def test_run_only_once() -> None:
    a = Agent("127.0.0.1:1", unreachable_timeout=0.1, backoff=Backoff(base=0.01, cap=0.02))
    with pytest.raises(workhive.agent.CoordinatorUnavailable):
        a.run(lambda t: None)
    with pytest.raises(RuntimeError):
        a.run(lambda t: None)


def test_internal_thread_crash_surfaces_from_run(monkeypatch: pytest.MonkeyPatch) -> None:
    a = Agent("127.0.0.1:1", backoff=Backoff(base=0.01, cap=0.02))

    def boom() -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(a, "_heartbeat_loop", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        a.run(lambda t: None)


def test_progress_outside_0_and_1_is_refused_with_the_range() -> None:
    import pytest

    from workhive.agent import Task

    t = Task(project_id="p", task_id="t", attempt=1, payload=None, priority=5, kind="", fence=1)
    t.progress(0.5)  # no reporter outside a running handler: nothing happens
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        t.progress(1.5)
