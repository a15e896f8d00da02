"""The workhive agent SDK: connect to coordinators, heartbeat, run tasks.

Quick start::

    from workhive.agent import Agent, Task, TaskFailure

    def handle(task: Task) -> str | None:
        if task.payload is None:
            raise TaskFailure("no payload")        # final failure, no retry
        return f"done {task.task_id}"               # success, with output

    Agent(["127.0.0.1:50051"], capabilities=["python"], slots=2).run(handle)

``ExecHandler("cmd args")`` runs a program per task instead (what
``workhive agent --exec`` uses). See ``docs/agent.md`` for the protocol.
"""

from ._agent import Agent
from ._backoff import Backoff
from ._exec import ExecHandler
from ._pull import PullAgent
from ._results import MAX_RESULT_BYTES, Result
from ._session import CHANNEL_OPTIONS, KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS
from ._types import (
    OUTPUT_TAIL_BYTES,
    ConnectionState,
    CoordinatorUnavailable,
    CredentialsRefused,
    Handler,
    Task,
    TaskFailure,
    TaskKey,
)

__all__ = [
    "CHANNEL_OPTIONS",
    "KEEPALIVE_TIMEOUT_MS",
    "KEEPALIVE_TIME_MS",
    "MAX_RESULT_BYTES",
    "OUTPUT_TAIL_BYTES",
    "Agent",
    "Backoff",
    "ConnectionState",
    "CoordinatorUnavailable",
    "CredentialsRefused",
    "ExecHandler",
    "Handler",
    "PullAgent",
    "Result",
    "Task",
    "TaskFailure",
    "TaskKey",
]
