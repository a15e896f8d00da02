"""Retention: the leader deletes projects that finished long enough ago.

``expired`` is pure: which projects of a mirror finished more than ``keep``
seconds before ``now`` (a project is finished when every task is terminal;
it finished at the latest ``finished_at`` of its results, or when it was
submitted if it has none). ``RetentionLoop`` runs while this replica leads
and hands each expired project to ``delete`` (the same path as ``workhive
delete``, one fenced txn, then a compaction), so a deposed leader deletes
nothing. ``retention_seconds`` = 0 (the default) keeps projects forever
(docs/etcd-layer.md, "Deleting projects").
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable

import structlog

from workhive.coordinator.etcd import ClusterState, EtcdError
from workhive.coordinator.leader.clock import Clock

log = structlog.get_logger("workhive.leader")
CHECK_EVERY = 5.0  # seconds between scans (at most one scan per retention period)


def expired(cs: ClusterState, now: float, keep: float) -> list[str]:
    """Finished projects whose last task ended more than ``keep`` s before ``now``."""
    done_at: dict[str, float] = defaultdict(float)
    open_: set[str] = set()
    for key in cs.tasks:
        st = cs.state_of(key)
        if st is None or not st.terminal:
            open_.add(key.project)
            continue
        res = cs.results.get(key)
        if res is not None:
            done_at[key.project] = max(done_at[key.project], res.finished_at)
    out = []
    for pid, meta in cs.projects.items():
        if pid in open_:
            continue
        if max(done_at.get(pid, 0.0), meta.submitted_at) + keep < now:
            out.append(pid)
    return sorted(out)


class RetentionLoop:
    """Deletes expired projects while leading (see module docstring)."""

    def __init__(
        self,
        keep: float,
        mirror: Callable[[], ClusterState | None],
        delete: Callable[[str], Awaitable[int]],
        clock: Clock,
    ) -> None:
        self.keep = keep
        self._mirror = mirror
        self._delete = delete
        self._clock = clock

    async def run(self) -> None:
        while True:
            await asyncio.sleep(min(CHECK_EVERY, max(0.5, self.keep / 2)))
            cs = self._mirror()
            if cs is None:
                continue
            for pid in expired(cs, self._clock.wall(), self.keep):
                try:
                    revision = await self._delete(pid)
                except EtcdError as exc:
                    log.warning("retention: delete failed", project=pid, error=str(exc))
                    break
                log.info("retention: project deleted", project=pid, revision=revision)
