"""Scheduling metrics from the seeds, computed from plain numbers (pure).

Names follow claude-flow / todos-mcp: total steals, average steal size, load
imbalance (population std-dev of per-agent load), redistribution latency,
last steal time, parallelization efficiency, lock contention rate (failed
claims / claim attempts), agent utilization, critical-path progress.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "SchedulerMetrics",
    "load_imbalance",
    "lock_contention_rate",
    "parallelization_efficiency",
]


def load_imbalance(loads: Iterable[float]) -> float:
    """Population standard deviation of per-agent loads (0 for < 2 agents)."""
    xs = list(loads)
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def parallelization_efficiency(total_work: float, makespan: float, lanes: int) -> float:
    """Useful work / (makespan x lanes), in [0, 1]."""
    if makespan <= 0 or lanes <= 0:
        return 1.0 if total_work <= 0 else 0.0
    return total_work / (makespan * lanes)


def lock_contention_rate(failed: int, attempts: int) -> float:
    """Failed claim CAS / claim attempts."""
    return failed / attempts if attempts else 0.0


@dataclass(frozen=True, slots=True)
class SchedulerMetrics:
    """A snapshot of the scheduler's seed metrics."""

    total_steals: int = 0
    steal_events: int = 0
    average_steal_size: float = 0.0
    rejected_steals: int = 0
    last_steal_time: float | None = None
    redistribution_latency: float = 0.0
    load_imbalance: float = 0.0
    lock_contention_rate: float = 0.0
    utilization: float = 0.0
    parallelization_efficiency: float = 0.0
    critical_path_progress: float = 0.0
    assignments: int = 0
    failed_claims: int = 0
    replans_requested: int = 0
