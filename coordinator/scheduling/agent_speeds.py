"""How fast each agent is, learned online from its completions.

Agents are not all alike: a fleet mixes machine sizes, and an agent on a busy
host runs everything slower. Each completion gives ``x = log(observed /
predicted)`` for the agent that ran it (``predicted``: the duration model's
prediction for the task when it finished, so what the kind's or the
estimate's own error explains is not blamed on the agent). The fleet's mean
``m`` of ``x`` is the common part; an agent's **offset** is the mean of its
``x - m``, shrunk towards 0 as if ``PRIOR`` completions at the fleet's mean
came first (a few long tasks make no agent slow). Its **class** is the offset
in steps of ``log 2 / 2`` rounded to an integer (1: about 1.4x slower than the
fleet's middle, -1: 1.4x faster; in a fleet of half fast and half 2x slower
agents the two halves are -1 and 1), but only once the offset is
significant: more than one standard error (``x``'s spread over the whole
fleet over the root of the agent's count) from 0; before that, 0. The class,
not the offset, orders agents, so that noise in a fleet of equal agents
rarely reorders them.

The scheduler (``default`` policy, ``SchedulerConfig.agent_speeds``) gives a
task that goes to a free slot the free slot of the lowest class first (then
the least explored, ``EXPLORE``): the ready work taken first, the
highest-ranked, gets the fastest agents (docs/scheduling.md, "Agent speeds").

Pure and deterministic: no clock, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["EXPLORE", "PRIOR", "AgentSpeeds"]

PRIOR = 2.0
"""Completions at the fleet's mean an agent's offset starts from (shrinkage)."""
EXPLORE = 4
"""Among free agents of one class and load, one with fewer completions than
this goes first (else a chain would stay on the first agent to join, and
nothing would be learned of the others); beyond it, join order decides."""
_STEP = math.log(2.0) / 2


@dataclass(slots=True)
class AgentSpeeds:
    """Per-agent offsets and classes (see the module docstring)."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    total: float = 0.0
    squares: float = 0.0
    n: int = 0

    def observe(self, agent_id: str, predicted: float, observed: float) -> None:
        """One completion of ``agent_id``: it took ``observed`` seconds for a
        task predicted at ``predicted``. Non-positive figures are ignored."""
        if predicted <= 0 or observed <= 0:
            return
        x = math.log(observed / predicted)
        self.sums[agent_id] = self.sums.get(agent_id, 0.0) + x
        self.counts[agent_id] = self.counts.get(agent_id, 0) + 1
        self.total += x
        self.squares += x * x
        self.n += 1

    def offset(self, agent_id: str) -> float:
        """The agent's shrunk mean log-slowness against the fleet (0: typical)."""
        k = self.counts.get(agent_id, 0)
        if k == 0 or self.n == 0:
            return 0.0
        mean = self.total / self.n
        return (self.sums[agent_id] - k * mean) / (k + PRIOR)

    def factor(self, agent_id: str) -> float:
        """How many times longer than typical the agent takes (1.0: typical)."""
        return math.exp(self.offset(agent_id))

    def explored(self, agent_id: str) -> int:
        """The agent's completions seen, up to ``EXPLORE``."""
        return min(self.counts.get(agent_id, 0), EXPLORE)

    def klass(self, agent_id: str) -> int:
        """The agent's speed class (0 until its offset is significant)."""
        k = self.counts.get(agent_id, 0)
        if k < 2 or self.n < 2:
            return 0
        mean = self.total / self.n
        spread = math.sqrt(max(0.0, self.squares / self.n - mean * mean))
        raw = self.sums[agent_id] / k - mean
        if abs(raw) <= spread / math.sqrt(k):
            return 0
        return round(self.offset(agent_id) / _STEP)
