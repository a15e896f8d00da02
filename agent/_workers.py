"""The worker threads: run the handler for runnable tasks, report the outcome.

Contract: each of the ``slots`` workers takes the best runnable task
(highest priority, then arrival), runs the handler outside every lock and
turns what it returned or raised into an :class:`Outcome` (a
:class:`TaskFailure` says how; any other exception is a retryable failure
with its traceback). The outcome is reported under the claim the task holds
when the run ends (it may have been re-claimed meanwhile) and kept unacked
until the coordinator answers. After ``stop`` nothing more is reported.
"""

from __future__ import annotations

import functools
import traceback
from dataclasses import replace

from . import _convert as cv
from ._held import RUNNABLE, RUNNING, HeldTasks
from ._progress import ProgressReports
from ._results import success
from ._types import Outcome, Task, TaskFailure, tail


class Workers(HeldTasks, ProgressReports):
    """The worker threads' loop and the handler call."""

    def _worker_loop(self) -> None:
        while True:
            with self._work:
                while True:
                    if self._closed:
                        return
                    runnable = [h for h in self._held.values() if h.state == RUNNABLE]
                    if runnable:
                        h = min(runnable, key=lambda h: h.order)
                        h.state = RUNNING
                        break
                    self._work.wait(0.5)
            outcome = self._execute(h.task)
            with self._work:
                self._progress_sent.pop(h.task.key.id, None)
                self._progress_held.pop(h.task.key.id, None)
                if self._held.get(h.task.key.id) is h:
                    del self._held[h.task.key.id]
                if self._done() and self._stop_requested:
                    return
                # h.task may carry a newer claim than the run started under (_on_assign)
                outcome = replace(outcome, key=h.task.key)
                self._unacked[outcome.key.id] = outcome
                self._succeeded_here(outcome)
                if self._session is not None:
                    self._session.send(cv.outcome(outcome))
                self._pump()
                self._work.notify_all()

    def _execute(self, task: Task) -> Outcome:
        assert self._handler is not None
        key = task.key
        self._exec_log.record("start", key)
        log = self._log.bind(project=task.project_id, task=task.task_id, fence=task.fence)
        log.info("task started", attempt=task.attempt)
        t0 = self._clock()
        task = replace(task, reporter=functools.partial(self._report_progress, key))
        try:
            result = self._handler(task)
        except TaskFailure as exc:
            outcome = Outcome(
                key,
                succeeded=False,
                duration_seconds=self._clock() - t0,
                output_tail=tail(exc.output),
                reason=exc.reason,
                exit_code=exc.exit_code,
                retryable=exc.retryable,
                released=exc.released,
            )
        except Exception as exc:
            outcome = Outcome(
                key,
                succeeded=False,
                duration_seconds=self._clock() - t0,
                output_tail=tail(traceback.format_exc()),
                reason=f"{type(exc).__name__}: {exc}",
                retryable=True,
            )
        else:
            outcome = success(key, result, self._clock() - t0)
        result_name = "succeeded" if outcome.succeeded else "failed"
        self._exec_log.record("finish", key, outcome=result_name)
        log.info(
            "task finished",
            outcome=result_name,
            seconds=round(outcome.duration_seconds, 3),
            reason=outcome.reason or None,
        )
        return outcome
