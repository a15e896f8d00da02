"""A new leader's takeover of a follower's warm mirror.

Contract: the mirror is handed over only once it has seen a barrier
(``etcd.barrier``) the new leader wrote as its term began. Every
leader-fenced write of a previous leader is older than that barrier (it
compares that leader's election key, gone before this term began), so the
restored state holds them all; a warm mirror may lag them by its watch
(docs/failover.md, "Resync after a barrier"). A barrier not written within
``FIRST_BARRIER_WAIT`` seconds cancels the warm mirror: the leader reads a
fresh snapshot instead. The warm mirror is never left running unowned.
"""

from __future__ import annotations

import asyncio

import structlog

from workhive.coordinator.etcd import EtcdError, StandbyMirror
from workhive.coordinator.etcd.standby import Sink
from workhive.coordinator.leader.writes import Writer

log = structlog.get_logger("workhive.leader")

FIRST_BARRIER_WAIT = 5.0  # seconds a new leader waits to write its first barrier


async def take_over(writer: Writer, standby: StandbyMirror, push: Sink) -> bool:
    """Hand ``standby``'s state and changes to ``push`` once it has seen a
    barrier written now: True. False: the barrier was not written and
    ``standby`` is cancelled. ``NotLeading`` propagates (``standby`` cancelled)."""
    try:
        since = await asyncio.wait_for(writer.barrier(), FIRST_BARRIER_WAIT)
    except (EtcdError, TimeoutError) as exc:
        log.warning("first barrier not written: taking a fresh snapshot", error=str(exc))
        await asyncio.to_thread(standby.cancel)
        return False
    except BaseException:
        standby.cancel()
        raise
    standby.hand_over(push, min_revision=since)
    return True
