"""The references of ``bench.quality`` (issue 18): what they compute, on graphs small enough
to follow by hand."""

from __future__ import annotations

from bench._quality_cases import (
    critical_chain,
    forward_list_schedule,
    list_schedule,
    random_cases,
    redraw,
    wf_workflow,
)
from workhive.coordinator.model import AgentGroup, ProjectSpec, TaskSpec
from workhive.coordinator.scheduling import SimConfig, simulate


def _task(tid: str, estimate: float, real: float, *deps: str) -> TaskSpec:
    return TaskSpec(id=tid, depends_on=deps, estimate=estimate, duration=real)


def _late_join() -> ProjectSpec:
    """Two slots. ``a`` looks short (10 s) and runs 200 s; ``b`` joins it at ``j``,
    so ``b`` outranks ``c`` (60 s vs 50 s on the estimates) yet has slack while
    ``a`` runs; ``c -> d`` really takes 230 s."""
    return ProjectSpec(
        id="late-join",
        tasks=(
            _task("a", 10, 200),
            _task("x", 5, 5),
            _task("b", 10, 10, "x"),
            _task("j", 50, 20, "a", "b"),
            _task("c", 30, 30, "x"),
            _task("d", 20, 200, "c"),
        ),
        agents=(AgentGroup(count=2),),
    )


def test_plain_list_scheduling_starts_the_higher_ranked_join_input_first() -> None:
    # b (5-15), c (15-45), d (45-245); a (0-200), j (200-220)
    assert list_schedule(_late_join(), lambda t: t.estimate or 1.0) == 245.0


def test_forward_reference_lets_a_join_input_with_slack_yield_to_other_work() -> None:
    # told that a ends at 200, b has 185 s of slack at j: c (5-35), d (35-235), b, j by 230
    assert forward_list_schedule(_late_join(), "oracle") == 235.0


def test_forward_reference_reading_only_elapsed_time_sees_no_slack_before_an_overrun() -> None:
    # at 5 s, a has run 5 of its estimated 10 s: nothing is known yet, b goes first
    assert forward_list_schedule(_late_join(), "elapsed", sigma=0.0) == 245.0


def test_critical_chain_reports_how_long_each_link_waited_while_ready() -> None:
    spec = ProjectSpec(
        id="chain",
        tasks=(_task("a", 1, 1), _task("b", 3, 3), _task("c", 1, 1, "a")),
    )
    r = simulate(spec, SimConfig(agents=1, planner=None, record=True))
    chain = critical_chain(spec, r.schedule)
    # one slot: b (rank 3) first, then a (rank 2) at 3 s, then c at once
    assert [(c.task, c.start, c.waited) for c in chain] == [("a", 3.0, 3.0), ("c", 4.0, 0.0)]


def test_redraw_keeps_graph_and_estimates_and_draws_new_durations_deterministically() -> None:
    case = random_cases(1, 5)[0]
    assert redraw(case, 0) is case
    again, other = redraw(case, 1), redraw(case, 1)
    assert again == other
    old, new = case.spec.tasks, again.spec.tasks
    assert [(t.id, t.depends_on, t.estimate) for t in new] == [
        (t.id, t.depends_on, t.estimate) for t in old
    ]
    assert [t.duration for t in new] != [t.duration for t in old]


def test_random_tie_order_changes_nothing_when_no_two_ranks_are_equal() -> None:
    spec = ProjectSpec(
        id="bag",
        tasks=tuple(_task(f"t{i}", 10 + i, 10 + (7 * i) % 5) for i in range(9)),
        agents=(AgentGroup(count=2),),
    )
    by_index = list_schedule(spec, lambda t: t.estimate or 1.0)
    assert all(
        list_schedule(spec, lambda t: t.estimate or 1.0, tie_seed=k) == by_index for k in range(4)
    )


def test_a_workflow_tasks_kind_is_its_program_and_its_estimate_that_programs_mean() -> None:
    tasks = wf_workflow("Cycles", 250, seed=18)
    kinds = {t.kind for t in tasks}
    assert {"cycles", "cycles_plots", "cycles_output_summary", "baseline_cycles"} <= kinds
    for kind in kinds:
        mine = [t for t in tasks if t.kind == kind]
        assert all(t.id.startswith(kind + "_") for t in mine)
        mean = sum(t.duration or 0.0 for t in mine) / len(mine)
        assert all(abs((t.estimate or 0.0) - mean) < 1e-6 * max(1.0, mean) for t in mine)
