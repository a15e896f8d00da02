"""Resumable watches.

A :class:`Watcher` watches a key or prefix from ``start_revision`` and hands
out :class:`WatchBatch` es (all events of one or more revisions, in order).

Invariants:
- no event is missed or repeated: after a disconnect, member loss or etcd
  restart the watch is re-created from ``last delivered revision + 1`` on the
  next endpoint (``failover``), with backoff;
- the watch asks for ``require leader``: a member cut off from the quorum
  cancels it instead of going silent, and we move on;
- if the start revision was compacted, the consumer gets :class:`Compacted`
  (from ``get``/iteration, or ``on_compacted``) and the watcher stops: the
  consumer re-lists (see ``snapshot.Feed``) and starts a new watch.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from etcd3 import etcdrpc

from workhive.coordinator.etcd.client import EtcdClient, kv_from_pb, prefix_end
from workhive.coordinator.etcd.errors import Compacted, EtcdError
from workhive.coordinator.etcd.types import KeyValue

log = logging.getLogger(__name__)

_REQUIRE_LEADER = (("hasleader", "true"),)
_END = object()


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change. For DELETE, ``kv.value`` is empty and ``kv.mod_revision`` is
    the deletion revision; ``prev`` holds the value before (if requested)."""

    type: EventType
    kv: KeyValue
    prev: KeyValue | None = None

    @property
    def key(self) -> bytes:
        return self.kv.key

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Events of one watch response; ``revision`` is the response header revision."""

    events: tuple[WatchEvent, ...]
    revision: int


def _event(ev: Any, prev_on_put: bool) -> WatchEvent:
    t = EventType.DELETE if ev.type == 1 else EventType.PUT
    keep = prev_on_put or t is EventType.DELETE
    prev = kv_from_pb(ev.prev_kv) if keep and ev.HasField("prev_kv") else None
    return WatchEvent(t, kv_from_pb(ev.kv), prev)


class Watcher:
    """Watch ``key`` (or every key under it with ``prefix=True``) from ``start_revision``.

    Consume with ``get(timeout)``/iteration, or pass ``callback`` (called on the
    watcher thread with each batch) and ``on_compacted``. ``cancel()`` is idempotent.
    With ``prev_kv``, events carry the key's previous value; ``prev_on_put=False``
    keeps it on DELETE events only (etcd sends it with every event; a reader
    that only needs a deleted key's last value need not decode it for every
    put).
    """

    def __init__(
        self,
        client: EtcdClient,
        key: bytes,
        *,
        start_revision: int,
        prefix: bool = False,
        prev_kv: bool = False,
        prev_on_put: bool = True,
        callback: Callable[[WatchBatch], None] | None = None,
        on_compacted: Callable[[Compacted], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        progress_notify: bool = True,
    ) -> None:
        self.client = client
        self.key = key
        self.range_end = prefix_end(key) if prefix else b""
        self.next_revision = start_revision
        self.prev_kv = prev_kv
        self.prev_on_put = prev_on_put
        self.progress_notify = progress_notify
        self._callback = callback
        self._on_compacted = on_compacted
        self._sleep = sleep
        self._queue: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._call: Any = None
        self._lock = threading.Lock()
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name="etcd-watch", daemon=True)
        self._thread.start()

    # -- consumer side ---------------------------------------------------------

    def get(self, timeout: float | None = None) -> WatchBatch | None:
        """Next batch, or None on timeout / after cancel. Raises Compacted."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, Compacted):
            raise item
        if item is _END:
            self._queue.put(_END)
            return None
        assert isinstance(item, WatchBatch)
        return item

    def __iter__(self) -> Iterator[WatchBatch]:
        while not self._stop.is_set():
            b = self.get(timeout=0.5)
            if b is not None:
                yield b

    def cancel(self) -> None:
        self._stop.set()
        with self._lock:
            call = self._call
        if call is not None:
            with contextlib.suppress(Exception):
                call.cancel()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._queue.put(_END)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # -- watcher thread ---------------------------------------------------------

    def _deliver(self, item: WatchBatch | Compacted) -> None:
        if isinstance(item, Compacted):
            if self._on_compacted is not None:
                self._on_compacted(item)
            else:
                self._queue.put(item)
        elif self._callback is not None:
            self._callback(item)
        else:
            self._queue.put(item)

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            gen = self.client.generation
            requests: queue.Queue[object] = queue.Queue()
            create = etcdrpc.WatchCreateRequest(
                key=self.key,
                range_end=self.range_end,
                start_revision=self.next_revision,
                prev_kv=self.prev_kv,
                progress_notify=self.progress_notify,
            )
            requests.put(etcdrpc.WatchRequest(create_request=create))

            def it(q: queue.Queue[object] = requests) -> Iterator[Any]:
                while True:
                    x = q.get()
                    if x is _END:
                        return
                    yield x

            try:
                stub = etcdrpc.WatchStub(self.client.channel())
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._call = stub.Watch(it(), metadata=_REQUIRE_LEADER)
                for resp in self._call:
                    if resp.compact_revision:
                        self._deliver(Compacted(int(resp.compact_revision)))
                        self._stop.set()
                        return
                    if resp.canceled:
                        raise EtcdError(f"watch canceled: {resp.cancel_reason}")
                    if resp.events:
                        evs = tuple(_event(e, self.prev_on_put) for e in resp.events)
                        self.next_revision = evs[-1].revision + 1
                        self._deliver(WatchBatch(evs, int(resp.header.revision)))
                    backoff = 0.05
            except grpc.RpcError as e:
                if self._stop.is_set():
                    return
                log.info(
                    "watch on %r interrupted (%s), resuming at %d",
                    self.key,
                    e.code().name,
                    self.next_revision,
                )
                self.client.failover(gen)
            except EtcdError as e:
                if self._stop.is_set():
                    return
                log.info("watch on %r: %s, resuming at %d", self.key, e, self.next_revision)
                self.client.failover(gen)
            except ValueError:  # channel closed during failover
                pass
            finally:
                requests.put(_END)
            if self._stop.is_set():
                return
            self.reconnects += 1
            self._sleep(backoff)
            backoff = min(1.0, backoff * 2)
