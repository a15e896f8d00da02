"""Progress reports of running tasks (``Task.progress``), rate-limited.

Contract: a task's report goes on the session at once unless that task sent
one less than ``PROGRESS_INTERVAL`` ago; then it is held (a newer report
replaces it) and the heartbeat thread sends it once the interval has passed.
Reports of a task that is no longer held, or while no session is open, are
dropped: progress is advisory.
"""

from __future__ import annotations

from . import _convert as cv
from ._base import AgentBase
from ._types import PROGRESS_INTERVAL, PROGRESS_NOTE_CHARS, TaskKey


class ProgressReports(AgentBase):
    """The agent's progress reporting (see the module docstring)."""

    def _report_progress(self, key: TaskKey, fraction: float, note: str) -> None:
        """``Task.progress`` of a running task: sent at once, unless this task
        sent one less than ``PROGRESS_INTERVAL`` ago; then held, and sent by
        the heartbeat thread (``_flush_progress``) or replaced by the next."""
        now = self._clock()
        with self._lock:
            report = (key, fraction, note[:PROGRESS_NOTE_CHARS])
            if now - self._progress_sent.get(key.id, -PROGRESS_INTERVAL) < PROGRESS_INTERVAL:
                self._progress_held[key.id] = report
                return
            self._progress_held.pop(key.id, None)
            self._send_progress(report, now)

    def _flush_progress(self) -> None:
        """Send the held reports whose interval has passed (heartbeat thread)."""
        now = self._clock()
        with self._lock:
            for tid, report in list(self._progress_held.items()):
                if now - self._progress_sent.get(tid, -PROGRESS_INTERVAL) >= PROGRESS_INTERVAL:
                    del self._progress_held[tid]
                    self._send_progress(report, now)

    def _send_progress(self, report: tuple[TaskKey, float, str], now: float) -> None:
        key, fraction, note = report
        if key.id in self._held and self._session is not None:  # still ours, still running
            self._progress_sent[key.id] = now
            self._session.send(cv.progress(key, fraction, note))
