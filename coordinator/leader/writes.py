"""The claims store the leader writes through, and the fenced writer.

:class:`ClaimsStore` is the leader's port to etcd (implemented by
:class:`EtcdClaimsStore` over ``etcd.Claims``; unit tests use a fake).
:class:`Writer` runs store calls off the event loop and enforces the rule
every leader write obeys: it carries the election fence, and a NOT_LEADER
answer raises :class:`NotLeading` (a deposed leader writes nothing and
steps down). Writes naming an agent lease that just expired are retried
without the dead leases' items (those become CONFLICTs).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import structlog

from workhive.coordinator.etcd import (
    ClaimRequest,
    Claims,
    Completion,
    EtcdClient,
    EtcdError,
    Fence,
    Finish,
    Growth,
    InvalidArgument,
    ItemResult,
    Keyspace,
    LeaseKeeper,
    Outcome,
    Steal,
    Store,
    Submission,
    TaskRecord,
    add_tasks,
    complete_and_claim,
    complete_and_grow,
    submit_and_claim,
    write_barrier,
)
from workhive.coordinator.metrics import Metrics
from workhive.coordinator.model import Claim, TaskKey

log = structlog.get_logger("workhive.leader")
T = TypeVar("T")
Pair = tuple[list[ItemResult], list[ItemResult]]
LEASE_ROUNDS = 4  # txn attempts while agent leases named in it keep expiring


class NotLeading(Exception):
    """The fence failed: this replica must stop leading now."""


class ClaimsStore(Protocol):
    """The writes and reads the leader makes (docs/etcd-layer.md has the compares)."""

    def create(self, reqs: Sequence[ClaimRequest], fence: Fence) -> list[ItemResult]: ...
    def start(self, claims: Sequence[Claim], fence: Fence) -> list[ItemResult]: ...
    def steal(self, moves: Sequence[Steal], fence: Fence) -> list[ItemResult]: ...
    def release(self, claims: Sequence[Claim], fence: Fence) -> list[ItemResult]: ...
    def requeue(
        self, records: Sequence[TaskRecord], fence: Fence, attempts: Sequence[int] | None = None
    ) -> list[ItemResult]: ...
    def finish(self, items: Sequence[Finish], fence: Fence) -> list[ItemResult]: ...
    def complete(
        self, comps: Sequence[Completion], fence: Fence, known: Mapping[TaskKey, TaskRecord]
    ) -> list[ItemResult]: ...
    def complete_and_create(
        self,
        comps: Sequence[Completion],
        known: Mapping[TaskKey, TaskRecord],
        reqs: Sequence[ClaimRequest],
        fence: Fence,
    ) -> tuple[list[ItemResult], list[ItemResult]]: ...
    def submit_and_create(
        self, subs: Sequence[Submission], reqs: Sequence[ClaimRequest], fence: Fence
    ) -> tuple[list[ItemResult], list[ItemResult]]: ...
    def task_record(self, key: TaskKey) -> TaskRecord | None: ...
    def grow(self, items: Sequence[Growth], fence: Fence) -> list[ItemResult]: ...
    def complete_spawning(
        self, c: Completion, rec: TaskRecord, g: Growth, fence: Fence
    ) -> ItemResult: ...
    def barrier(self, fence: Fence) -> ItemResult: ...
    def lease_ttl(self, lease_id: int) -> int: ...
    def lease_life(self, lease_id: int) -> tuple[int, int]: ...
    def revoke_lease(self, lease_id: int) -> None: ...


class EtcdClaimsStore:
    """:class:`ClaimsStore` over etcd (thread-safe: stateless over the client)."""

    def __init__(self, client: EtcdClient, keyspace: Keyspace, keeper: LeaseKeeper) -> None:
        self._claims = Claims(client, keyspace)
        self._store = Store(client, keyspace)
        self._client = client
        self._keeper = keeper

    def create(self, reqs: Sequence[ClaimRequest], fence: Fence) -> list[ItemResult]:
        return self._claims.create(reqs, fence)

    def start(self, claims: Sequence[Claim], fence: Fence) -> list[ItemResult]:
        return self._claims.start(claims, fence)

    def steal(self, moves: Sequence[Steal], fence: Fence) -> list[ItemResult]:
        return self._claims.steal(moves, fence)

    def release(self, claims: Sequence[Claim], fence: Fence) -> list[ItemResult]:
        return self._claims.release(claims, fence)

    def requeue(
        self, records: Sequence[TaskRecord], fence: Fence, attempts: Sequence[int] | None = None
    ) -> list[ItemResult]:
        return self._claims.requeue(records, fence, attempts)

    def finish(self, items: Sequence[Finish], fence: Fence) -> list[ItemResult]:
        return self._claims.finish(items, fence)

    def complete(
        self, comps: Sequence[Completion], fence: Fence, known: Mapping[TaskKey, TaskRecord]
    ) -> list[ItemResult]:
        return self._claims.complete(comps, fence=fence, known=known)

    def grow(self, items: Sequence[Growth], fence: Fence) -> list[ItemResult]:
        return [add_tasks(self._client, self._claims.ks, g, fence) for g in items]

    def complete_spawning(
        self, c: Completion, rec: TaskRecord, g: Growth, fence: Fence
    ) -> ItemResult:
        return complete_and_grow(self._claims, c, rec, g, fence)

    def complete_and_create(
        self,
        comps: Sequence[Completion],
        known: Mapping[TaskKey, TaskRecord],
        reqs: Sequence[ClaimRequest],
        fence: Fence,
    ) -> tuple[list[ItemResult], list[ItemResult]]:
        return complete_and_claim(self._claims, comps, known, reqs, fence)

    def submit_and_create(
        self, subs: Sequence[Submission], reqs: Sequence[ClaimRequest], fence: Fence
    ) -> tuple[list[ItemResult], list[ItemResult]]:
        return submit_and_claim(self._claims, subs, reqs, fence)

    def task_record(self, key: TaskKey) -> TaskRecord | None:
        return self._store.task_record(key)

    def barrier(self, fence: Fence) -> ItemResult:
        return write_barrier(self._client, self._claims.ks, fence)

    def lease_ttl(self, lease_id: int) -> int:
        return self._client.lease_ttl(lease_id)

    def lease_life(self, lease_id: int) -> tuple[int, int]:
        return self._client.lease_life(lease_id)

    def revoke_lease(self, lease_id: int) -> None:
        self._keeper.revoke(lease_id)


Runner = Callable[..., Awaitable[Any]]


class Writer:
    """Store calls off the event loop, fenced (see module docstring)."""

    def __init__(
        self,
        store: ClaimsStore,
        fence: Fence,
        metrics: Metrics,
        run: Runner | None = None,
    ) -> None:
        self.store = store
        self.fence = fence
        self.metrics = metrics
        # Two writers: a turn may commit claims and starts concurrently; turns
        # themselves never overlap, so decisions stay ordered.
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="leader-writer") if not run else None
        self._run = run or self._in_pool

    async def _in_pool(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        result: T = await self._run(fn, *args)
        self.metrics.etcd_txn_latency.observe(time.perf_counter() - started)
        return result

    async def barrier(self) -> int:
        """Write the barrier (``etcd.barrier``); its revision. EtcdError when
        it was not written (or not known to be)."""
        result = await self.call(self.store.barrier, self.fence)
        if result.outcome is Outcome.NOT_LEADER:
            raise NotLeading()
        if not result.ok or result.revision <= 0:
            raise EtcdError(f"barrier not written ({result.outcome.value})")
        return result.revision

    async def fenced(
        self, fn: Callable[..., list[ItemResult]], items: Sequence[Any], **kw: Any
    ) -> list[ItemResult]:
        if not items:
            return []
        call = functools.partial(fn, **kw) if kw else fn
        results = await self.call(call, list(items), self.fence)
        if any(r.outcome is Outcome.NOT_LEADER for r in results):
            raise NotLeading()
        return results

    async def fenced_on_leases(
        self,
        fn: Callable[..., list[ItemResult]],
        items: Sequence[Any],
        lease_of: Callable[[Any], int],
    ) -> list[ItemResult]:
        """``fenced`` for writes that attach keys to agent leases. etcd refuses a
        whole txn naming a lease that just expired: find the dead leases, answer
        CONFLICT for their items, and commit the rest (the agent's departure
        reaches the scheduler through the watch). Leases may keep dying while
        this runs (a fleet reconnecting after a takeover): a few rounds, then
        every item left is a CONFLICT the scheduler decides again."""
        results: dict[int, ItemResult] = {}
        todo = list(enumerate(items))
        for _ in range(LEASE_ROUNDS):
            try:
                done = await self.fenced(fn, [i for _, i in todo]) if todo else []
            except InvalidArgument as exc:
                if "lease not found" not in str(exc):
                    raise
            else:
                results.update((n, r) for (n, _), r in zip(todo, done, strict=True))
                todo = []
                break
            dead = {
                lease
                for lease in {lease_of(i) for _, i in todo}
                if await self.call(self.store.lease_ttl, lease) <= 0
            }
            log.info("claims named expired agent leases", leases=[f"{x:x}" for x in dead])
            gone = [(n, i) for n, i in todo if lease_of(i) in dead]
            results.update((n, ItemResult(Outcome.CONFLICT)) for n, _ in gone)
            todo = [(n, i) for n, i in todo if lease_of(i) not in dead]
        results.update((n, ItemResult(Outcome.CONFLICT)) for n, _ in todo)
        return [results[n] for n in range(len(items))]

    async def complete_and_create(
        self,
        comps: Sequence[Completion],
        known: Mapping[TaskKey, TaskRecord],
        reqs: Sequence[ClaimRequest],
        lease_of: Callable[[ClaimRequest], int],
    ) -> tuple[list[ItemResult], list[ItemResult]]:
        """Completions and claims in one call (``etcd.complete_and_claim``: a
        claim commits only with the completions of its parents), the claims
        fenced and handled as in ``fenced_on_leases``. Without claims, the
        completions alone (``ClaimsStore.complete``)."""
        if not reqs:
            return await self.fenced(self.store.complete, comps, known=known), []

        def both(items: Sequence[ClaimRequest], fence: Fence) -> Pair:
            return self.store.complete_and_create(comps, known, items, fence)

        def alone(items: Sequence[Completion], fence: Fence) -> list[ItemResult]:
            return self.store.complete(items, fence, known=known)

        return await self._with_claims(both, alone, comps, reqs, lease_of)

    async def submit_and_create(
        self,
        subs: Sequence[Submission],
        reqs: Sequence[ClaimRequest],
        lease_of: Callable[[ClaimRequest], int],
    ) -> tuple[list[ItemResult], list[ItemResult]]:
        """Small projects and the first claims of their tasks in one call
        (``etcd.submit_and_claim``), the claims handled as in
        ``fenced_on_leases``; without claims, the projects alone."""

        def both(items: Sequence[ClaimRequest], fence: Fence) -> Pair:
            return self.store.submit_and_create(subs, items, fence)

        def alone(items: Sequence[Submission], fence: Fence) -> list[ItemResult]:
            return self.store.submit_and_create(items, [], fence)[0]

        return await self._with_claims(both, alone, subs, reqs, lease_of)

    async def _with_claims(
        self,
        both: Callable[[Sequence[ClaimRequest], Fence], Pair],
        alone: Callable[[Sequence[Any], Fence], list[ItemResult]],
        firsts: Sequence[Any],
        reqs: Sequence[ClaimRequest],
        lease_of: Callable[[ClaimRequest], int],
    ) -> Pair:
        """``both(claims)`` -> (results of ``firsts``, of the claims), the claims
        handled as in ``fenced_on_leases``; when every claim named a dead
        lease, ``alone(firsts)``."""
        last: list[list[ItemResult]] = []

        def run(items: Sequence[ClaimRequest], fence: Fence) -> list[ItemResult]:
            first, made = both(items, fence)
            last[:] = [first]
            return made

        made = await self.fenced_on_leases(run, reqs, lease_of) if reqs else []
        first = last[0] if last else await self.fenced(alone, firsts)
        return first, made
