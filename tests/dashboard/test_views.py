"""View models: the JSON documents of /api/v1/ from a snapshot (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from tests.dashboard._fakes import chain_state, claim, snap_of, succeed
from workhive.coordinator.dashboard.layout import layout
from workhive.coordinator.dashboard.tracker import Tracker
from workhive.coordinator.dashboard.views import (
    agents_view,
    changed_keys,
    project_delta,
    project_states,
    project_view,
    status_view,
    task_view,
    update_states,
)
from workhive.coordinator.model import TaskKey, TaskResult, TaskState
from workhive.coordinator.service.client_service import effective_states


def _layout(cs: object) -> object:
    return layout({k.task: r.spec for k, r in cs.tasks.items()})  # type: ignore[attr-defined]


def test_states_match_what_getstatus_counts() -> None:
    cs = chain_state(n=5)
    succeed(cs, TaskKey("p", "t0"))
    claim(cs, TaskKey("p", "t1"), "a1", started=True)
    expected = Counter(s.value for s in effective_states(cs, "p").values())
    got = Counter(s.value for s in project_states(snap_of(cs))["p"].values())
    assert got == expected


def test_a_pending_task_whose_parents_succeeded_is_ready() -> None:
    cs = chain_state(n=3)
    succeed(cs, TaskKey("p", "t0"))
    states = project_states(snap_of(cs))["p"]
    assert states["t1"] is TaskState.READY and states["t2"] is TaskState.PENDING


def test_status_names_every_state_and_the_progress() -> None:
    cs = chain_state(n=4)
    succeed(cs, TaskKey("p", "t0"))
    snap = snap_of(cs)
    doc = status_view(snap, project_states(snap), Tracker())
    (p,) = doc["projects"]
    assert p["counts"] == {
        "pending": 2,
        "ready": 1,
        "assigned": 0,
        "running": 0,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert p["progress"] == 0.25 and not p["finished"]
    assert doc["leader"] == {"id": "c1", "address": "127.0.0.1:1", "term": 5}
    assert doc["metrics_source"] == "mirror"


def test_project_rows_carry_layer_agent_and_times() -> None:
    cs = chain_state(n=3)
    succeed(cs, TaskKey("p", "t0"), agent="a2", at=1010.0)
    snap = snap_of(cs)
    doc = project_view(snap, "p", project_states(snap), Tracker(), _layout(cs))  # type: ignore[arg-type]
    assert doc is not None
    rows = {r["id"]: r for r in doc["tasks"]}
    assert rows["t0"]["agent"] == "a2" and rows["t0"]["start"] == 1008.0
    assert rows["t0"]["end"] == 1010.0
    assert [rows[t]["layer"] for t in ("t0", "t1", "t2")] == [0, 1, 2]
    assert doc["critical_path"] == ["t0", "t1", "t2"]


def test_unknown_project_or_task_is_none() -> None:
    cs = chain_state()
    snap = snap_of(cs)
    states = project_states(snap)
    assert project_view(snap, "nope", states, Tracker(), _layout(cs)) is None  # type: ignore[arg-type]
    assert task_view(snap, "p", "nope", states, Tracker()) is None


def test_task_view_shows_fence_and_output_tail() -> None:
    cs = chain_state(n=2)
    claim(cs, TaskKey("p", "t1"), "a1", started=True, fence=77)
    key = TaskKey("p", "t0")
    cs.results[key] = TaskResult(key, TaskState.FAILED, agent="a1", attempt=3, output_tail="boom")
    snap = snap_of(cs)
    states = project_states(snap)
    t1 = task_view(snap, "p", "t1", states, Tracker())
    assert t1["claim"]["fence"] == 77 and t1["state"] == "running"
    t0 = task_view(snap, "p", "t0", states, Tracker())
    assert t0["result"]["output_tail"] == "boom" and t0["spec"]["children"] == ["t1"]


def _row(tid: str) -> dict[str, str]:
    return {"id": tid}


def test_delta_lists_only_changed_tasks() -> None:
    cs = chain_state(n=4)
    before = project_states(snap_of(cs))["p"]
    succeed(cs, TaskKey("p", "t0"))
    now = project_states(snap_of(cs))["p"]
    delta = project_delta("p", before, now, _row, limit=10)
    assert delta is not None
    assert sorted(r["id"] for r in delta["tasks"]) == ["t0", "t1"]  # t1 became ready
    assert delta["counts"]["succeeded"] == 1


def test_delta_over_the_limit_asks_for_a_reload() -> None:
    cs = chain_state(n=4)
    assert project_delta("p", None, project_states(snap_of(cs))["p"], _row, 3) is None


def _children(cs: object) -> Callable[[str], dict[str, list[str]]]:
    lay = _layout(cs)
    return lambda pid: lay.children  # type: ignore[attr-defined,no-any-return]


def test_incremental_states_equal_a_full_recomputation() -> None:
    cs = chain_state(n=6)
    prev_snap = snap_of(cs)
    prev = project_states(prev_snap)
    succeed(cs, TaskKey("p", "t0"))
    succeed(cs, TaskKey("p", "t1"))
    claim(cs, TaskKey("p", "t3"), "a1", started=True)
    cur = snap_of(cs)
    got, touched = update_states(cur, prev, changed_keys(prev_snap, cur), _children(cs))
    assert got == project_states(cur)
    assert {"t0", "t1", "t2", "t3"} <= touched["p"]  # t2 became ready: t1 is its parent


def test_a_task_whose_parent_is_no_longer_succeeded_is_pending_again() -> None:
    cs = chain_state(n=3)
    succeed(cs, TaskKey("p", "t0"))
    prev_snap = snap_of(cs)
    prev = project_states(prev_snap)
    del cs.results[TaskKey("p", "t0")]
    cur = snap_of(cs)
    got, _ = update_states(cur, prev, changed_keys(prev_snap, cur), _children(cs))
    assert got["p"]["t1"] is TaskState.PENDING and got == project_states(cur)


def test_a_new_project_is_computed_in_full() -> None:
    cs = chain_state(n=2)
    prev_snap = snap_of(cs)
    prev = project_states(prev_snap)
    other = chain_state("q", n=3)
    cs.projects.update(other.projects)
    cs.tasks.update(other.tasks)
    cur = snap_of(cs)
    got, touched = update_states(cur, prev, changed_keys(prev_snap, cur), _children(cs))
    assert got == project_states(cur) and touched["q"] == {"t0", "t1", "t2"}


def test_agents_show_running_and_queued_work() -> None:
    cs = chain_state(n=3)
    claim(cs, TaskKey("p", "t0"), "a1", started=True)
    claim(cs, TaskKey("p", "t1"), "a1", started=False)
    (a1, a2) = agents_view(snap_of(cs), lambda lease: 0.5 if lease == 0x11 else None)
    assert a1["running"] == ["p/t0"] and a1["queued"] == ["p/t1"]
    assert a1["busy"] == 0.5 and a1["last_keepalive_age"] == 0.5
    assert a2["running"] == [] and a2["connected"] is None  # a follower cannot tell
