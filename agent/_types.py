"""Plain value types of the agent SDK (no protobuf here: see ``_convert``)."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

OUTPUT_TAIL_BYTES = 4096
"""How much of a task's output (the end of it) travels with its result."""


@dataclass(frozen=True, slots=True)
class TaskKey:
    """Identity of one claim: the task plus the fence of the claim that holds it."""

    project_id: str
    task_id: str
    fence: int
    attempt: int = 0

    @property
    def id(self) -> tuple[str, str]:
        """(project_id, task_id): the task, whatever claim holds it."""
        return (self.project_id, self.task_id)


PROGRESS_INTERVAL = 0.5
"""Seconds between two progress reports of one task on the wire."""
PROGRESS_NOTE_CHARS = 256
"""Longest progress note kept."""


@dataclass(frozen=True, slots=True)
class Task:
    """A task handed to a handler.

    Attributes:
        project_id: The project the task belongs to.
        task_id: The task's id inside its project.
        attempt: 1 for the first run, +1 for every retry.
        payload: The task's payload, decoded from JSON (``None`` when empty).
        priority: 0-10.
        kind: Task type (durations are learned per kind); may be empty.
        fence: The fencing token of the claim (create revision of the claim key).
        branch: Affinity group; may be empty.
        estimate_seconds: Expected duration (0 when unknown).
        term: The leader term that made the claim.
        payload_json: The payload exactly as it arrived (JSON text).
        inputs: The results of the task's parents, ``{parent id: result}``
            (parents that completed without a result are absent).

    A running handler may call ``task.progress(fraction, note)``.
    """

    project_id: str
    task_id: str
    attempt: int
    payload: Any
    priority: int
    kind: str
    fence: int
    branch: str = ""
    estimate_seconds: float = 0.0
    term: int = 0
    payload_json: str = field(default="", repr=False)
    inputs: Mapping[str, Any] = field(default_factory=dict, repr=False)
    reporter: Callable[[float, str], None] | None = field(default=None, repr=False, compare=False)

    def progress(self, fraction: float, note: str = "") -> None:
        """Report how far the task got: ``fraction`` in 0..1 and a short note
        (at most 256 characters are kept), shown by ``workhive status`` and
        ``workhive task`` while it runs. Advisory: reports closer together
        than ``PROGRESS_INTERVAL`` are coalesced (the latest one is sent when
        the interval has passed, or with the next report), and a leader
        change forgets them. Outside a running handler it does nothing."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be within 0..1, got {fraction!r}")
        if self.reporter is not None:
            self.reporter(fraction, note)

    @property
    def key(self) -> TaskKey:
        """The claim this task runs under."""
        return TaskKey(self.project_id, self.task_id, self.fence, self.attempt)

    @staticmethod
    def decode_payload(text: str) -> Any:
        """Decode a JSON payload; empty text is ``None``, invalid JSON stays text."""
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text


class TaskFailure(Exception):
    """Raise from a handler to fail a task with a reason.

    By default the failure is final (``retryable=False``): the coordinator does
    not use the task's remaining attempts. Any other exception a handler raises
    is a retryable failure.
    """

    def __init__(
        self,
        reason: str,
        retryable: bool = False,
        *,
        exit_code: int = 0,
        output: str = "",
        released: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable or released
        self.released = released  # handed back: ready again at once, no attempt spent
        self.exit_code = exit_code
        self.output = output


class CoordinatorUnavailable(RuntimeError):
    """No coordinator could be reached for longer than ``unreachable_timeout``."""


class CredentialsRefused(RuntimeError):
    """Every coordinator tried refused the agent's credentials (UNAUTHENTICATED
    or PERMISSION_DENIED): a wrong or missing token, or a token of another
    agent. Retrying cannot help, so :meth:`Agent.run` raises this and stops."""


class ConnectionState(enum.Enum):
    """The agent's view of its session (kazoo-style, CONVENTIONS lesson 6).

    CONNECTING: never welcomed yet. CONNECTED: a session is open and welcomed.
    SUSPENDED: the session broke; the lease (and its claims) may still be alive,
    so held work continues and is reported on reconnect. LOST: a reconnect was
    welcomed without resuming the lease, so queued claims are gone. CLOSED: the
    agent has stopped.
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    LOST = "lost"
    CLOSED = "closed"


Handler: TypeAlias = Callable[[Task], Any]
"""``handler(task)``: return ``None``, output text, a ``Result`` or a JSON value
= success (docs/agent.md, "Results"); raise = failure."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running a task produced (internal, but plain)."""

    key: TaskKey
    succeeded: bool
    duration_seconds: float
    output_tail: str = ""
    reason: str = ""
    exit_code: int = 0
    retryable: bool = True
    result_json: str = ""
    released: bool = False
    new_tasks_json: str = ""


def tail(text: str, limit: int = OUTPUT_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of ``text`` (UTF-8), cut on a character boundary."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[-limit:].decode("utf-8", "ignore")
