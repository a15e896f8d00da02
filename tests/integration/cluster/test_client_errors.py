"""What a client is told when something is wrong (issue 13): large submits,
etcd out of reach, stale answers, ``workhive up --timeout``. Real etcd,
coordinator and CLI processes on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.integration.cluster.conftest import Harness
from workhive.client import Client, TaskState
from workhive.coordinator.cli import exit_codes
from workhive.coordinator.local_cluster.etcd_server import EtcdServer
from workhive.coordinator.local_cluster.ports import free_port
from workhive.coordinator.local_cluster.processes import LocalCluster
from workhive.coordinator.model import ProjectSpec, TaskSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Make = Callable[..., Harness]
CLI = [sys.executable, "-m", "workhive.coordinator.cli"]


def test_a_submit_of_40_tasks_with_60_kb_payloads_is_stored(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    h.wait_leader()
    tasks = tuple(TaskSpec(id=f"t{i}", payload="x" * 60_000) for i in range(40))
    with Client(h.cluster.coordinator_addresses, timeout=10) as client:
        assert client.submit(ProjectSpec(id="heavy", tasks=tasks)).task_count == 40
        assert client.task("heavy", "t39").state is TaskState.READY


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[tuple[EtcdServer, LocalCluster]]:
    """A cluster of one coordinator on an etcd of its own, which a test may stop."""
    etcd = EtcdServer(data_dir=tmp_path / "etcd", log_path=tmp_path / "etcd.log").start()
    cluster = LocalCluster(etcd.url, tmp_path)
    try:
        cluster.add_coordinator()
        cluster.wait_coordinators()
        yield etcd, cluster
    finally:
        if etcd.proc is not None:
            etcd.proc.send_signal(signal.SIGCONT)
        cluster.stop()
        etcd.stop()


def _status_json(address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "status", "-c", address, "--json", "--timeout", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_says_so_and_exits_69_while_etcd_is_unreachable(
    own_etcd: tuple[EtcdServer, LocalCluster],
) -> None:
    etcd, cluster = own_etcd
    (address,) = cluster.coordinator_addresses
    with Client([address], timeout=20) as client:  # a leader, so its mirror can answer
        while not client.status().leader.elected:
            time.sleep(0.1)
    assert _status_json(address).returncode == exit_codes.OK
    assert etcd.proc is not None
    etcd.proc.send_signal(signal.SIGSTOP)
    r = _status_json(address)
    assert r.returncode == exit_codes.UNAVAILABLE, r.stderr
    assert "etcd" in r.stderr and "Traceback" not in r.stderr
    if r.stdout:  # answered from the leader's mirror: marked stale, still JSON
        assert json.loads(r.stdout)["stale"] is True


def test_a_coordinator_without_etcd_exits_69_with_one_line_naming_etcd() -> None:
    etcd_port, port = free_port(), free_port()
    args = ["--etcd", f"http://127.0.0.1:{etcd_port}", "--listen", f"127.0.0.1:{port}"]
    r = subprocess.run(
        [*CLI, "coordinator", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert r.returncode == exit_codes.UNAVAILABLE
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"etcd at 127.0.0.1:{etcd_port} is unreachable" in last
    assert "debug_error_string" not in r.stderr and "Traceback" not in r.stderr


def test_up_gives_up_at_its_timeout_while_status_calls_fail(tmp_path: Path) -> None:
    project = tmp_path / "slow.yaml"
    project.write_text("project: slow\ntasks:\n  - {id: a}\n")
    args = ["--coordinators", "1", "--agents", "1", "--exec", "sleep 60", "--timeout", "8"]
    up = subprocess.Popen(
        [*CLI, "up", str(project), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = time.monotonic()
        me = psutil.Process(up.pid)
        while not any(p.cmdline()[:2] == ["sleep", "60"] for p in _children(me)):
            assert up.poll() is None and time.monotonic() - started < 60, "task never started"
            time.sleep(0.2)
        # the task runs: stop the coordinator, so every status call fails
        stopped = time.monotonic()
        for p in _children(me):
            if "coordinator" in p.cmdline():
                p.send_signal(signal.SIGSTOP)
        _, err = up.communicate(timeout=30)
        assert up.returncode == exit_codes.UNAVAILABLE
        assert "did not finish within 8s" in err
        assert time.monotonic() - stopped < 8 + 12  # the timeout, then the teardown
    finally:
        if up.poll() is None:
            up.kill()
        for p in _children(psutil.Process()):
            p.send_signal(signal.SIGCONT)


def _children(proc: psutil.Process) -> list[psutil.Process]:
    out = []
    for p in proc.children(recursive=True):
        try:
            p.cmdline()
            out.append(p)
        except psutil.Error:
            pass
    return out
