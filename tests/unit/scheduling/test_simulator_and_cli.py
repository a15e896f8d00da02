"""Simulator determinism and targets in miniature; the simulate CLI; exports."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import typer
from typer.testing import CliRunner

import workhive.coordinator.scheduling as sched
from tests.harness.stg_data import STG, needs_stg
from workhive.coordinator.cli.simulate import register
from workhive.coordinator.model import ProjectSpec, TaskSpec
from workhive.coordinator.project_files import load_stg
from workhive.coordinator.scheduling import (
    PlannerConfig,
    SchedulerConfig,
    SimConfig,
    simulate,
    skewed_start,
)


def layered(n: int = 60) -> ProjectSpec:
    return ProjectSpec(
        id="l",
        tasks=tuple(
            TaskSpec(id=f"t{i}", depends_on=(f"t{i - 7}",) if i >= 7 else (), estimate=1.0 + i % 5)
            for i in range(n)
        ),
    )


def test_simulation_is_deterministic_given_a_seed() -> None:
    cfg = SimConfig(agents=3, noise=0.5, seed=7, planner=None)
    assert simulate(layered(), cfg) == simulate(layered(), cfg)
    assert (
        simulate(layered(), cfg).makespan
        != simulate(layered(), SimConfig(agents=3, noise=0.5, seed=8, planner=None)).makespan
    )


def test_executed_schedule_respects_dependencies_and_slots() -> None:
    r = simulate(layered(), SimConfig(agents=3, noise=0.3, seed=1, record=True, planner=None))
    spec = layered()
    start = {t: s for t, _, s, _ in r.schedule}
    end = {t: e for t, _, _, e in r.schedule}
    assert r.outcome == "succeeded" and len(r.schedule) == len(spec.tasks)
    for t in spec.tasks:
        assert all(start[t.id] >= end[d] - 1e-9 for d in t.depends_on)
    by_agent: dict[str, list[tuple[float, float]]] = {}
    for _, a, s, e in r.schedule:
        by_agent.setdefault(a, []).append((s, e))
    for iv in by_agent.values():
        iv.sort()
        assert all(b[0] >= a[1] - 1e-9 for a, b in itertools.pairwise(iv))


def test_makespan_never_below_lower_bound() -> None:
    for pol in sched.POLICIES:
        r = simulate(
            layered(), SimConfig(agents=4, scheduler=SchedulerConfig(policy=pol), planner=None)
        )
        assert r.makespan >= r.lower_bound - 1e-9


@needs_stg
def test_planned_stg_run_matches_the_proven_optimum() -> None:
    spec = load_stg(STG / "50/rand0000.stg")
    r = simulate(spec, SimConfig(agents=4, planner=PlannerConfig(time_box=5, workers=1)))
    assert r.makespan == 66 and r.plan_optimal  # Case50_4_OPT: 66


def test_skewed_start_stealing_cuts_imbalance_by_more_than_half() -> None:
    before, after, moved = skewed_start(tasks=80, agents=8)
    assert moved > 0 and after < 0.5 * before


def test_no_stealing_means_no_steals() -> None:
    r = simulate(
        layered(),
        SimConfig(
            agents=4, prefetch=3, scheduler=SchedulerConfig(stealing_enabled=False), planner=None
        ),
    )
    assert r.steals == 0


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        pass

    return app


def test_cli_json_one_line_per_file_and_agent_count(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        "project: x\ntasks: [{id: a, estimate: 2}, {id: b, estimate: 3, depends_on: [a]}]\n"
    )
    res = CliRunner().invoke(
        cli(), ["simulate", str(f), "--agents", "1", "--agents", "2", "--json"]
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["agents"] for r in rows] == [1, 2]
    for r in rows:
        assert {"file", "agents", "policy", "makespan", "lower_bound", "steals"} <= r.keys()
        assert r["makespan"] == 5.0


def test_cli_speeds_make_an_agent_slower_and_the_bound_with_it(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        "project: x\ntasks: [{id: a, estimate: 2}, {id: b, estimate: 3, depends_on: [a]}]\n"
    )
    res = CliRunner().invoke(
        cli(), ["simulate", str(f), "--agents", "1", "--speeds", "2", "--time-box", "0", "--json"]
    )
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["makespan"] == 10.0 and row["lower_bound"] == 10.0


def test_cli_bad_speeds_exit_2_naming_them(tmp_path: Path) -> None:
    for bad in ("fast", "1,0", "-1"):
        res = CliRunner().invoke(cli(), ["simulate", "x.yaml", "--speeds", bad])
        assert res.exit_code == 2 and bad in res.stderr


def test_cli_bad_file_exits_1_naming_task_and_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("tasks: [{id: a, depends_on: [ghost]}]\n")
    res = CliRunner().invoke(cli(), ["simulate", str(f)])
    assert res.exit_code == 1
    assert "bad.yaml" in res.stderr and "'a'" in res.stderr and "depends_on" in res.stderr


def test_cli_usage_errors_exit_2() -> None:
    assert CliRunner().invoke(cli(), ["simulate"]).exit_code == 2
    assert CliRunner().invoke(cli(), ["simulate", "x.yaml", "--policy", "nope"]).exit_code == 2


def test_exported_members_are_exactly_the_public_api() -> None:
    public = {n for n in dir(sched) if not n.startswith("_")}
    modules = {
        "agent_pool",
        "agent_speeds",
        "config",
        "deadlines",
        "dispatch",
        "durations",
        "estimates",
        "event_handlers",
        "events",
        "graph",
        "growth",
        "loader",
        "metrics",
        "placement",
        "plan_following",
        "planner",
        "planner_types",
        "policies",
        "priorities",
        "ready_queues",
        "records",
        "retry_policy",
        "scarcity",
        "simulator",
        "state",
        "steal_application",
        "stealing",
        "stg",
        "transitions",
    }
    assert set(sched.__all__) == public - modules
    assert sorted(sched.__all__) == sched.__all__ or len(sched.__all__) == len(set(sched.__all__))
