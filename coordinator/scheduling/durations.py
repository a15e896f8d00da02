"""Duration model: the file's estimate, else what tasks of the same kind took.

``DurationModel`` keeps one exponentially weighted moving average per task
``kind`` (alpha configurable) fed by observed completions. ``predict`` returns
the task's own estimate when it has one (times the kind's learned
calibration, ``EstimateErrors.scale``: 1 until ``min_samples`` estimated
tasks of the kind finished), the kind's EWMA otherwise, and a
global default when the kind was never seen. ``version`` increases when an
EWMA moves by more than ``drift`` (relative) since the last bump, so callers can
cheaply notice when cached ranks are stale. Pure and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workhive.coordinator.model import TaskSpec
from workhive.coordinator.scheduling.estimates import EstimateErrors

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
    calibration: int = 0  # bumped when a kind's estimate scale moves
    errors: EstimateErrors = field(default_factory=EstimateErrors)
    _at_bump: dict[str, float] = field(default_factory=dict)
    _scale_at_bump: dict[str, float] = field(default_factory=dict)

    def predict(self, spec: TaskSpec) -> float:
        """Predicted seconds for ``spec``."""
        if spec.estimate is not None:
            return spec.estimate * self.errors.scale(spec.kind)
        return self.ewma.get(spec.kind, self.default)

    def learned(self, kind: str) -> float | None:
        """The kind's EWMA, or ``None`` when never observed."""
        return self.ewma.get(kind)

    def observe(self, spec: TaskSpec, seconds: float) -> bool:
        """Feed a completion; return True when the kind's EWMA or estimate
        calibration drifted (``version`` was bumped)."""
        if seconds < 0:
            return False
        k = spec.kind
        calibrated = False
        if spec.estimate is not None:
            self.errors.observe(k, spec.estimate, seconds)
            sc = self.errors.scale(k)
            ref_sc = self._scale_at_bump.get(k, 1.0)
            if abs(sc - ref_sc) > self.drift * ref_sc:
                self._scale_at_bump[k] = sc
                self.version += 1
                self.calibration += 1
                calibrated = True
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
        return calibrated
