"""Per-task deadlines end to end (issue 17): real etcd, coordinator and
``workhive agent --exec`` processes on 127.0.0.1. A task that hangs past its
``timeout`` is revoked on its live agent (the process is killed), retried
after its ``retry_backoff`` and failed for good after ``max_attempts``; the
audit of etcd's history and the agent's execution log finds nothing doubled.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable

import pytest

from tests.integration.cluster.conftest import Harness
from workhive.coordinator.model import ProjectSpec, RetryBackoff, TaskSpec

pytestmark = [pytest.mark.integration]

Make = Callable[..., Harness]
TIMEOUT = 1.0
BACKOFF = RetryBackoff(base=1.5, cap=1.5)  # each wait in [0.75, 1.5) s (equal jitter)
ATTEMPTS = 3


def _exec_log(h: Harness) -> list[dict[str, object]]:
    return [json.loads(line) for line in h.cluster.exec_log.read_text().splitlines()]


@pytest.mark.timeout(90)
def test_a_hanging_task_is_revoked_retried_after_backoff_and_failed_after_max_attempts(
    make_cluster: Make,
) -> None:
    h = make_cluster().start(coordinators=1, agents=1)
    spec = ProjectSpec(
        id="hangs",
        tasks=(
            TaskSpec(
                id="stuck",
                payload={"sleep": 60},  # hangs far past its timeout
                timeout=TIMEOUT,
                retry_backoff=BACKOFF,
                max_attempts=ATTEMPTS,
            ),
        ),
    )
    h.client.submit(spec)
    seen_deadline, seen_retry = 0.0, 0.0
    until = time.monotonic() + 30
    while not (seen_deadline and seen_retry) and time.monotonic() < until:
        st = h.client.task(spec.id, "stuck")
        if st.deadline_at:
            seen_deadline = st.deadline_at
        if st.retry_at:
            seen_retry = st.retry_at
            assert st.last_failure == "deadline exceeded"
        time.sleep(0.05)
    assert seen_deadline, "status never showed the running attempt's deadline"
    assert seen_retry, "status never showed the next retry time"
    done = h.wait_finished(spec.id, timeout=60)
    assert done.counts["failed"] == 1

    task = h.client.task(spec.id, "stuck")
    assert task.attempt == ATTEMPTS
    assert "deadline exceeded" in task.reason

    log = _exec_log(h)
    starts = [r for r in log if r["event"] == "start" and r["task"] == "stuck"]
    assert len(starts) == ATTEMPTS, starts
    assert len({r["fence"] for r in starts}) == ATTEMPTS  # one claim per attempt
    for prev, nxt in itertools.pairwise(starts):
        gap = float(nxt["t"]) - float(prev["t"])  # type: ignore[arg-type]
        assert gap >= TIMEOUT + BACKOFF.base / 2 - 0.1, f"retried after {gap:.2f}s"
    finishes = [r for r in log if r["event"] == "finish" and r["task"] == "stuck"]
    assert all(r["outcome"] == "failed" for r in finishes)  # killed, never succeeded

    report = h.audit()
    assert report.ok, report.violations
