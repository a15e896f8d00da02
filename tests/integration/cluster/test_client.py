"""``workhive.client.Client`` against real coordinator and agent processes:
each call's contract as docs/client.md states it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.harness.dags import independent
from tests.integration.cluster.conftest import Harness
from workhive.client import (
    Client,
    Project,
    ProjectExists,
    Task,
    TaskState,
    UnknownProject,
    WaitTimeout,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Make = Callable[..., Harness]


def _follower_address(h: Harness) -> str:
    leader = h.wait_leader().leader.leader_id
    return next(c.address for c in h.cluster.coordinators if c.name != leader)


def test_a_client_given_only_a_follower_submits_through_the_leader(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=2)
    with Client([_follower_address(h)], timeout=20) as client:
        submitted = client.submit(Project("via-follower", (Task("a"), Task("b", ("a",)))))
    assert (submitted.project_id, submitted.task_count) == ("via-follower", 2)
    assert submitted.revision > 0


def test_wait_returns_the_finished_project_with_every_task(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1, agents=2)
    h.wait_leader()
    spec = independent(4, sleep=0.05, project="waited")
    with Client(h.cluster.coordinator_addresses, timeout=20) as client:
        client.submit(spec)
        done = client.wait("waited", timeout=60)
    assert done.finished and done.count(TaskState.SUCCEEDED) == 4
    assert {t.state for t in done.tasks} == {TaskState.SUCCEEDED}


def test_wait_gives_up_at_its_timeout_when_the_project_cannot_run(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)  # no agent: nothing ever runs
    h.wait_leader()
    with Client(h.cluster.coordinator_addresses, timeout=20) as client:
        client.submit(Project("stuck", (Task("a"),)))
        with pytest.raises(WaitTimeout):
            client.wait("stuck", timeout=1.0)


def test_watch_reports_each_task_state_once_and_ends_when_the_project_finishes(
    make_cluster: Make,
) -> None:
    h = make_cluster().start(coordinators=1, agents=1)
    h.wait_leader()
    with Client(h.cluster.coordinator_addresses, timeout=20) as client:
        client.submit(independent(3, sleep=0.05, project="watched"))
        events = list(client.watch("watched"))
    assert events[-1].project_finished
    seen = [(e.task.task_id, e.task.state) for e in events]
    assert len(seen) == len(set(seen))
    assert {t for t, s in seen if s is TaskState.SUCCEEDED} == {"t0000", "t0001", "t0002"}


def test_a_second_submit_of_the_same_id_raises_project_exists(make_cluster: Make) -> None:
    h = make_cluster().start(coordinators=1)
    h.wait_leader()
    with Client(h.cluster.coordinator_addresses, timeout=20) as client:
        client.submit(Project("twice", (Task("a"),)))
        with pytest.raises(ProjectExists):
            client.submit(Project("twice", (Task("a"),)))


def test_unknown_ids_answer_unknown_not_an_error_for_task_and_raise_for_cancel(
    make_cluster: Make,
) -> None:
    h = make_cluster().start(coordinators=1)
    h.wait_leader()
    with Client(h.cluster.coordinator_addresses, timeout=20) as client:
        assert client.task("nope", "x").state is TaskState.UNKNOWN
        assert client.status("nope").project("nope") is None
        with pytest.raises(UnknownProject):
            client.cancel("nope")
