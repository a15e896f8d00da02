"""``SchedulerConfig``: every scheduling knob, defaults in docs/scheduling.md.

``from_env`` reads a mapping handed in by the caller (never ``os.environ``
itself): ``WORK_STEALING_ENABLED``, ``WORK_STEALING_THRESHOLD``,
``WORK_STEALING_INTERVAL`` (ms), and ``WORKHIVE_<FIELD>`` for any field
(``WORKHIVE_STEAL_INTERVAL`` in seconds, ``WORKHIVE_POLICY``...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from workhive.coordinator.model import DEFAULT_PRIORITY_THRESHOLD

__all__ = ["POLICIES", "SchedulerConfig"]

POLICIES = ("default", "greedy", "critical-path", "balanced", "affinity")


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    """Scheduling knobs (times in seconds unless named ``_ms``).

    Attributes:
        policy: one of ``POLICIES``; ``default`` follows the plan when there is
            one, else critical path with affinity and balance as tie-breakers.
        stealing_enabled: master switch for work stealing.
        steal_interval: period of ``StealTick`` the driver should send.
        steal_threshold: queued-task difference that triggers a steal.
        max_steal_batch: most tasks moved from one victim to one thief at once.
        priority_threshold: tasks with priority >= this are never stolen.
        predictive_stealing: measure queues in predicted seconds, not counts.
        max_predictive_load_ms: predicted-work difference (ms) that triggers a
            steal in predictive mode.
        steal_on_idle: try to steal whenever an agent goes idle.
        steal_cooldown: a stolen task stays put at least this long.
        move_min_wait: a queued task moves to another agent's free slot only
            when it would otherwise wait longer than this on its own agent (a
            move costs a fenced txn and two messages; moving a task its agent
            starts sooner than that only adds work).
        ewma_alpha: weight of a new observation in the per-kind EWMA.
        default_duration: prediction for tasks with neither estimate nor kind data.
        duration_drift: relative EWMA change that invalidates cached ranks.
        tail_margin: a ready task whose upward rank reaches ``1 - tail_margin``
            of its project's predicted time left (work left / slots) goes before
            any task with slack, whatever the priorities (``default`` only).
        prefetch_horizon: once the estimates prove unreliable (see
            ``prefetch_spread``), ``default`` puts a task in an agent's prefetch
            queue only when that agent is predicted to start it within this many
            seconds (first slot free plus the work queued ahead).
        prefetch_spread: learned spread of the estimates (std-dev of
            log(observed / estimate)) above which ``prefetch_horizon`` applies;
            below it (exact or no estimates) queues fill as agents ask.
        plan_drift_tolerance: relative error of an observed duration against
            the planned one beyond which the plan is abandoned (replan requested).
        start_ahead: a ready task predicted to take at most this many seconds
            (and without a ``timeout``) may be started on an agent whose slots
            are all busy with work predicted to take at most this long per
            slot too: its claim is created started, and the agent runs it the
            moment a slot frees, without a round trip to the leader (a
            prefetch window for short tasks). Such a task is no longer
            stealable; long work never waits behind it. 0 disables.
        start_ahead_tasks: most tasks started ahead on one agent, beyond its slots.
        chain_ahead: most tasks one agent holds *chained*: a short task (as for
            ``start_ahead``) whose unfinished dependencies all run on that
            agent is claimed for it, started, before they end, and the agent
            runs it the moment they succeed there, with no round trip to the
            leader between them (docs/scheduling.md, "Chains run back to
            back"). Only agents that say they can (``AgentInfo.chains``). 0
            disables.
        agent_speeds: ``default`` learns how much longer each agent takes than
            predicted (``agent_speeds``) and gives a task going to a free slot
            the free slot of a faster agent first.
    """

    policy: str = "default"
    stealing_enabled: bool = True
    steal_interval: float = 5.0
    steal_threshold: int = 3
    max_steal_batch: int = 5
    priority_threshold: int = DEFAULT_PRIORITY_THRESHOLD
    predictive_stealing: bool = False
    max_predictive_load_ms: float = 10_000.0
    steal_on_idle: bool = True
    steal_cooldown: float = 10.0
    move_min_wait: float = 0.02
    ewma_alpha: float = 0.3
    default_duration: float = 1.0
    duration_drift: float = 0.2
    plan_drift_tolerance: float = 0.1
    tail_margin: float = 0.3
    prefetch_horizon: float = 0.05
    prefetch_spread: float = 0.1
    start_ahead: float = 0.05
    start_ahead_tasks: int = 2
    chain_ahead: int = 4
    agent_speeds: bool = True

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; choose from {', '.join(POLICIES)}")
        if self.steal_threshold < 1 or self.max_steal_batch < 1:
            raise ValueError("steal_threshold and max_steal_batch must be >= 1")
        if self.steal_interval <= 0:
            raise ValueError("steal_interval must be > 0")
        if self.move_min_wait < 0:
            raise ValueError("move_min_wait must be >= 0")
        if self.start_ahead < 0 or self.start_ahead_tasks < 0 or self.chain_ahead < 0:
            raise ValueError("start_ahead, start_ahead_tasks and chain_ahead must be >= 0")

    @property
    def predictive_threshold(self) -> float:
        """``max_predictive_load_ms`` in seconds."""
        return self.max_predictive_load_ms / 1000.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> SchedulerConfig:
        """Build from environment-style strings (caller passes ``os.environ``)."""
        values: dict[str, object] = {}
        if "WORK_STEALING_ENABLED" in env:
            values["stealing_enabled"] = _bool(env["WORK_STEALING_ENABLED"])
        if "WORK_STEALING_THRESHOLD" in env:
            values["steal_threshold"] = int(env["WORK_STEALING_THRESHOLD"])
        if "WORK_STEALING_INTERVAL" in env:
            values["steal_interval"] = float(env["WORK_STEALING_INTERVAL"]) / 1000.0
        for f in dataclasses.fields(cls):
            raw = env.get(f"WORKHIVE_{f.name.upper()}")
            if raw is None:
                continue
            if f.type in ("bool", bool):
                values[f.name] = _bool(raw)
            elif f.type in ("int", int):
                values[f.name] = int(raw)
            elif f.type in ("float", float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {s!r}")
