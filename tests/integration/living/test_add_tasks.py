"""Growing a running project: AddTasks validates a batch against the whole
graph and commits it in one fenced transaction, or writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.living.conftest import SUM_CMD, Harness
from workhive.client import InvalidProject, Project, Task, UnknownProject, WorkhiveError
from workhive.coordinator.etcd import EtcdClient, Keyspace

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

Make = Callable[..., Harness]
SLOW = {"sleep": 1.0}


def _project_keys(h: Harness, pid: str) -> list[tuple[bytes, int]]:
    client = EtcdClient(list(h.etcd.endpoints), timeout=10)
    try:
        _, kvs = client.get_prefix(Keyspace(h.etcd.prefix).project_prefix(pid))
    finally:
        client.close()
    return sorted((kv.key, kv.mod_revision) for kv in kvs)


def _wait_state(h: Harness, pid: str, tid: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while str(h.client.task(pid, tid).state) != state:
        assert time.monotonic() < deadline, f"{tid} never {state}"
        time.sleep(0.05)


def test_added_tasks_run_in_order_and_a_blocked_task_waits_for_them(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    h.cluster.add_agent(SUM_CMD, slots=2)
    h.client.submit(Project("grow", (Task("a", payload=SLOW), Task("b", depends_on=("a",)))))
    _wait_state(h, "grow", "a", "running")
    added = h.client.add_tasks(
        "grow",
        [Task("x", depends_on=("a",)), Task("y", depends_on=("x",), blocks=("b",))],
    )
    assert (added.added, added.task_count) == (2, 4)
    h.wait_finished("grow")
    assert h.client.result("grow", "y") == {"task": "y", "sum": 3, "parents": ["x"]}
    assert h.client.result("grow", "b")["parents"] == ["a", "y"]
    report = h.audit()
    assert report.ok, report.violations


def test_adding_to_a_finished_project_reopens_it(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    h.cluster.add_agent(SUM_CMD)
    h.client.submit(Project("reopen", (Task("a"),)))
    h.wait_finished("reopen")
    h.client.add_tasks("reopen", [Task("later", depends_on=("a",))])
    _wait_state(h, "reopen", "later", "succeeded")
    time.sleep(0.3)  # status answers may be reused for 0.25 s
    done = h.wait_finished("reopen")
    assert done.counts == {"succeeded": 2}
    assert h.client.result("reopen", "later")["sum"] == 2


def test_every_bad_batch_is_refused_naming_task_and_field_and_writes_nothing(
    make_cluster: Make,
) -> None:
    h = make_cluster().start(coordinators=1)  # no agent: nothing moves by itself
    h.client.submit(
        Project("bad", (Task("a"), Task("b", depends_on=("a",)), Task("c", depends_on=("b",))))
    )
    before = _project_keys(h, "bad")
    cases = [
        ([Task("x", depends_on=("c",), blocks=("a",))], "cycle: x -> c -> b -> a -> x"),
        ([Task("x", depends_on=("nope",))], "task 'x': field 'depends_on': unknown dependency"),
        ([Task("x"), Task("x")], "task 'x': field 'id': duplicate task id"),
        ([Task("b")], "task 'b': field 'id': task id already exists"),
        ([Task("x", blocks=("nope",))], "task 'x': field 'blocks': blocks unknown task"),
        ([Task(f"n{i}") for i in range(121)], "too large for one transaction"),
        ([Task("x", priority=99)], "task 'x': field 'priority'"),
    ]
    for tasks, message in cases:
        with pytest.raises(InvalidProject, match=message):
            h.client.add_tasks("bad", tasks)
    with pytest.raises(UnknownProject):
        h.client.add_tasks("nosuch", [Task("x")])
    assert _project_keys(h, "bad") == before


def test_a_dependency_on_a_failed_task_or_blocking_a_started_one_is_refused(
    make_cluster: Make,
) -> None:
    h = make_cluster().start(coordinators=1)
    h.cluster.add_agent(SUM_CMD)
    h.client.submit(
        Project("st", (Task("slow", payload=SLOW), Task("big", payload={"big": 70_000})))
    )
    _wait_state(h, "st", "slow", "running")
    with pytest.raises(InvalidProject, match="field 'blocks': blocks 'slow', which has already"):
        h.client.add_tasks("st", [Task("x", blocks=("slow",))])
    _wait_state(h, "st", "big", "failed")
    with pytest.raises(InvalidProject, match="depends on 'big', which is failed"):
        h.client.add_tasks("st", [Task("x", depends_on=("big",))])


def test_adding_to_a_cancelled_project_is_refused(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    h.client.submit(Project("cx", (Task("a"),)))
    h.client.cancel("cx")
    h.wait_finished("cx")
    with pytest.raises(WorkhiveError, match="is cancelled"):
        h.client.add_tasks("cx", [Task("x")])


def test_workhive_add_reads_a_file_and_reports_refusals(make_cluster: Make, tmp_path: Path) -> None:
    h = make_cluster().start(coordinators=1)
    h.client.submit(Project("cli", (Task("a"),)))
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.json"
    good.write_text("tasks:\n  - id: x\n    depends_on: [a]\n")
    bad.write_text(json.dumps([{"id": "y", "depends_on": ["ghost"]}]))
    cli = [sys.executable, "-m", "workhive.coordinator.cli", "add", "cli"]
    addr = ["-c", ",".join(h.cluster.coordinator_addresses)]
    ok = subprocess.run([*cli, str(good), *addr, "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["task_count"] == 2
    no = subprocess.run([*cli, str(bad), *addr], capture_output=True, text=True)
    assert no.returncode == 1
    assert "task 'y': field 'depends_on': unknown dependency 'ghost'" in no.stderr
