"""Deterministic discrete-event simulator driving the production ``SchedulerState``.

Agents have slots, a prefetch queue and capabilities; each task's real
duration is its ``duration`` (else its estimate, else the configured default),
optionally multiplied by log-normal noise ``exp(N(0, noise))`` drawn from a
seeded splitmix64 generator defined here (no ``random``/``time`` imports in the
core; the estimates stay what the file says, so noise
models estimates being off). Events with the same timestamp are handed to the
scheduler together, as the leader's group commit would. Every command is
"executed" successfully. Same spec + config -> same result.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from workhive.coordinator.model import AgentInfo, ProjectSpec, TaskKey
from workhive.coordinator.scheduling.config import SchedulerConfig
from workhive.coordinator.scheduling.events import (
    AgentJoined,
    AssignTask,
    CancelTask,
    Command,
    Event,
    ProjectSubmitted,
    StartTask,
    StealTask,
    StealTick,
    TaskSucceeded,
)
from workhive.coordinator.scheduling.graph import analyse
from workhive.coordinator.scheduling.metrics import load_imbalance
from workhive.coordinator.scheduling.planner import PlannerConfig, plan_project
from workhive.coordinator.scheduling.policies import follows_plan
from workhive.coordinator.scheduling.state import SchedulerState

__all__ = ["SimConfig", "SimResult", "make_agents", "simulate", "skewed_start"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Simulation settings.

    Attributes:
        agents: number of agents; ``None`` uses the file's ``agents`` groups
            (else 4). When given, every agent gets every capability the
            project's groups declare.
        slots: slots per agent when ``agents`` is given.
        prefetch: prefetch queue length per agent.
        noise: sigma of the log-normal factor on real durations (0: exact).
        seed: seed of the noise.
        scheduler: the scheduler's configuration (policy, stealing...).
        planner: planner settings; ``None`` disables planning.
        record: keep the executed schedule in ``SimResult.schedule``.
        speeds: how long each agent takes relative to a task's real duration
            (agent ``i`` gets ``speeds[i % len(speeds)]``; 2.0: twice as long);
            empty: every agent 1.0. The lower bound accounts for them.
    """

    agents: int | None = None
    slots: int = 1
    prefetch: int = 1
    noise: float = 0.0
    seed: int = 0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    planner: PlannerConfig | None = field(default_factory=PlannerConfig)
    record: bool = False
    speeds: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if any(f <= 0 for f in self.speeds):
            raise ValueError("speeds must be > 0")


@dataclass(frozen=True, slots=True)
class SimResult:
    """Outcome of one simulation run (times in simulated seconds)."""

    project: str
    source: str
    agents: int
    lanes: int
    policy: str
    stealing: bool
    makespan: float
    lower_bound: float
    critical_path: float
    total_work: float
    steals: int
    steal_events: int
    utilization: float
    outcome: str
    plan_method: str
    planned_makespan: float | None
    plan_optimal: bool
    replans: int
    events: int
    schedule: tuple[tuple[str, str, float, float], ...] = ()

    @property
    def ratio(self) -> float:
        """makespan / lower bound."""
        return self.makespan / self.lower_bound if self.lower_bound > 0 else 1.0


class _SplitMix:
    """splitmix64: a tiny deterministic PRNG (same seed, same numbers everywhere)."""

    _MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        self.state = seed & self._MASK

    def uniform(self) -> float:
        """A float in (0, 1)."""
        self.state = (self.state + 0x9E3779B97F4A7C15) & self._MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self._MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self._MASK
        z ^= z >> 31
        return ((z >> 11) + 0.5) / float(1 << 53)

    def gauss(self) -> float:
        """A standard normal deviate (Box-Muller)."""
        u1, u2 = self.uniform(), self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _lower_bound(
    critical_path: float, work: float, agents: list[AgentInfo], speed: dict[str, float]
) -> float:
    """max(critical path on the fastest agent, work over every slot's rate)."""
    rate = sum(a.slots / speed[a.id] for a in agents)
    return max(critical_path * min(speed.values()), work / rate)


def make_agents(spec: ProjectSpec, cfg: SimConfig) -> list[AgentInfo]:
    """The simulated agents for ``spec`` under ``cfg``."""
    if cfg.agents is not None:
        caps = frozenset().union(*(g.capabilities for g in spec.agents))
        return [
            AgentInfo(id=f"a{i:04d}", capabilities=caps, slots=cfg.slots, prefetch=cfg.prefetch)
            for i in range(cfg.agents)
        ]
    groups = spec.agents or ()
    out: list[AgentInfo] = []
    for g in groups:
        for _ in range(g.count):
            out.append(
                AgentInfo(
                    id=f"a{len(out):04d}",
                    capabilities=g.capabilities,
                    slots=g.slots,
                    prefetch=cfg.prefetch,
                )
            )
    if not out:
        out = [AgentInfo(id=f"a{i:04d}", prefetch=cfg.prefetch) for i in range(4)]
    return out


def simulate(spec: ProjectSpec, cfg: SimConfig | None = None) -> SimResult:
    """Run ``spec`` to completion on simulated agents."""
    cfg = cfg or SimConfig()
    sc = cfg.scheduler
    state = SchedulerState(sc)
    agents = make_agents(spec, cfg)
    lanes = sum(a.slots for a in agents)
    rng = _SplitMix(cfg.seed)
    real: dict[str, float] = {}
    for t in spec.tasks:
        base = t.duration if t.duration is not None else t.estimate
        if base is None:
            base = sc.default_duration
        if cfg.noise > 0:
            base *= math.exp(cfg.noise * rng.gauss())
        real[t.id] = base
    an_real = analyse(spec, [real[t.id] for t in spec.tasks])
    factors = cfg.speeds or (1.0,)
    speed = {a.id: factors[i % len(factors)] for i, a in enumerate(agents)}
    plan = None
    if cfg.planner is not None and follows_plan(sc.policy):
        plan = plan_project(spec, agents, state.durations.predict, cfg.planner)

    heap: list[tuple[float, int, int, TaskKey | None, str]] = []
    # When each agent's slots free: a task started ahead (start_ahead) waits
    # for its agent's first free slot, as the agent runs it.
    free_at: dict[str, list[float]] = {a.id: [0.0] * a.slots for a in agents}
    token: dict[TaskKey, int] = {}
    trace: list[tuple[str, str, float, float]] = []
    seq = 0

    def run(cmds: list[Command], now: float) -> None:
        nonlocal seq
        for c in cmds:
            if isinstance(c, AssignTask | StealTask) and c.start_now:
                aid = c.agent_id if isinstance(c, AssignTask) else c.to_agent
            elif isinstance(c, StartTask):
                aid = c.agent_id
            else:
                if isinstance(c, CancelTask):
                    token.pop(c.key, None)
                continue
            seq += 1
            token[c.key] = seq
            lanes_free = free_at[aid]
            begin = max(now, heapq.heappop(lanes_free))
            end = begin + real[c.key.task] * speed[aid]
            heapq.heappush(lanes_free, end)
            heapq.heappush(heap, (end, seq, 0, c.key, aid))
            if cfg.record:
                trace.append((c.key.task, aid, begin, end))

    first: list[Event] = [AgentJoined(a, 0.0) for a in agents]
    first.append(ProjectSubmitted(spec, 0.0, plan))
    run(state.handle(*first), 0.0)
    if sc.stealing_enabled:
        heapq.heappush(heap, (sc.steal_interval, 0, 1, None, ""))
    now = 0.0
    events = 0
    makespan = 0.0
    while heap and state.unfinished():
        now = heap[0][0]
        batch: list[Event] = []
        while heap and heap[0][0] == now:
            _, s, kind, key, aid = heapq.heappop(heap)
            if kind == 1:
                batch.append(StealTick(now))
                heapq.heappush(heap, (now + sc.steal_interval, 0, 1, None, ""))
            elif key is not None and token.get(key) == s:
                del token[key]
                batch.append(TaskSucceeded(key, aid, real[key.task] * speed[aid], now))
                makespan = now
        if batch:
            events += len(batch)
            run(state.handle(*batch), now)
    m = state.metrics(makespan)
    outcome = state.project_outcome(spec.id) or "incomplete"
    return SimResult(
        project=spec.id,
        source=spec.source,
        agents=len(agents),
        lanes=lanes,
        policy=sc.policy,
        stealing=sc.stealing_enabled,
        makespan=makespan,
        lower_bound=_lower_bound(an_real.critical_path_length, an_real.total_work, agents, speed),
        critical_path=an_real.critical_path_length,
        total_work=an_real.total_work,
        steals=m.total_steals,
        steal_events=m.steal_events,
        utilization=an_real.total_work / (makespan * lanes) if makespan > 0 else 1.0,
        outcome=outcome,
        plan_method=plan.method if plan else "none",
        planned_makespan=plan.makespan if plan else None,
        plan_optimal=plan.optimal if plan else False,
        replans=m.replans_requested,
        events=events,
        schedule=tuple(trace),
    )


def skewed_start(
    tasks: int = 80,
    agents: int = 8,
    estimate: float = 10.0,
    prefetch: int = 10,
    config: SchedulerConfig | None = None,
) -> tuple[float, float, int]:
    """Skewed start: one agent's queue holds every task, then ``agents - 1``
    idle agents join. Returns (imbalance before, imbalance one steal interval
    later, tasks moved); imbalance = std-dev of per-agent predicted load."""
    from workhive.coordinator.model import TaskSpec

    sc = config or SchedulerConfig(policy="balanced")
    st = SchedulerState(sc)
    spec = ProjectSpec(
        id="skew", tasks=tuple(TaskSpec(id=f"t{i}", estimate=estimate) for i in range(tasks))
    )
    st.handle(AgentJoined(AgentInfo(id="a0000", prefetch=tasks), 0.0), ProjectSubmitted(spec, 0.0))
    before = load_imbalance([st.loads()["a0000"], *([0.0] * (agents - 1))])
    joins = [
        AgentJoined(AgentInfo(id=f"a{i:04d}", prefetch=prefetch), 0.0) for i in range(1, agents)
    ]
    moved = sum(isinstance(c, StealTask) for c in st.handle(*joins))
    moved += sum(isinstance(c, StealTask) for c in st.handle(StealTick(sc.steal_interval)))
    after = load_imbalance(st.loads().values())
    return before, after, moved
