"""``workhive up``: the main job end to end, its exit codes and its cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

CLI = [sys.executable, "-m", "workhive.coordinator.cli"]

SMALL = """
project: small
tasks:
  - {id: root, estimate: 0.1}
  - {id: a, depends_on: [root], estimate: 0.2, priority: 9}
  - {id: b, depends_on: [root], estimate: 0.2, branch: x}
  - {id: c, depends_on: [root], estimate: 0.2, branch: x, requires: [gpu]}
  - {id: d, depends_on: [a, b, c], estimate: 0.1}
agents:
  - {count: 2}
  - {count: 1, capabilities: [gpu]}
"""


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmp)}


def test_up_runs_a_project_and_prints_an_audited_summary(tmp_path: Path) -> None:
    project = tmp_path / "small.yaml"
    project.write_text(SMALL)
    run_tmp = tmp_path / "tmp"
    run_tmp.mkdir()
    r = subprocess.run(
        [*CLI, "up", str(project), "--coordinators", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=200,
        env=_env(run_tmp),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary["succeeded"] == summary["tasks"] == 5
    assert summary["lost"] == 0 and summary["committed_twice"] == 0
    assert summary["violations"] == {} and summary["ok"] is True
    assert summary["makespan_seconds"] >= summary["lower_bound_seconds"] > 0
    assert list(run_tmp.iterdir()) == [], "up left files behind"


def test_up_rejects_an_invalid_project_with_exit_code_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "project: p\ntasks:\n  - {id: a, depends_on: [b]}\n  - {id: b, depends_on: [a]}\n"
    )
    r = subprocess.run([*CLI, "up", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "cycle" in r.stderr and "bad.yaml" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_stops_every_process_and_removes_the_run_directory(
    tmp_path: Path, sig: signal.Signals
) -> None:
    run_tmp = tmp_path / "tmp"
    run_tmp.mkdir()
    proc = subprocess.Popen(
        [*CLI, "up", "--coordinators", "2", "--agents", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(run_tmp),
    )
    try:
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while time.monotonic() < deadline:
            children = psutil.Process(proc.pid).children(recursive=True)
            agents = [c for c in children if "agent" in " ".join(c.cmdline())]
            if len(agents) >= 2:
                break
            time.sleep(0.2)
        assert children, "up never started its processes"
        time.sleep(2)  # let the project start
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 130
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running: {[p.cmdline()[:4] for p in alive]}"
        assert list(run_tmp.iterdir()) == [], "the run directory was not removed"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_children_die_with_a_killed_up(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "up", "--coordinators", "1", "--agents", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(tmp_path),
    )
    try:
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while time.monotonic() < deadline and len(children) < 3:
            children = psutil.Process(proc.pid).children(recursive=True)
            time.sleep(0.2)
        proc.kill()
        proc.wait(timeout=10)
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"outlived a SIGKILLed up: {[p.cmdline()[:4] for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()
