"""Agent speeds (``scheduling/agent_speeds.py``): how much longer than predicted
each agent's tasks take, learned from completions, and a free slot of a
faster agent taken first (``default`` policy)."""

from __future__ import annotations

import math

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey, TaskSpec
from workhive.coordinator.scheduling import (
    AgentJoined,
    AssignTask,
    ProjectSubmitted,
    SchedulerConfig,
    SchedulerState,
    SimConfig,
    TaskSucceeded,
    simulate,
)
from workhive.coordinator.scheduling.agent_speeds import AgentSpeeds


def _fleet(ratios: dict[str, float], rounds: int) -> AgentSpeeds:
    """Each agent finishes ``rounds`` tasks predicted at 10 s, taking ``ratio`` x 10 s
    (alternately 20 % over and under, the same for every agent)."""
    s = AgentSpeeds()
    for r in range(rounds):
        wobble = 1.2 if r % 2 else 1 / 1.2
        for agent, ratio in ratios.items():
            s.observe(agent, 10.0, 10.0 * ratio * wobble)
    return s


def test_agents_twice_as_slow_as_the_others_are_classed_slower_and_the_others_faster() -> None:
    s = _fleet({"fast1": 1.0, "fast2": 1.0, "slow1": 2.0, "slow2": 2.0}, rounds=10)
    assert [s.klass(a) for a in ("fast1", "fast2", "slow1", "slow2")] == [-1, -1, 1, 1]
    assert s.factor("slow1") / s.factor("fast1") > 1.5


def test_equal_agents_with_the_same_noise_are_all_typical() -> None:
    s = _fleet({"a": 1.0, "b": 1.0, "c": 1.0}, rounds=20)
    assert [s.klass(a) for a in "abc"] == [0, 0, 0]


def test_an_agent_with_one_completion_is_typical_however_long_it_took() -> None:
    s = _fleet({"a": 1.0, "b": 1.0}, rounds=10)
    s.observe("new", 10.0, 80.0)
    assert s.klass("new") == 0


def test_a_long_run_of_an_agent_is_shrunk_towards_the_fleet() -> None:
    s = _fleet({"a": 1.0, "b": 1.0, "slow": 2.0}, rounds=2)
    few = s.offset("slow")
    s = _fleet({"a": 1.0, "b": 1.0, "slow": 2.0}, rounds=40)
    assert 0 < few < s.offset("slow") < math.log(2.0)


def test_nonpositive_figures_are_ignored() -> None:
    s = AgentSpeeds()
    s.observe("a", 0.0, 5.0)
    s.observe("a", 5.0, 0.0)
    assert s.n == 0 and s.klass("a") == 0


def _agent(aid: str) -> AgentInfo:
    return AgentInfo(id=aid, slots=1, prefetch=0)


def test_a_free_slot_of_a_faster_agent_is_taken_before_one_of_an_earlier_slower_agent() -> None:
    state = SchedulerState(SchedulerConfig(stealing_enabled=False))
    state.speeds = _fleet({"slow": 2.0, "fast": 1.0, "c": 1.0}, rounds=10)
    first = ProjectSpec("p", tuple(TaskSpec(id=f"w{i}", estimate=10.0) for i in range(2)))
    cmds = state.handle(AgentJoined(_agent("slow"), 0), AgentJoined(_agent("fast"), 0))
    cmds = state.handle(ProjectSubmitted(first, 0))
    assert {c.agent_id for c in cmds if isinstance(c, AssignTask)} == {"slow", "fast"}
    cmds = state.handle(
        TaskSucceeded(TaskKey("p", "w0"), "slow", 20.0, 20),
        TaskSucceeded(TaskKey("p", "w1"), "fast", 10.0, 20),
    )
    nxt = ProjectSpec("q", (TaskSpec(id="x", estimate=10.0),))
    assert state.handle(ProjectSubmitted(nxt, 20)) == [
        AssignTask(TaskKey("q", "x"), "fast", 1, True)
    ]


def test_the_simulator_runs_each_agents_tasks_at_its_speed_and_bounds_with_them() -> None:
    chain = ProjectSpec(
        "c", (TaskSpec(id="a", duration=1.0), TaskSpec(id="b", duration=1.0, depends_on=("a",)))
    )
    r = simulate(chain, SimConfig(agents=1, speeds=(2.0,), planner=None))
    assert r.makespan == 4.0
    assert r.lower_bound == 4.0


def test_a_fleet_whose_first_agents_are_slow_learns_to_give_the_chain_to_the_fast_ones() -> None:
    """Half the agents take twice as long, and they joined first (so they
    win every tie without speeds): the critical path moves to the fast half."""
    tasks = [TaskSpec(id="t0", estimate=10.0, duration=10.0)]
    for i in range(1, 60):
        tasks.append(TaskSpec(id=f"t{i}", estimate=10.0, duration=10.0, depends_on=(f"t{i - 1}",)))
        tasks.append(TaskSpec(id=f"side{i}", estimate=10.0, duration=10.0))
    spec = ProjectSpec("p", tuple(tasks))

    def makespan(learn: bool) -> float:
        scheduler = SchedulerConfig(agent_speeds=learn)
        cfg = SimConfig(agents=4, speeds=(2.0, 2.0, 1.0, 1.0), planner=None, scheduler=scheduler)
        return simulate(spec, cfg).makespan

    assert makespan(True) < 0.8 * makespan(False)


def test_the_speeds_benchmark_reports_every_fleet_and_shape_and_equal_fleets_lose_nothing() -> None:
    from bench.speeds import FLEETS, SHAPES, run, summarise

    rows = run(count=1, seed=3)
    assert {(r["fleet"], r["shape"]) for r in rows} == {(f, s) for f in FLEETS for s in SHAPES}
    assert all(r["learned"] == r["blind"] for r in rows if r["fleet"] == "equal")
    assert len(summarise(rows)) == len(FLEETS) * len(SHAPES)
