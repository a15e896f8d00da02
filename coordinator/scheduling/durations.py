"""Duration model: the file's estimate, else what tasks of the same kind took.

``DurationModel`` keeps one exponentially weighted moving average per task
``kind`` (alpha configurable) fed by observed completions. ``predict`` returns
the task's own estimate when it has one, the kind's EWMA otherwise, and a
global default when the kind was never seen. ``version`` increases when an
EWMA moves by more than ``drift`` (relative) since the last bump, so callers can
cheaply notice when cached ranks are stale. Pure and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workhive.coordinator.model import TaskSpec

__all__ = ["DurationModel"]


@dataclass(slots=True)
class DurationModel:
    """Per-kind EWMA of observed durations."""

    alpha: float = 0.3
    default: float = 1.0
    drift: float = 0.2
    ewma: dict[str, float] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    version: int = 0
    _at_bump: dict[str, float] = field(default_factory=dict)

    def predict(self, spec: TaskSpec) -> float:
        """Predicted seconds for ``spec``."""
        if spec.estimate is not None:
            return spec.estimate
        return self.ewma.get(spec.kind, self.default)

    def learned(self, kind: str) -> float | None:
        """The kind's EWMA, or ``None`` when never observed."""
        return self.ewma.get(kind)

    def observe(self, spec: TaskSpec, seconds: float) -> bool:
        """Feed a completion; return True when the kind's EWMA drifted
        (``version`` was bumped)."""
        if seconds < 0:
            return False
        k = spec.kind
        old = self.ewma.get(k)
        new = seconds if old is None else old + self.alpha * (seconds - old)
        self.ewma[k] = new
        self.samples[k] = self.samples.get(k, 0) + 1
        ref = self._at_bump.get(k)
        if ref is None or abs(new - ref) > self.drift * max(ref, 1e-9):
            self._at_bump[k] = new
            if ref is not None or spec.estimate is None:
                self.version += 1
                return True
        return False
