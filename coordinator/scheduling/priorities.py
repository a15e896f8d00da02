"""Effective priority: a task is as urgent as the most urgent task waiting on it.

User priority (0-10, higher first) is urgency: "I want this result soon".
A task cannot start before its dependencies finish, so an urgent task is only
served early if its ancestors are too. ``effective_priorities`` returns, for
each task, the maximum of its own priority and the priorities of all its
descendants (an urgent leaf lifts every ancestor). Ranked policies order ready
tasks by effective priority, then by upward rank; stealing still protects
tasks by their own priority. See docs/scheduling.md ("Priority semantics").

Invariant: ``eff[i] >= priority[i]`` and ``eff[p] >= eff[c]`` for every edge
p -> c. O(tasks + edges). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["effective_priorities", "holds_the_end"]


def effective_priorities(
    priorities: Sequence[int], children: Sequence[Sequence[int]], order: Sequence[int]
) -> list[int]:
    """Max of each task's priority and its descendants'; ``order`` is topological."""
    eff = list(priorities)
    for i in reversed(order):
        for c in children[i]:
            if eff[c] > eff[i]:
                eff[i] = eff[c]
    return eff


def holds_the_end(rank: float, left_work: float, slots: int, margin: float) -> bool:
    """Whether a ready task is on the project's predicted tail: its upward
    rank (predicted seconds from its start to the end of its longest path)
    reaches ``1 - margin`` of the predicted time left, ``left_work / slots``
    (or it is longer than that: then it is the critical path itself). Such a
    task starts before any task with slack, whatever the priorities, so
    urgency reorders work only where it cannot delay the project's end."""
    return rank >= (1.0 - margin) * left_work / max(1, slots)
