"""Assignment policies: which ready task goes first, which agent gets it.

Capabilities always filter (an agent is eligible only if it holds every
capability the task requires); policies only order the eligible choices.

========================  ==================================  =========================
policy                    task order                          agent choice
========================  ==================================  =========================
``greedy``                first ready first (FIFO)            first agent (join order)
``critical-path``         effective priority, upward rank     first agent
``balanced``              FIFO                                least predicted load
``affinity``              FIFO                                branch owner, else first
``default``               the plan when one is active; else   branch owner, else fewest
                          a task holding the project's end    needed extra capabilities,
                          first, then effective priority,     then least predicted load;
                          then upward rank                    scarce places reserved
========================  ==================================  =========================

Effective priority: a task's own or any descendant's, whichever is higher.
The ``default`` rules are in docs/scheduling.md ("Priority semantics",
"Placement under wrong estimates").

"Load" is predicted seconds of work held (running + queued), not a count. A
branch owner is preferred only within the current tier (free slot first, then
prefetch room), so affinity never leaves another agent's free slot idle while
ready work waits.
"""

from __future__ import annotations

__all__ = ["agent_key", "follows_plan", "task_key", "uses_affinity", "uses_scarcity"]

_RANKED = frozenset({"critical-path", "default"})
_LOAD = frozenset({"balanced", "default"})
_AFFINITY = frozenset({"affinity", "default"})


def task_key(
    policy: str, priority: int, rank: float, index: int, ready_seq: int
) -> tuple[float, ...]:
    """Sort key of a ready task; smaller goes first."""
    if policy in _RANKED:
        return (-priority, -rank, index)
    return (ready_seq,)


def agent_key(policy: str, load: float, seq: int) -> tuple[float, ...]:
    """Sort key of an eligible agent; smaller is chosen."""
    if policy in _LOAD:
        return (load, seq)
    return (seq,)


def uses_affinity(policy: str) -> bool:
    """Whether the policy prefers a branch's previous agent."""
    return policy in _AFFINITY


def follows_plan(policy: str) -> bool:
    """Whether the policy follows a planner's schedule when one is given."""
    return policy == "default"


def uses_speeds(policy: str) -> bool:
    """Whether a free slot of a faster agent (``agent_speeds``) is taken first:
    only ``default``."""
    return policy == "default"


def uses_scarcity(policy: str) -> bool:
    """Whether agents with capabilities other work needs are kept for it
    (``scarcity.Needs``, docs/scheduling.md): only ``default``."""
    return policy == "default"
