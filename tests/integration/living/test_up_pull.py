"""``workhive up --pull``: the demo with agents in pull mode, summary audited."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


def test_up_with_pull_agents_runs_the_demo_and_its_audit_is_clean() -> None:
    cli = [sys.executable, "-m", "workhive.coordinator.cli", "up", "--pull"]
    r = subprocess.run(
        [*cli, "--coordinators", "2", "--agents", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["succeeded"] == summary["tasks"] > 0
    assert summary["lost"] == 0 and summary["committed_twice"] == 0
    assert summary["violations"] == {} and summary["ok"] is True
