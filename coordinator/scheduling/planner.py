"""Planning: a whole-project schedule on named agents, exact when small.

``plan_project`` first builds heuristic schedules (HEFT-style: tasks by
upward rank, each on the eligible slot giving the earliest start; and
non-delay list scheduling by upward rank) and keeps the shorter,
then, for projects of at most ``PlannerConfig.max_tasks`` tasks on at most
``max_lanes`` slots, improves it with OR-Tools CP-SAT inside a time box:
interval per task, precedences, one cumulative per capability group (capacity
= its slots; tasks eligible for several groups get optional intervals), and
minimise the makespan, hinted with the heuristic and bounded below by
max(critical path, work / slots). Larger projects get ``None``: the state
machine's heuristic policy applies. The solver is the only expensive call;
drivers run it off their event loop and pass the ``Plan`` in
``ProjectSubmitted``/``PlanUpdated``. Deterministic for ``workers=1`` (CP-SAT
with a fixed seed); with more workers and a binding time box it may vary.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskSpec
from workhive.coordinator.scheduling.graph import GraphAnalysis, analyse
from workhive.coordinator.scheduling.planner_types import Plan, PlannedTask

__all__ = ["PlannerConfig", "list_schedule", "nondelay_schedule", "plan_project", "starts_at_once"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannerConfig:
    """Knobs of ``plan_project``.

    Attributes:
        time_box: CP-SAT wall-clock limit in seconds (0 disables the solver).
        workers: CP-SAT search workers (2 suits a 2-core machine).
        max_tasks: larger projects are not planned (heuristic at run time).
        max_lanes: more total slots than this: not planned.
        resolution: CP-SAT works in integers; non-integral durations are scaled
            so the longest maps to about this many units.
        seed: CP-SAT random seed.
    """

    time_box: float = 2.0
    workers: int = 2
    max_tasks: int = 500
    max_lanes: int = 64
    resolution: int = 1000
    seed: int = 0


@dataclass(frozen=True, slots=True)
class _Lane:
    agent: str
    caps: frozenset[str]


def _lanes(agents: Sequence[AgentInfo]) -> list[_Lane]:
    return [_Lane(a.id, a.capabilities) for a in agents for _ in range(max(1, a.slots))]


def list_schedule(
    spec: ProjectSpec,
    agents: Sequence[AgentInfo],
    durations: Callable[[TaskSpec], float] | None = None,
    analysis: GraphAnalysis | None = None,
) -> Plan:
    """Heuristic plan: by upward rank, earliest start over eligible slots.

    Raises ValueError when some task has no capable agent."""
    an = analysis or analyse(spec, durations)
    lanes = _lanes(agents)
    topo = {t: i for i, t in enumerate(an.order)}
    order = sorted(range(len(an.ids)), key=lambda i: (-an.rank[i], topo[i]))
    free = [0.0] * len(lanes)
    start = [0.0] * len(an.ids)
    finish = [0.0] * len(an.ids)
    lane_of = [0] * len(an.ids)
    for i in order:
        req = spec.tasks[i].requires
        est = max((finish[p] for p in an.parents[i]), default=0.0)
        best, best_s = -1, math.inf
        for li, ln in enumerate(lanes):
            if req <= ln.caps:
                s = max(est, free[li])
                if s < best_s:
                    best, best_s = li, s
        if best < 0:
            raise ValueError(f"task {an.ids[i]!r}: no agent has {sorted(req)}")
        start[i], finish[i] = best_s, best_s + an.weight[i]
        lane_of[i] = best
        free[best] = finish[i]
    return _make_plan(spec, an, lanes, start, finish, lane_of, "heuristic", "", False)


def nondelay_schedule(
    spec: ProjectSpec,
    agents: Sequence[AgentInfo],
    durations: Callable[[TaskSpec], float] | None = None,
    analysis: GraphAnalysis | None = None,
) -> Plan:
    """Heuristic plan: whenever a slot is free, the highest-ranked ready task
    it may run starts (what the ``critical-path`` policy does live)."""
    an = analysis or analyse(spec, durations)
    lanes = _lanes(agents)
    n = len(an.ids)
    topo = {t: i for i, t in enumerate(an.order)}
    waiting = [len(p) for p in an.parents]
    ready = sorted((i for i in range(n) if waiting[i] == 0), key=lambda i: (-an.rank[i], topo[i]))
    start = [0.0] * n
    finish = [0.0] * n
    lane_of = [0] * n
    free = list(range(len(lanes)))
    running: list[tuple[float, int, int]] = []
    now = 0.0
    done = 0
    while done < n:
        for li in sorted(free):
            pick = next((i for i in ready if spec.tasks[i].requires <= lanes[li].caps), None)
            if pick is None:
                continue
            ready.remove(pick)
            free.remove(li)
            start[pick], finish[pick], lane_of[pick] = now, now + an.weight[pick], li
            heapq.heappush(running, (finish[pick], topo[pick], pick))
        if not running:
            raise ValueError("some task has no capable agent")
        now = running[0][0]
        while running and running[0][0] <= now:
            _, _, i = heapq.heappop(running)
            done += 1
            free.append(lane_of[i])
            for c in an.children[i]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    ready.append(c)
        ready.sort(key=lambda i: (-an.rank[i], topo[i]))
    return _make_plan(spec, an, lanes, start, finish, lane_of, "heuristic", "", False)


def _make_plan(
    spec: ProjectSpec,
    an: GraphAnalysis,
    lanes: Sequence[_Lane],
    start: Sequence[float],
    finish: Sequence[float],
    lane_of: Sequence[int],
    method: str,
    status: str,
    optimal: bool,
) -> Plan:
    topo = {t: i for i, t in enumerate(an.order)}
    seqs: dict[str, list[int]] = {}
    for ln in lanes:
        seqs.setdefault(ln.agent, [])
    for i in range(len(an.ids)):
        seqs[lanes[lane_of[i]].agent].append(i)
    sequences = {
        a: tuple(an.ids[i] for i in sorted(ix, key=lambda i: (start[i], topo[i])))
        for a, ix in seqs.items()
    }
    tasks = {
        an.ids[i]: PlannedTask(lanes[lane_of[i]].agent, start[i], finish[i])
        for i in range(len(an.ids))
    }
    return Plan(
        project_id=spec.id,
        tasks=tasks,
        sequences=sequences,
        makespan=max(finish, default=0.0),
        lower_bound=an.lower_bound(len(lanes)),
        optimal=optimal,
        method=method,
        status=status,
    )


def starts_at_once(spec: ProjectSpec, agents: Sequence[AgentInfo]) -> bool:
    """No task waits on another or needs a capability, and there are no more
    tasks than slots: any plan starts each task at once on a slot of its own,
    as the scheduler's own policy does, so planning it gains nothing."""
    independent = all(not t.depends_on and not t.requires for t in spec.tasks)
    return independent and len(spec.tasks) <= sum(a.slots for a in agents)


def plan_project(
    spec: ProjectSpec,
    agents: Sequence[AgentInfo],
    durations: Callable[[TaskSpec], float] | None = None,
    config: PlannerConfig | None = None,
) -> Plan | None:
    """Plan ``spec`` on ``agents``; ``None`` when too large (or no agents)."""
    cfg = config or PlannerConfig()
    lanes = _lanes(agents)
    if not lanes or len(spec.tasks) > cfg.max_tasks or len(lanes) > cfg.max_lanes:
        return None
    an = analyse(spec, durations)
    try:
        heur = min(
            (
                list_schedule(spec, agents, durations, an),
                nondelay_schedule(spec, agents, durations, an),
            ),
            key=lambda p: p.makespan,
        )
    except ValueError:
        return None
    lb = an.lower_bound(len(lanes))
    if heur.makespan <= lb + 1e-9:
        return Plan(
            project_id=heur.project_id,
            tasks=heur.tasks,
            sequences=heur.sequences,
            makespan=heur.makespan,
            lower_bound=lb,
            optimal=True,
            method="heuristic",
            status="heuristic meets lower bound",
        )
    if cfg.time_box <= 0:
        return heur
    return _solve(spec, an, lanes, heur, cfg) or heur


def _scale(weights: Sequence[float], resolution: int) -> float:
    if all(abs(w - round(w)) < 1e-9 for w in weights):
        return 1.0
    top = max(weights, default=1.0)
    return resolution / top if top > 0 else 1.0


def _solve(
    spec: ProjectSpec, an: GraphAnalysis, lanes: Sequence[_Lane], heur: Plan, cfg: PlannerConfig
) -> Plan | None:
    from ortools.sat.python import cp_model  # heavy import, only when planning

    n = len(an.ids)
    sc = _scale(an.weight, cfg.resolution)
    dur = [round(w * sc) for w in an.weight]
    horizon = math.ceil(heur.makespan * sc) + 1
    # capability groups of lanes
    group_caps: list[frozenset[str]] = []
    lane_group: list[int] = []
    for ln in lanes:
        if ln.caps not in group_caps:
            group_caps.append(ln.caps)
        lane_group.append(group_caps.index(ln.caps))
    cap = [lane_group.count(g) for g in range(len(group_caps))]
    m = cp_model.CpModel()
    s = [m.new_int_var(0, horizon, f"s{i}") for i in range(n)]
    e = [m.new_int_var(0, horizon, f"e{i}") for i in range(n)]
    per_group: list[list[cp_model.IntervalVar]] = [[] for _ in group_caps]
    choice: list[list[tuple[int, cp_model.IntVar]]] = [[] for _ in range(n)]
    for i in range(n):
        req = spec.tasks[i].requires
        elig = [g for g, c in enumerate(group_caps) if req <= c]
        if len(elig) == 1:
            per_group[elig[0]].append(m.new_interval_var(s[i], dur[i], e[i], f"x{i}"))
        else:
            lits = []
            for g in elig:
                lit = m.new_bool_var(f"p{i}_{g}")
                per_group[g].append(
                    m.new_optional_interval_var(s[i], dur[i], e[i], lit, f"o{i}_{g}")
                )
                lits.append(lit)
                choice[i].append((g, lit))
            m.add_exactly_one(lits)
        for p in an.parents[i]:
            m.add(s[i] >= e[p])
    for g, ivs in enumerate(per_group):
        if ivs:
            m.add_cumulative(ivs, [1] * len(ivs), cap[g])
    mk = m.new_int_var(0, horizon, "makespan")
    m.add_max_equality(mk, e)
    lb = math.ceil(an.lower_bound(len(lanes)) * sc - 1e-6)
    m.add(mk >= min(lb, horizon))
    m.minimize(mk)
    for i in range(n):
        m.add_hint(s[i], round(heur.tasks[an.ids[i]].start * sc))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = cfg.time_box
    solver.parameters.num_workers = max(1, cfg.workers)
    solver.parameters.random_seed = cfg.seed
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    starts = [solver.value(v) for v in s]
    if solver.value(mk) >= round(heur.makespan * sc) and status != cp_model.OPTIMAL:
        return None
    # map group-level solution onto lanes: sweep by start time
    topo = {t: i for i, t in enumerate(an.order)}
    group_of = [0] * n
    for i in range(n):
        if choice[i]:
            group_of[i] = next(g for g, lit in choice[i] if solver.boolean_value(lit))
        else:
            req = spec.tasks[i].requires
            group_of[i] = next(g for g, c in enumerate(group_caps) if req <= c)
    lane_heaps: list[list[tuple[int, int]]] = [[] for _ in group_caps]
    for li, g in enumerate(lane_group):
        lane_heaps[g].append((0, li))
    for h in lane_heaps:
        heapq.heapify(h)
    lane_of = [0] * n
    for i in sorted(range(n), key=lambda i: (starts[i], dur[i] > 0, topo[i])):
        h = lane_heaps[group_of[i]]
        free_at, li = heapq.heappop(h)
        lane_of[i] = li
        heapq.heappush(h, (max(free_at, starts[i] + dur[i]), li))
    start = [v / sc for v in starts]
    finish = [start[i] + an.weight[i] for i in range(n)]
    optimal = status == cp_model.OPTIMAL
    return _make_plan(
        spec,
        an,
        lanes,
        start,
        finish,
        lane_of,
        "cp-sat",
        solver.status_name(status).lower(),
        optimal,
    )
