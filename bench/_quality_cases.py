"""Cases of the quality benchmark (``python -m bench.quality``) and its references.

Every case is a ``ProjectSpec`` whose tasks carry an ``estimate`` (what the
scheduler sees) and a ``duration`` (what the simulated task really takes), plus
the agent groups it runs on. Generators are seeded (``random.Random``), so the
same seed gives the same cases. References, computed on the real durations:

- ``lower_bound``: max(critical path, work / slots, for every capability the
  work needing it / the slots having it);
- ``list_schedule``: online list scheduling (a free slot takes the
  highest-ranked ready task it may run, preferring tasks that need one of its
  capabilities), ranked by upward rank over ``durations``: the estimates give
  the plain online baseline, the real durations the clairvoyant reference;
  ``tie_seed`` breaks ties between equal ranks at random instead of by index
  (how much of a result is the luck of which equal-looking task went first).

``forward_list_schedule`` is the same online list scheduler told what the
running tasks imply (experiment of issue 18): a ready task that feeds a join
whose other inputs end later has that much slack, and its key drops by it;
running tasks end at their real end (``"oracle"``, more than any leader can
know) or at their expected end given the time they have run (``"elapsed"``,
log-normal with the case's sigma). ``redraw`` gives a generated case new
real durations (same graph, same estimates, same noise level) to measure
expected figures rather than one draw; ``critical_chain`` explains a
simulated schedule: the chain of tasks that ended last, each with how long it
waited after its last dependency.
"""

from __future__ import annotations

import heapq
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from workhive.coordinator.model import AgentGroup, ProjectSpec, TaskSpec
from workhive.coordinator.scheduling import analyse

WF_RECIPES = (
    "Montage",
    "Epigenomics",
    "Genome",
    "Cycles",
    "Seismology",
    "Blast",
    "Bwa",
    "Soykb",
    "Srasearch",
)


@dataclass(frozen=True, slots=True)
class Case:
    """One benchmark case: a family name, a label and the project."""

    family: str
    name: str
    spec: ProjectSpec
    sigma: float = 0.0


def layered_dag(
    rng: random.Random,
    n: int,
    sigma: float,
    gpu_share: float = 0.0,
    priorities: bool = False,
    width: tuple[int, int] = (4, 30),
) -> list[TaskSpec]:
    """A random layered DAG of ``n`` tasks; each task depends on 1-3 tasks of
    the previous two layers; estimates 1-100 s, real = estimate x
    exp(N(0, sigma)); ``gpu_share`` of them require ``gpu``."""
    layers: list[list[str]] = []
    tasks: list[TaskSpec] = []
    i = 0
    while i < n:
        w = min(n - i, rng.randint(*width))
        layer = []
        for _ in range(w):
            tid = f"t{i}"
            i += 1
            pool = [x for lay in layers[-2:] for x in lay]
            deps = (
                tuple(sorted(set(rng.sample(pool, min(len(pool), rng.randint(1, 3))))))
                if pool
                else ()
            )
            est = float(rng.randint(1, 100))
            gpu = rng.random() < gpu_share
            prio = 5
            if priorities:
                prio = rng.choice((3, 5, 5, 5, 7, 9))
            tasks.append(
                TaskSpec(
                    id=tid,
                    depends_on=deps,
                    estimate=est,
                    duration=est * math.exp(sigma * rng.gauss(0.0, 1.0)),
                    requires=frozenset({"gpu"}) if gpu else frozenset(),
                    kind="gpu" if gpu else "cpu",
                    priority=prio,
                )
            )
            layer.append(tid)
        layers.append(layer)
    return tasks


def gpu_cases(count: int, seed: int) -> list[Case]:
    """6 plain + 2 ``gpu`` agents; 150-400 tasks, 15 % need gpu; priorities."""
    rng = random.Random(seed)
    out = []
    for k in range(count):
        n = rng.randint(150, 400)
        sigma = rng.uniform(0.2, 0.8)
        tasks = layered_dag(rng, n, sigma, gpu_share=0.15, priorities=True)
        groups = (AgentGroup(count=6), AgentGroup(count=2, capabilities=frozenset({"gpu"})))
        spec = ProjectSpec(id=f"gpu{k}", tasks=tuple(tasks), agents=groups)
        out.append(Case("gpu 6+2", f"gpu{k} n={n} s={sigma:.2f}", spec, sigma))
    return out


def random_cases(count: int, seed: int) -> list[Case]:
    """Random layered DAGs, 300-1,000 tasks, 16 agents, uniform priority."""
    rng = random.Random(seed)
    out = []
    for k in range(count):
        n = rng.randint(300, 1000)
        sigma = rng.uniform(0.2, 0.8)
        tasks = layered_dag(rng, n, sigma, width=(8, 60))
        spec = ProjectSpec(id=f"rnd{k}", tasks=tuple(tasks), agents=(AgentGroup(count=16),))
        out.append(Case("random 16", f"rnd{k} n={n} s={sigma:.2f}", spec, sigma))
    return out


def wf_workflow(recipe: str, n: int, seed: int) -> list[TaskSpec]:
    """A workflow generated from a WfCommons recipe: real = the generated
    runtime, estimate = the mean runtime of the task's kind. The kind is the
    task's program: its name without the numeric id (``cycles_plots`` for
    ``cycles_plots_00000133``). WfCommons 1.6 leaves ``category`` empty; the
    first word of the name, used before, lumped programs together
    (``cycles_plots`` with ``cycles``, ``bwa_index`` with ``bwa``)."""
    import numpy as np
    from wfcommons import WorkflowGenerator
    from wfcommons.wfchef import recipes

    random.seed(seed)
    np.random.seed(seed)
    cls = getattr(recipes, f"{recipe}Recipe")
    wf = WorkflowGenerator(cls.from_num_tasks(n)).build_workflow()
    names = sorted(wf.nodes)
    real = {x: max(0.01, float(wf.tasks[x].runtime or 0.0)) for x in names}
    kind = {x: str(wf.tasks[x].category or re.sub(r"_\d+$", "", x)) for x in names}
    sums: dict[str, list[float]] = {}
    for x in names:
        sums.setdefault(kind[x], []).append(real[x])
    mean = {k: sum(v) / len(v) for k, v in sums.items()}
    return [
        TaskSpec(
            id=x,
            depends_on=tuple(sorted(wf.predecessors(x))),
            estimate=mean[kind[x]],
            duration=real[x],
            kind=kind[x],
        )
        for x in names
    ]


def wf_cases(sizes: tuple[int, ...], agents: tuple[int, ...], seed: int) -> list[Case]:
    """Every recipe x size x agent count."""
    out = []
    for recipe in WF_RECIPES:
        for n in sizes:
            tasks = tuple(wf_workflow(recipe, n, seed))
            for m in agents:
                spec = ProjectSpec(
                    id=f"{recipe}-{n}-{m}", tasks=tasks, agents=(AgentGroup(count=m),)
                )
                out.append(Case(f"wf {m}", f"{recipe} n={len(tasks)} m={m}", spec))
    return out


def _agents(spec: ProjectSpec) -> list[frozenset[str]]:
    return [g.capabilities for g in spec.agents for _ in range(g.count * g.slots)]


def real_durations(spec: ProjectSpec) -> list[float]:
    """The real duration of each task."""
    return [t.duration if t.duration is not None else (t.estimate or 1.0) for t in spec.tasks]


def lower_bound(spec: ProjectSpec) -> float:
    """max(critical path, work / slots, per capability: its work / its slots)."""
    real = real_durations(spec)
    an = analyse(spec, real)
    lanes = _agents(spec)
    lb = max(an.critical_path_length, an.total_work / len(lanes))
    caps = set().union(*lanes)
    for c in caps:
        work = sum(d for t, d in zip(spec.tasks, real, strict=True) if c in t.requires)
        have = sum(1 for ln in lanes if c in ln)
        if work:
            lb = max(lb, work / have)
    return lb


def _pop_ending(heap: list[tuple[float, int, int]]) -> tuple[float, list[tuple[int, int]]]:
    """The earliest end time in ``heap`` and every (task, lane) ending then, popped."""
    now, i, li = heapq.heappop(heap)
    out = [(i, li)]
    while heap and heap[0][0] == now:
        _, j, lj = heapq.heappop(heap)
        out.append((j, lj))
    return now, out


def _pick(spec: ProjectSpec, ready: list[int], caps: frozenset[str]) -> int | None:
    """The first of ``ready`` (in rank order) a slot with ``caps`` may run,
    preferring a task that needs one of its capabilities."""
    tasks = spec.tasks
    pick = next((i for i in ready if tasks[i].requires and tasks[i].requires <= caps), None)
    if pick is None:
        pick = next((i for i in ready if tasks[i].requires <= caps), None)
    return pick


def list_schedule(
    spec: ProjectSpec, durations: Callable[[TaskSpec], float], tie_seed: int | None = None
) -> float:
    """Makespan of online capability-aware list scheduling ranked by ``durations``
    (tasks run for their real durations); equal ranks go in index order, or in
    an order drawn from ``tie_seed``."""
    real = real_durations(spec)
    an = analyse(spec, durations)
    if tie_seed is not None:
        rng = random.Random(tie_seed)
        an = replace(an, rank=[r * (1.0 + 1e-9 * rng.random()) for r in an.rank])
    lanes = _agents(spec)
    n = len(spec.tasks)
    waiting = [len(p) for p in an.parents]
    ready: list[int] = [i for i in range(n) if waiting[i] == 0]
    free = sorted(range(len(lanes)), key=lambda li: (len(lanes[li]), li))
    running: list[tuple[float, int, int]] = []
    now, done = 0.0, 0
    while done < n:
        ready.sort(key=lambda i: (-an.rank[i], i))
        still = []
        for li in free:
            pick = _pick(spec, ready, lanes[li])
            if pick is None:
                still.append(li)
                continue
            ready.remove(pick)
            heapq.heappush(running, (now + real[pick], pick, li))
        free = still
        now, finished = _pop_ending(running)
        for i, li in finished:
            done += 1
            free.append(li)
            for c in an.children[i]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    ready.append(c)
        free.sort(key=lambda x: (len(lanes[x]), x))
    return now


def _expected_end(estimate: float, sigma: float, elapsed: float) -> float:
    """E[X | X > elapsed] for X = estimate x exp(sigma Z): what a task that has
    run ``elapsed`` seconds is expected to take in all."""
    if sigma <= 0:
        return max(estimate, elapsed)
    mean = estimate * math.exp(sigma * sigma / 2)
    if elapsed <= 0:
        return mean
    z = math.log(elapsed / estimate) / sigma
    tail = 0.5 * math.erfc(z / math.sqrt(2))
    if tail < 1e-12:
        return elapsed
    return max(elapsed, mean * 0.5 * math.erfc((z - sigma) / math.sqrt(2)) / tail)


def forward_list_schedule(spec: ProjectSpec, running: str, sigma: float = 0.0) -> float:
    """Makespan of online list scheduling ranked by estimates, where a ready
    task's key is its upward rank less the slack it has at a join whose other
    inputs end later (ends of running tasks: ``"oracle"`` real, ``"elapsed"``
    expected given elapsed time; not started: earliest start + estimate).
    Plain ``list_schedule`` on one capability-free group is the same with no
    slack. O(tasks + edges) per decision: for the benchmark's sizes only."""
    real = real_durations(spec)
    an = analyse(spec)
    est = an.weight
    lanes = _agents(spec)
    n = len(spec.tasks)
    waiting = [len(p) for p in an.parents]
    ready = [i for i in range(n) if waiting[i] == 0]
    free = sorted(range(len(lanes)), key=lambda li: (len(lanes[li]), li))
    busy: list[tuple[float, int, int]] = []
    started: dict[int, float] = {}
    finished = [False] * n
    now, done = 0.0, 0
    while done < n:
        end = [0.0] * n
        for i in an.order:
            if finished[i]:
                end[i] = -math.inf
            elif i in started:
                el = now - started[i]
                d = real[i] if running == "oracle" else _expected_end(est[i], sigma, el)
                end[i] = started[i] + d
            else:
                end[i] = max([now, *(end[p] for p in an.parents[i])]) + est[i]
        key: dict[int, float] = {}
        for x in ready:
            best = est[x]
            for c in an.children[x]:
                gate = max((end[p] for p in an.parents[c] if p != x), default=-math.inf)
                best = max(best, est[x] + an.rank[c] - max(0.0, gate - now - est[x]))
            key[x] = best
        ready.sort(key=lambda i: (-key[i], i))
        still = []
        for li in free:
            pick = _pick(spec, ready, lanes[li])
            if pick is None:
                still.append(li)
                continue
            ready.remove(pick)
            started[pick] = now
            heapq.heappush(busy, (now + real[pick], pick, li))
        free = still
        now, ended = _pop_ending(busy)
        for i, li in ended:
            done += 1
            finished[i] = True
            del started[i]
            free.append(li)
            for c in an.children[i]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    ready.append(c)
        free.sort(key=lambda x: (len(lanes[x]), x))
    return now


def redraw(case: Case, draw: int) -> Case:
    """``case`` with real durations drawn again (``draw`` 0: the case itself):
    estimate x exp(N(0, sigma)), seeded by the case's name and ``draw``.
    Only for generated cases (``sigma`` > 0)."""
    if draw == 0 or case.sigma <= 0:
        return case
    rng = random.Random(f"{case.name}/{draw}")
    tasks = tuple(
        replace(t, duration=(t.estimate or 1.0) * math.exp(case.sigma * rng.gauss(0.0, 1.0)))
        for t in case.spec.tasks
    )
    return replace(case, name=f"{case.name} d{draw}", spec=replace(case.spec, tasks=tasks))


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One task of a schedule's critical chain: when it ran and how long it
    waited after its last dependency ended (0 for a task that started at once)."""

    task: str
    kind: str
    estimate: float
    real: float
    start: float
    end: float
    waited: float


def critical_chain(
    spec: ProjectSpec, schedule: tuple[tuple[str, str, float, float], ...]
) -> list[ChainLink]:
    """The chain behind a simulated makespan (``SimResult.schedule``): from the
    task that ended last back through the dependency that ended last, first
    task first. A link's ``waited`` is time lost to ordering (the task was
    ready, a slot went to other work); the rest of the makespan is the chain's
    own durations."""
    an = analyse(spec)
    real = real_durations(spec)
    ran = {an.index[tid]: (begin, end) for tid, _, begin, end in schedule}
    if not ran:
        return []
    i = max(ran, key=lambda j: ran[j][1])
    out: list[ChainLink] = []
    while True:
        begin, end = ran[i]
        ready = max((ran[p][1] for p in an.parents[i]), default=0.0)
        t = spec.tasks[i]
        out.append(
            ChainLink(t.id, t.kind, t.estimate or 1.0, real[i], begin, end, max(0.0, begin - ready))
        )
        if not an.parents[i]:
            return out[::-1]
        i = max(an.parents[i], key=lambda p: ran[p][1])


def without_noise(spec: ProjectSpec) -> ProjectSpec:
    """The same project with estimates equal to the real durations."""
    return replace(spec, tasks=tuple(replace(t, estimate=t.duration) for t in spec.tasks))
