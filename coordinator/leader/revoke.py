"""Executing ``RevokeTask``: a task ran past its deadline (docs/scheduling.md,
"Deadlines and backoff").

Contract: for each command whose claim is still the one the scheduler
revoked (same agent, same attempt), the claim is deleted in one fenced
transaction (compare on its mod revision, ``ClaimStore.release``) and the
agent is sent ``Revoke{task, reason}`` for that claim's fence, so its handler
is cancelled; a report it sends later for that fence finds no claim and is
rejected as stale (``completions``). This runs before the turn's requeues and
failures, which need the claim gone. A claim that changed meanwhile (the task
finished or was lost first) is left alone: the event for that outcome reaches
the scheduler as usual.
"""

from __future__ import annotations

import structlog

from workhive.coordinator.leader.term import Term
from workhive.coordinator.model import Claim, TaskRef
from workhive.coordinator.scheduling import RevokeTask

__all__ = ["revoke_overdue"]

log = structlog.get_logger(__name__)


async def revoke_overdue(term: Term, cmds: list[RevokeTask]) -> None:
    """Delete the claims of tasks past their deadline and tell their agents."""
    if not cmds:
        return
    mirror = term.view()
    todo: list[tuple[RevokeTask, Claim]] = []
    for c in cmds:
        claim = mirror.claims.get(c.key)
        if claim is not None and claim.agent == c.agent_id and claim.attempt == c.attempt:
            todo.append((c, claim))
    results = await term.writer.fenced(term.writer.store.release, [cl for _, cl in todo])
    for (c, claim), res in zip(todo, results, strict=True):
        if res.ok:
            mirror.fold_release(claim.key, res.revision)
            term.port.revoke(claim.agent, TaskRef.of(claim), c.reason)
            log.info("task revoked", task=str(c.key), agent=c.agent_id, reason=c.reason)
        else:
            log.warning("revoke conflict", task=str(c.key), agent=c.agent_id)
