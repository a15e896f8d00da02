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

from ._results import MAX_RESULT_BYTES, Result
from ._types import Task, TaskFailure


class RunFiles:
    """The per-run directory of one task (a context manager)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.dir = Path(tempfile.mkdtemp(prefix="workhive-task-"))
        self.inputs = self.dir / "inputs.json"
        self.result_path = self.dir / "result.json"
        self.inputs.write_text(json.dumps(dict(task.inputs)))

    @property
    def env(self) -> dict[str, str]:
        return {"WORKHIVE_INPUTS": str(self.inputs), "WORKHIVE_RESULT": str(self.result_path)}

    def result(self, output: str) -> str | Result:
        """``output``, with the result the program wrote (if it wrote one)."""
        if not self.result_path.exists():
            return output
        data = self.result_path.read_bytes()
        if len(data) > MAX_RESULT_BYTES:
            raise TaskFailure(
                f"$WORKHIVE_RESULT is {len(data)} bytes, limit {MAX_RESULT_BYTES}", output=output
            )
        if not data.strip():
            return output
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise TaskFailure(f"$WORKHIVE_RESULT is not JSON: {exc}", output=output) from None
        return Result(output=output, value=value)

    def __enter__(self) -> RunFiles:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
