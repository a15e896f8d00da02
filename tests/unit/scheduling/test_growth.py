"""Growing a running project: the batch rules, the incremental analysis,
and the scheduler taking the new tasks (docs/scheduling.md, "Growing a project")."""

from __future__ import annotations

import random

import pytest

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskSpec, TaskState
from workhive.coordinator.scheduling import (
    Addition,
    AgentJoined,
    AssignTask,
    ProjectError,
    ProjectFinished,
    ProjectSubmitted,
    SchedulerConfig,
    SchedulerState,
    TasksAdded,
    TaskStarted,
    TaskSucceeded,
    analyse,
    check_addition,
    extend_analysis,
)
from workhive.coordinator.scheduling.records import ProjectRecord, TaskRecord


def T(tid: str, *deps: str, est: float = 1.0) -> TaskSpec:
    return TaskSpec(id=tid, depends_on=deps, estimate=est)


EXISTING = {"a": T("a"), "b": T("b", "a"), "c": T("c", "b")}
STATES = {"a": TaskState.SUCCEEDED, "b": TaskState.RUNNING, "c": TaskState.PENDING}


def check(
    *tasks: TaskSpec, blocks: dict[str, tuple[str, ...]] | None = None, **states: str
) -> None:
    st = {**STATES, **{k: TaskState(v) for k, v in states.items()}}
    check_addition(Addition("p", tasks, blocks or {}), EXISTING.get, st.get)


def refused(match: str, *tasks: TaskSpec, **kw: object) -> ProjectError:
    with pytest.raises(ProjectError, match=match) as exc:
        check(*tasks, **kw)  # type: ignore[arg-type]
    return exc.value


def test_new_tasks_may_depend_on_succeeded_running_pending_and_each_other() -> None:
    check(T("x", "a", "b", "c"), T("y", "x"))


def test_a_duplicate_id_in_the_batch_is_refused_naming_task_and_field() -> None:
    e = refused("duplicate task id", T("x"), T("x"))
    assert (e.task, e.field) == ("x", "id")


def test_an_id_that_already_exists_is_refused() -> None:
    assert refused("already exists", T("b")).field == "id"


def test_an_unknown_dependency_is_refused() -> None:
    e = refused("unknown dependency 'zz'", T("x", "zz"))
    assert (e.task, e.field) == ("x", "depends_on")


def test_a_dependency_on_a_failed_or_cancelled_task_is_refused() -> None:
    refused("depends on 'c', which is failed", T("x", "c"), c="failed")
    refused("depends on 'c', which is cancelled", T("x", "c"), c="cancelled")


def test_blocking_a_task_that_already_started_is_refused() -> None:
    e = refused("blocks 'b', which has already started", T("x"), blocks={"x": ("b",)})
    assert (e.task, e.field) == ("x", "blocks")
    refused("already started", T("x"), blocks={"x": ("c",)}, c="assigned")


def test_blocking_an_unknown_task_is_refused() -> None:
    refused("blocks unknown task 'nope'", T("x"), blocks={"x": ("nope",)})


def test_a_cycle_through_existing_tasks_is_refused_with_its_path() -> None:
    e = refused(r"cycle: x -> c -> x", T("x", "c"), blocks={"x": ("c",)})
    assert e.field == "depends_on"


def test_a_cycle_through_two_new_tasks_and_an_existing_one_prints_its_path() -> None:
    refused(r"cycle: x -> y -> c -> x", T("x", "y"), T("y", "c"), blocks={"x": ("c",)})


def test_an_oversize_batch_is_refused() -> None:
    refused("too large for one transaction", *(T(f"n{i}") for i in range(121)))


def test_extended_ranks_equal_a_full_recompute() -> None:
    rng = random.Random(7)
    base = [T(f"t{i}", *{f"t{rng.randrange(i)}" for _ in range(2)} if i else ()) for i in range(60)]
    an = analyse(ProjectSpec("p", tuple(base)))
    new = [T("n0", "t10", est=9.0), T("n1", "n0", "t30", est=4.0)]
    blocked = {"t40": ["n1"], "t59": ["n0"]}
    an, _ = extend_analysis(an, new, blocked, lambda t: t.estimate or 1.0)
    grown = [T(t.id, *t.depends_on, *blocked.get(t.id, ())) for t in base] + new
    full = analyse(ProjectSpec("p", tuple(grown)))
    assert an.rank == full.rank
    assert an.tlevel == full.tlevel
    assert an.critical_path_length == full.critical_path_length
    assert an.children == full.children or sorted(map(sorted, an.children)) == sorted(
        map(sorted, full.children)
    )


def test_adding_to_a_long_chain_touches_only_the_ancestors_it_changes() -> None:
    chain = [T("t0")] + [T(f"t{i}", f"t{i - 1}") for i in range(1, 2000)]
    an = analyse(ProjectSpec("p", tuple(chain)))
    an, changed = extend_analysis(an, [T("leaf", "t1999", est=5.0)], {}, lambda t: 5.0)
    assert len(changed) == 2000 and an.rank[0] == 2005.0
    an, changed = extend_analysis(an, [T("side", "t5")], {}, lambda t: 1.0)
    assert changed == set()  # a short branch raises no rank


def test_a_new_task_whose_parents_succeeded_is_assigned_at_once() -> None:
    s = SchedulerState(SchedulerConfig(policy="critical-path"))
    s.handle(
        AgentJoined(AgentInfo("ag", slots=1, prefetch=0), 0.0),
        ProjectSubmitted(ProjectSpec("p", (T("a"),)), 0.0),
    )
    s.handle(TaskStarted(TaskKey("p", "a"), "ag", 0.1))
    s.handle(TaskSucceeded(TaskKey("p", "a"), "ag", 1.0, 1.0))
    cmds = s.handle(TasksAdded(Addition("p", (T("x", "a"),)), 2.0))
    assert [(c.key.task, c.agent_id) for c in cmds if isinstance(c, AssignTask)] == [("x", "ag")]


def test_adding_to_a_finished_project_reopens_it() -> None:
    s = SchedulerState(SchedulerConfig(policy="critical-path"))
    s.handle(ProjectSubmitted(ProjectSpec("p", (T("a"),)), 0.0))
    s.handle(AgentJoined(AgentInfo("ag"), 0.0))
    s.handle(TaskStarted(TaskKey("p", "a"), "ag", 0.1))
    done = s.handle(TaskSucceeded(TaskKey("p", "a"), "ag", 1.0, 1.0))
    assert ProjectFinished("p", "succeeded") in done
    s.handle(TasksAdded(Addition("p", (T("x", "a"),)), 2.0))
    assert s.project_outcome("p") is None
    assert s.task_state(TaskKey("p", "x")) in (
        TaskState.READY,
        TaskState.ASSIGNED,
        TaskState.RUNNING,
    )


def test_a_blocked_ready_task_waits_for_the_new_one() -> None:
    s = SchedulerState(SchedulerConfig(policy="critical-path"))
    s.handle(ProjectSubmitted(ProjectSpec("p", (T("a"), T("b"))), 0.0))
    s.handle(TasksAdded(Addition("p", (T("x"),), {"x": ("b",)}), 1.0))
    assert s.task_state(TaskKey("p", "b")) is TaskState.PENDING
    cmds = s.handle(AgentJoined(AgentInfo("ag", slots=2), 2.0))
    assigned = {c.key.task for c in cmds if isinstance(c, AssignTask)}
    assert assigned == {"a", "x"}
    s.handle(TaskStarted(TaskKey("p", "x"), "ag", 2.1))
    cmds = s.handle(TaskSucceeded(TaskKey("p", "x"), "ag", 1.0, 3.0))
    assert any(isinstance(c, AssignTask) and c.key.task == "b" for c in cmds)


def test_a_grown_projects_spec_is_its_task_records_as_they_are_now() -> None:
    p = ProjectRecord(ProjectSpec("p", (T("a"), T("b")), source="p.yaml"))
    p.tasks = [TaskRecord(TaskKey("p", t.id), t, i, p) for i, t in enumerate(p.spec.tasks)]
    before = p.spec
    assert p.spec is before  # nothing rebuilt while nothing changed
    p.tasks[1].spec = T("b", "x")
    p.tasks.append(TaskRecord(TaskKey("p", "x"), T("x"), 2, p))
    assert p.spec is before  # an addition does not copy the project ...
    p.grown()
    assert p.spec == ProjectSpec(
        "p", (T("a"), T("b", "x"), T("x")), source="p.yaml"
    )  # ... a read does
