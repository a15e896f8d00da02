"""The demo's task command (``workhive up`` without ``--exec``): it sleeps the
payload's seconds in sh, with no interpreter start per task (issue 19)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time

import pytest

from workhive.coordinator.cli.up import SLEEP_CMD


def _run(payload: str) -> float:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "WORKHIVE_PAYLOAD": payload}
    t0 = time.monotonic()
    subprocess.run(shlex.split(SLEEP_CMD), env=env, check=True, timeout=10)
    return time.monotonic() - t0


def test_the_demo_command_is_not_a_python_interpreter() -> None:
    assert shlex.split(SLEEP_CMD)[0] == "sh"


@pytest.mark.parametrize(
    ("payload", "seconds"),
    [
        ('{"sleep": 0.3, "payload": null}', 0.3),
        ('{"sleep":0.2}', 0.2),
        ('{"sleep": 0.2, "payload": {"sleep": 9}}', 0.2),  # the task's own payload is inside
        ("null", 0.1),
        ('{"x": 1}', 0.1),
    ],
)
def test_the_demo_command_sleeps_the_payloads_seconds(payload: str, seconds: float) -> None:
    took = _run(payload)
    assert seconds <= took < seconds + 0.25
