"""The client commands' usage errors and the ``up`` summary's cost (issue 13)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workhive.coordinator.cli import exit_codes
from workhive.coordinator.local_cluster.summary import lower_bound
from workhive.coordinator.model import ProjectSpec, TaskSpec

CLI = [sys.executable, "-m", "workhive.coordinator.cli"]


@pytest.mark.parametrize("command", [["status"], ["cancel", "p"], ["wait", "p"]])
def test_an_empty_coordinator_list_is_a_usage_error_without_a_traceback(
    command: list[str],
) -> None:
    r = subprocess.run([*CLI, *command, "-c", ""], capture_output=True, text=True, timeout=60)
    assert r.returncode == exit_codes.USAGE
    assert "no coordinator address" in r.stderr and "Traceback" not in r.stderr


def test_wait_on_an_unreachable_coordinator_exits_69_at_its_timeout() -> None:
    from workhive.coordinator.local_cluster.ports import free_port

    r = subprocess.run(
        [*CLI, "wait", "p", "-c", f"127.0.0.1:{free_port()}", "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == exit_codes.UNAVAILABLE
    assert r.stderr.count("\n") == 1 and "within 2s" in r.stderr


@pytest.mark.timeout(20)
def test_the_lower_bound_of_a_100k_task_project_is_computed_in_linear_time() -> None:
    tasks = [TaskSpec(id="t0", duration=1.0)]
    tasks += [
        TaskSpec(id=f"t{i}", depends_on=(f"t{i // 2}",), duration=1.0) for i in range(1, 100_000)
    ]
    assert lower_bound(ProjectSpec(id="big", tasks=tuple(tasks)), total_slots=1000) == 100.0
