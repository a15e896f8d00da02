"""How wrong the estimates are: learned online from completions, per kind.

For every completed task that had an ``estimate`` the scheduler feeds
``x = log(observed / estimate)`` here. Two numbers come out:

- ``scale(kind)``: ``exp(mean x)`` over the kind's completions once it has
  ``min_samples`` of them and the mean is beyond two standard errors from 0
  (else 1: unbiased noise does not reorder kinds): estimates of a kind that
  run 2x long are read as 2x from then on (the duration model multiplies by it, ranks are
  recomputed when it moves by more than the model's ``drift``);
- ``spread()``: the standard deviation of ``x`` over all kinds, measured
  around each kind's own mean (0 until ``min_samples`` completions): how
  far a single estimate is off after calibration. The tail rule widens its
  margin by it (see ``margin``): the noisier the estimates, the earlier a task
  with a long path goes first, whatever the priorities.

Invariants: exact estimates give ``scale == 1`` and ``spread == 0``, so
schedules made on exact durations never change. Welford's update, O(1) per
observation. Pure: no clock, no randomness. See docs/scheduling.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["EstimateErrors", "margin"]


@dataclass(slots=True)
class _Welford:
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> float:
        """Add ``x``; return its deviation from the mean before the update."""
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)
        return d


@dataclass(slots=True)
class EstimateErrors:
    """Per-kind log-ratio of observed to estimated durations."""

    min_samples: int = 5
    kinds: dict[str, _Welford] = field(default_factory=dict)
    _resid: _Welford = field(default_factory=_Welford)

    def observe(self, kind: str, estimate: float, observed: float) -> None:
        """Feed one completion of a task estimated at ``estimate`` seconds."""
        if estimate <= 0 or observed <= 0:
            return
        w = self.kinds.setdefault(kind, _Welford())
        d = w.add(math.log(observed / estimate))
        if w.n > 1:
            # residual around the kind's running mean (scaled to be unbiased)
            self._resid.add(d * math.sqrt((w.n - 1) / w.n))

    def scale(self, kind: str) -> float:
        """Factor to apply to the kind's estimates (1 until enough samples)."""
        w = self.kinds.get(kind)
        if w is None or w.n < self.min_samples:
            return 1.0
        # only a bias the samples show (beyond 2 standard errors), not noise
        if abs(w.mean) <= 2.0 * math.sqrt(w.m2 / (w.n - 1) / w.n):
            return 1.0
        return math.exp(w.mean)

    def spread(self) -> float:
        """Std-dev of log(observed / calibrated estimate); 0 until enough samples."""
        r = self._resid
        if r.n < self.min_samples:
            return 0.0
        return math.sqrt((r.m2 + r.mean * r.mean * r.n) / r.n)


def margin(base: float, spread: float) -> float:
    """The tail rule's margin widened by the estimates' spread: a task whose
    rank reaches ``1 - margin`` of the predicted time left goes first.
    ``base`` when estimates are exact, 1 (pure path length) at spread >= 0.5."""
    return min(1.0, base + (1.0 - base) * min(1.0, 2.0 * spread))
