"""Pull mode: ask for the next task when ready (docs/agent.md, "Pull mode").

Contract: a :class:`PullAgent` is an agent (own lease, heartbeats, the same
fenced claims as pushed work) that is given a task only when it asks.
``claim_next(wait)`` sends one claim request and returns the task the
leader chose for it under the active policy, or ``None`` when ``wait``
passed first; an unanswered request is sent again after a reconnect. A
claimed task is held until ``complete``, ``fail`` or ``release`` (handed
back: ready again at once, no attempt spent); each blocks until the
coordinator committed it (True) or refused it (False: the claim was gone).
At most ``max_held`` tasks are held at once. Closing (or the process
ending) ends the session; the lease then expires and etcd frees the claims.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _convert as cv
from ._agent import Agent
from ._results import Result, encode_new_tasks, encode_value
from ._types import Task, TaskFailure, TaskKey

ANSWER_TIMEOUT = 30.0
"""Seconds ``complete``/``fail``/``release`` wait for the coordinator's answer."""
GRACE = 5.0
"""Seconds ``claim_next`` waits past ``wait`` for the coordinator's answer."""


@dataclass
class _Verdict:
    kind: str  # "ok", "fail", "release"
    result: Result | None = None
    reason: str = ""
    retryable: bool = False


class _PullCore(Agent):
    """The agent underneath: asks on the session, hands tasks to the caller."""

    pull = True

    def __init__(self, owner: PullAgent, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.owner = owner
        self.asking: tuple[int, float] | None = None  # (seq, monotonic deadline)

    def ask(self, seq: int, wait: float) -> None:
        with self._lock:
            self.asking = (seq, time.monotonic() + wait)
            if self._session is not None:
                self._session.send(cv.claim_request(seq, wait))

    def _welcomed(self) -> None:
        if self.asking is not None and self._session is not None:
            seq, until = self.asking
            left = until - time.monotonic()
            if left > 0:
                self._session.send(cv.claim_request(seq, left))

    def _claim_empty(self, seq: int) -> None:
        self.owner._empty(seq)

    def _answered(self, key: TaskKey, committed: bool, message: str = "") -> None:
        self.owner._answer(key, committed, message)


class PullAgent:
    """An agent that asks for work (see module docstring). Use as a context
    manager, or call :meth:`start` and :meth:`close`."""

    def __init__(
        self,
        coordinators: Sequence[str] | str,
        *,
        agent_id: str | None = None,
        capabilities: Iterable[str] = (),
        max_held: int = 8,
        token: str | None = None,
        **agent_kw: Any,
    ) -> None:
        self._core = _PullCore(
            self,
            coordinators,
            agent_id=agent_id,
            capabilities=capabilities,
            slots=max_held,
            prefetch=0,
            token=token,
            **agent_kw,
        )
        self._cond = threading.Condition()
        self._handed: deque[Task] = deque()
        self._held: dict[tuple[str, str], Task] = {}
        self._verdicts: dict[tuple[str, str], _Verdict] = {}
        self._answers: dict[tuple[str, str], bool] = {}
        self._empties: set[int] = set()
        self.last_refusal = ""
        self._seq = itertools.count(1)
        self._thread = threading.Thread(
            target=self._core.run, args=(self._handle,), name="workhive-pull", daemon=True
        )

    @property
    def agent_id(self) -> str:
        return self._core.agent_id

    @property
    def agent(self) -> Agent:
        """The underlying agent (state, lease, counters)."""
        return self._core

    def start(self) -> PullAgent:
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Release what is held, then end the session (drain)."""
        for task in list(self._held.values()):
            self.release(task, "agent closing", timeout=2.0)
        self._core.drain()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._core.stop()
            self._thread.join(2.0)

    def __enter__(self) -> PullAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def held(self) -> list[Task]:
        with self._cond:
            return list(self._held.values())

    # -- the caller's side -------------------------------------------------------

    def claim_next(self, wait: float = 30.0) -> Task | None:
        """The next task for this agent, or ``None`` after ``wait`` seconds."""
        with self._cond:
            if self._handed:
                return self._take()
        seq = next(self._seq)
        self._core.ask(seq, wait)
        deadline = time.monotonic() + wait + GRACE
        with self._cond:
            while not self._handed and seq not in self._empties:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            self._empties.discard(seq)
            self._core.asking = None
            return self._take() if self._handed else None

    def complete(
        self,
        task: Task,
        value: Any = None,
        *,
        output: str = "",
        new_tasks: Sequence[Any] = (),
        timeout: float = ANSWER_TIMEOUT,
    ) -> bool:
        """Succeed with a JSON ``value`` and child tasks added in the same
        transaction (``ValueError`` if the value is not JSON or over 64 KiB:
        nothing is sent, the task stays held). False: refused, and
        :attr:`last_refusal` says why (the task is then no longer held)."""
        encode_value(value)
        encode_new_tasks(new_tasks)
        result = Result(output=output, value=value, new_tasks=tuple(new_tasks))
        return self._decide(task, _Verdict("ok", result), timeout)

    def fail(
        self, task: Task, reason: str, *, retryable: bool = False, timeout: float = ANSWER_TIMEOUT
    ) -> bool:
        return self._decide(task, _Verdict("fail", reason=reason, retryable=retryable), timeout)

    def release(
        self, task: Task, reason: str = "released", *, timeout: float = ANSWER_TIMEOUT
    ) -> bool:
        """Hand the task back: ready again at once, no attempt spent."""
        return self._decide(task, _Verdict("release", reason=reason), timeout)

    def _decide(self, task: Task, verdict: _Verdict, timeout: float) -> bool:
        tid = (task.project_id, task.task_id)
        with self._cond:
            if tid not in self._held:
                raise KeyError(f"task {task.project_id}/{task.task_id} is not held by this agent")
            self._answers.pop(tid, None)
            self._verdicts[tid] = verdict
            self._cond.notify_all()
            deadline = time.monotonic() + timeout
            while tid not in self._answers and time.monotonic() < deadline:
                self._cond.wait(0.2)
            return self._answers.pop(tid, False)

    def _take(self) -> Task:
        task = self._handed.popleft()
        self._held[(task.project_id, task.task_id)] = task
        return task

    # -- the agent's side (worker threads, connection thread) ---------------------

    def _handle(self, task: Task) -> Result:
        tid = (task.project_id, task.task_id)
        with self._cond:
            self._handed.append(task)
            self._cond.notify_all()
            while tid not in self._verdicts:
                self._cond.wait(0.5)
            verdict = self._verdicts.pop(tid)
            self._held.pop(tid, None)
        if verdict.kind == "ok":
            assert verdict.result is not None
            return verdict.result
        raise TaskFailure(
            verdict.reason,
            retryable=verdict.retryable,
            released=verdict.kind == "release",
        )

    def _empty(self, seq: int) -> None:
        with self._cond:
            self._empties.add(seq)
            self._cond.notify_all()

    def _answer(self, key: TaskKey, committed: bool, message: str = "") -> None:
        with self._cond:
            self._answers[key.id] = committed
            if not committed:
                self.last_refusal = message or "claim gone (stale fence)"
            self._cond.notify_all()


class PullingAgent(Agent):
    """``Agent`` in pull mode for a handler (``workhive agent --pull``): it
    asks for a task whenever a slot is free (one request at a time, asked
    again when answered empty), so it only ever runs what it asked for."""

    pull = True
    ASK_WAIT = 10.0

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw["prefetch"] = 0
        super().__init__(*args, **kw)
        self._asked: int | None = None
        self._ask_seq = itertools.count(1)

    def _pump(self) -> None:
        super()._pump()
        self._ask_more()

    def _ask_more(self) -> None:
        if self._session is None or self._draining or self._finished or self._asked is not None:
            return
        if len(self._held) >= self.slots:
            return
        self._asked = next(self._ask_seq)
        self._session.send(cv.claim_request(self._asked, self.ASK_WAIT))

    def _on_assign(self, a: Any) -> None:
        self._asked = None  # the answer (or a resync): ask again once it is taken
        super()._on_assign(a)

    def _welcomed(self) -> None:
        self._asked = None
        self._ask_more()

    def _claim_empty(self, seq: int) -> None:
        if seq == self._asked:
            self._asked = None
            self._ask_more()
