"""The files an ``--exec`` task's process reads and writes (docs/agent.md, "Results").

Contract: each run gets a fresh private directory holding ``inputs.json``
(``{parent id: result}``, named by ``WORKHIVE_INPUTS``); the program may
write its JSON result to the file named by ``WORKHIVE_RESULT``. After a
successful exit the result is read back (not JSON, or over 64 KiB: a final
failure naming the problem); the directory is removed whatever happened.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from ._results import MAX_RESULT_BYTES, Result
from ._types import Task, TaskFailure


class RunFiles:
    """The per-run directory of one task (a context manager)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.dir = Path(tempfile.mkdtemp(prefix="workhive-task-"))
        self.inputs = self.dir / "inputs.json"
        self.result_path = self.dir / "result.json"
        self.new_tasks_path = self.dir / "new_tasks.json"
        self.inputs.write_text(json.dumps(dict(task.inputs)))

    @property
    def env(self) -> dict[str, str]:
        return {
            "WORKHIVE_INPUTS": str(self.inputs),
            "WORKHIVE_RESULT": str(self.result_path),
            "WORKHIVE_NEW_TASKS": str(self.new_tasks_path),
        }

    def result(self, output: str) -> str | Result:
        """``output``, with the result and child tasks the program wrote."""
        children = self._new_tasks(output)
        if not self.result_path.exists():
            return Result(output=output, new_tasks=children) if children else output
        data = self.result_path.read_bytes()
        if len(data) > MAX_RESULT_BYTES:
            raise TaskFailure(
                f"$WORKHIVE_RESULT is {len(data)} bytes, limit {MAX_RESULT_BYTES}", output=output
            )
        value = None
        if data.strip():
            try:
                value = json.loads(data)
            except ValueError as exc:
                raise TaskFailure(f"$WORKHIVE_RESULT is not JSON: {exc}", output=output) from None
        return Result(output=output, value=value, new_tasks=children)

    def _new_tasks(self, output: str) -> list[Any]:
        """The child tasks written to ``$WORKHIVE_NEW_TASKS`` (a JSON list of
        task objects, or ``{"tasks": [...]}``); none when absent."""
        if not self.new_tasks_path.exists():
            return []
        try:
            data = json.loads(self.new_tasks_path.read_bytes() or b"[]")
        except ValueError as exc:
            raise TaskFailure(f"$WORKHIVE_NEW_TASKS is not JSON: {exc}", output=output) from None
        tasks = data.get("tasks") if isinstance(data, dict) else data
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise TaskFailure("$WORKHIVE_NEW_TASKS must be a list of task objects", output=output)
        return tasks

    def __enter__(self) -> RunFiles:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
