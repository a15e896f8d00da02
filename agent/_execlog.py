"""Optional execution log for the invariant checker: one JSON line per event.

Enabled by ``Agent(exec_log=PATH)`` or env ``WORKHIVE_EXEC_LOG=PATH``. Each
line: ``{"t": unix_time, "agent": id, "pid": agent process id, "event":
"start"|"finish"|"rejected"|"dropped", "project", "task", "fence",
"attempt"}`` plus, where it applies,
``"outcome"`` (``succeeded``/``failed``) or ``"reason"``. Lines are appended
with ``O_APPEND`` and flushed one by one, so several agents may share a file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from ._types import TaskKey

ENV_VAR = "WORKHIVE_EXEC_LOG"


class ExecLog:
    """Append-only JSON-lines writer (thread-safe). A ``None`` path disables it."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        agent_id: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agent_id = agent_id
        self._pid = os.getpid()
        self._clock = clock
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        if path:
            self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def record(self, event: str, key: TaskKey, **extra: Any) -> None:
        if self._file is None:
            return
        line: dict[str, Any] = {
            "t": self._clock(),
            "agent": self.agent_id,
            "pid": self._pid,
            "event": event,
            "project": key.project_id,
            "task": key.task_id,
            "fence": key.fence,
            "attempt": key.attempt,
        }
        line.update(extra)
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is not None:
                self._file.write(text)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
