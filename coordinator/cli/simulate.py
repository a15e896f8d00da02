"""``workhive simulate``: simulation with the production scheduler.

The simulator and the heuristic policies are deterministic; the ``default``
policy's CP-SAT plan is not when its wall-clock time box (``--time-box``, two
search workers) cuts the search short: use ``--time-box 0`` or a heuristic
``--policy`` for reproducible numbers (docs/design.md, "Determinism").

``register(app)`` adds the command. One result per (file, agent count): a rich
table on stdout, or with ``--json`` one JSON object per line. Bad input: an
error naming file, task and field on stderr, exit code 1; bad flags: 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from workhive.coordinator.project_files import BestKnown, load_best_known, load_project, load_stg
from workhive.coordinator.scheduling import (
    POLICIES,
    PlannerConfig,
    ProjectError,
    SchedulerConfig,
    SimConfig,
    SimResult,
    simulate,
)

__all__ = ["register", "result_record"]

_STG_DEFAULT_AGENTS = (2, 4, 8, 16)


def _best_known(
    path: Path, agents: int, cache: dict[Path, dict[tuple[str, int], BestKnown]]
) -> BestKnown | None:
    root = path.resolve().parent.parent
    if not (root / "Optimal_values").is_dir():
        return None
    if root not in cache:
        cache[root] = load_best_known(root)
    return cache[root].get((f"{path.resolve().parent.name}/{path.name}", agents))


def result_record(file: str, r: SimResult, best: BestKnown | None) -> dict[str, Any]:
    """The JSON object printed for one simulation."""
    rec: dict[str, Any] = {
        "file": file,
        "project": r.project,
        "agents": r.agents,
        "slots": r.lanes,
        "policy": r.policy,
        "stealing": r.stealing,
        "makespan": round(r.makespan, 6),
        "lower_bound": round(r.lower_bound, 6),
        "ratio_to_lower_bound": round(r.ratio, 6),
        "critical_path": round(r.critical_path, 6),
        "total_work": round(r.total_work, 6),
        "steals": r.steals,
        "utilization": round(r.utilization, 6),
        "plan": r.plan_method,
        "planned_makespan": r.planned_makespan,
        "plan_proved_optimal": r.plan_optimal,
        "replans": r.replans,
        "outcome": r.outcome,
    }
    if best is not None:
        rec["best_known"] = best.value
        rec["best_known_proven"] = best.proven
        rec["ratio"] = round(r.makespan / best.value, 6) if best.value else None
    return rec


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to ``app``."""

    @app.command("simulate")
    def simulate_cmd(
        files: list[Path] = typer.Argument(None, help="Project files (YAML or JSON)."),
        stg: list[Path] = typer.Option(
            None, "--stg", help="Standard Task Graph files (repeatable)."
        ),
        agents: list[int] = typer.Option(
            None,
            "--agents",
            "-n",
            help="Agent count (repeatable). Default: the file's agents; 2,4,8,16 for --stg.",
        ),
        policy: str = typer.Option("default", "--policy", "-p", help="/".join(POLICIES)),
        no_stealing: bool = typer.Option(False, "--no-stealing", help="Disable work stealing."),
        seed: int = typer.Option(0, "--seed", help="Seed of the duration noise."),
        noise: float = typer.Option(
            0.0, "--noise", help="Sigma of log-normal noise on real durations (0: exact)."
        ),
        slots: int = typer.Option(1, "--slots", help="Slots per agent when --agents is given."),
        prefetch: int = typer.Option(1, "--prefetch", help="Prefetch queue length per agent."),
        speeds: str = typer.Option(
            "",
            "--speeds",
            help="How much longer each agent takes, e.g. 2,1,1,1: agent i gets the "
            "(i mod count)-th factor (default: all 1). The scheduler learns them.",
        ),
        time_box: float = typer.Option(
            2.0, "--time-box", help="CP-SAT planning time box in seconds (0: heuristic only)."
        ),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    ) -> None:
        """Simulate projects on N agents with the production scheduler.

        Reproducible with --time-box 0 or a heuristic --policy; the default
        policy's CP-SAT plan depends on wall-clock time when the box binds.
        """
        err = typer.echo
        if policy not in POLICIES:
            err(f"error: unknown policy {policy!r} (choose {', '.join(POLICIES)})", err=True)
            raise typer.Exit(2)
        if not files and not stg:
            err("error: give at least one FILE or --stg FILE", err=True)
            raise typer.Exit(2)
        if any(a < 1 for a in agents or ()) or slots < 1 or prefetch < 0 or noise < 0:
            err("error: --agents and --slots must be >= 1, --prefetch and --noise >= 0", err=True)
            raise typer.Exit(2)
        try:
            factors = tuple(float(x) for x in speeds.split(",")) if speeds else ()
        except ValueError:
            factors = (0.0,)
        if any(f <= 0 for f in factors):
            err(
                f"error: --speeds takes positive numbers separated by commas, not {speeds!r}",
                err=True,
            )
            raise typer.Exit(2)
        sched = SchedulerConfig(policy=policy, stealing_enabled=not no_stealing)
        planner = PlannerConfig(time_box=time_box)
        jobs: list[tuple[Path, bool]] = [(f, False) for f in files or ()]
        jobs += [(f, True) for f in stg or ()]
        cache: dict[Path, dict[tuple[str, int], BestKnown]] = {}
        records: list[dict[str, Any]] = []
        failed = False
        for path, is_stg in jobs:
            try:
                spec = load_stg(path) if is_stg else load_project(path)
            except ProjectError as exc:
                err(f"error: {exc}", err=True)
                failed = True
                continue
            counts: list[int | None] = list(agents or ())
            if not counts:
                counts = list(_STG_DEFAULT_AGENTS) if is_stg else [None]
            for n in counts:
                cfg = SimConfig(
                    agents=n,
                    slots=slots,
                    prefetch=prefetch,
                    noise=noise,
                    seed=seed,
                    speeds=factors,
                    scheduler=sched,
                    planner=planner,
                )
                r = simulate(spec, cfg)
                best = (
                    _best_known(path, r.agents, cache) if is_stg and r.lanes == r.agents else None
                )
                rec = result_record(str(path), r, best)
                records.append(rec)
                if as_json:
                    sys.stdout.write(json.dumps(rec) + "\n")
                    sys.stdout.flush()
        if not as_json and records:
            _table(records)
        if failed:
            raise typer.Exit(1)


def _table(records: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="workhive simulate")
    for col in (
        "file",
        "agents",
        "policy",
        "makespan",
        "lower bound",
        "best known",
        "ratio",
        "steals",
        "util",
        "plan",
    ):
        t.add_column(col, justify="left" if col in ("file", "policy", "plan") else "right")
    for r in records:
        ratio = r.get("ratio", r["ratio_to_lower_bound"])
        t.add_row(
            r["file"],
            str(r["agents"]),
            r["policy"] + ("" if r["stealing"] else " (no steal)"),
            f"{r['makespan']:g}",
            f"{r['lower_bound']:g}",
            str(r.get("best_known", "-")),
            f"{ratio:.4f}",
            str(r["steals"]),
            f"{r['utilization']:.1%}",
            r["plan"] + (" (optimal)" if r["plan_proved_optimal"] else ""),
        )
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(t)
