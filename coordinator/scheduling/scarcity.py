"""Scarce capabilities: keep the agents that few can replace for the work that needs them.

A task may run on any agent holding its ``requires``; an agent with *extra*
capabilities (a ``gpu`` agent taking a plain task) is the only place some
other work can go. ``Needs`` is the capability-bound work of one dispatch
step: every READY task with non-empty ``requires`` (ready in 0 s) and every
PENDING one whose unfinished dependencies are all running (ready in the
predicted time left of its slowest running dependency). Two rules use it:

- **order** (``agent_cost``): among eligible agents, one whose extra
  capabilities no needy work can use comes first, then fewer extra
  capabilities, then the policy's own agent order;
- **reservation** (``blocks``): a task ``t`` may take a slot (or prefetch
  place) of agent ``a`` that some needy work ``t`` does not cover could use
  only if, after it, enough of ``a``'s group's free places remain for that
  work becoming ready before ``t`` is predicted to finish:
  ``needy ready within t.predicted < free places``. The place is then free
  again when that work arrives, so keeping it costs nothing the bound counts.

Invariant: with a single capability set (no agent has extras) nothing is
reserved and the order is the policy's. Pure, no clock: callers pass ``now``
implicitly through the ``ready_in`` they computed. See docs/scheduling.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Needs"]


@dataclass(slots=True)
class Needs:
    """Capability-bound work of one dispatch step: (requires, ready in s, task)."""

    entries: list[tuple[frozenset[str], float, object]] = field(default_factory=list)

    def add(self, requires: frozenset[str], ready_in: float, task: object) -> None:
        """Record needy work ``task`` that is ready in ``ready_in`` seconds."""
        self.entries.append((requires, ready_in, task))

    def _relevant(
        self, req: frozenset[str], caps: frozenset[str], waiting: Callable[[object], bool]
    ) -> list[float]:
        return [r for q, r, t in self.entries if q <= caps and not q <= req and waiting(t)]

    def agent_cost(
        self, req: frozenset[str], caps: frozenset[str], waiting: Callable[[object], bool]
    ) -> tuple[int, int]:
        """Sort key part of an agent for a task requiring ``req`` (smaller first)."""
        extra = caps - req
        if not extra:
            return (0, 0)
        return (1 if self._relevant(req, caps, waiting) else 0, len(extra))

    def blocks(
        self,
        req: frozenset[str],
        caps: frozenset[str],
        free: int,
        duration: float,
        waiting: Callable[[object], bool],
    ) -> bool:
        """Whether a task requiring ``req``, predicted ``duration`` s, must leave
        one of ``free`` places of an agent with ``caps`` to needy work."""
        soon = sum(1 for r in self._relevant(req, caps, waiting) if r <= duration)
        return soon >= free > 0 or (soon > 0 and free <= 0)
