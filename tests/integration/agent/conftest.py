"""Fixtures: a scripted coordinator on 127.0.0.1 and an agent running in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.harness.scripted_coordinator import ScriptedCoordinator
from workhive.agent import Agent, Backoff, Handler


@pytest.fixture
def coord() -> Iterator[ScriptedCoordinator]:
    with ScriptedCoordinator() as c:
        yield c


@pytest.fixture
def coord2() -> Iterator[ScriptedCoordinator]:
    with ScriptedCoordinator(coordinator_id="scripted-2", first_lease=9000) as c:
        yield c


@dataclass
class Running:
    agent: Agent
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    def join(self, timeout: float = 10.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "agent.run() did not return"


@pytest.fixture
def start_agent() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(coordinators: list[str] | str, handler: Handler, **kwargs: Any) -> Running:
        kwargs.setdefault("backoff", Backoff(base=0.05, cap=0.2))
        kwargs.setdefault("agent_id", "agent-test")
        agent = Agent(coordinators, **kwargs)
        errors: list[BaseException] = []

        def target() -> None:
            try:
                agent.run(handler)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=target, name="agent-run", daemon=True)
        r = Running(agent, t, errors)
        started.append(r)
        t.start()
        return r

    yield start
    for r in started:
        r.agent.stop()
        r.thread.join(10)
