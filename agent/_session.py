"""One attempt at an ``AgentService.Session`` stream, and the channel settings."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc

from workhive.v1 import agent_pb2

MAX_BATCH = 512
"""Most agent messages sent as one stream write (an ``AgentBatch``)."""
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    # The session stream is long-lived and has no deadline; HTTP/2 keepalive
    # pings detect a dead or partitioned peer instead. A ping every 20 s (only
    # while the stream is open), and the connection is declared dead when the
    # ack is 10 s late. The coordinator must accept this rate: set
    # grpc.http2.min_recv_ping_interval_without_data_ms <= 20000 (and
    # grpc.http2.min_ping_interval_without_data_ms) on the server, or it answers
    # with GOAWAY too_many_pings (gRPC doc/keepalive.md). Heartbeats also flow
    # every Welcome.heartbeat_interval_ms, so pings are rarely "without data".
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    # We reconnect (and pick the address) ourselves; fail fast instead.
    ("grpc.enable_retries", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


class Session:
    """The agent's end of one stream: a send queue feeding the request iterator.

    ``send`` never blocks (the queue is unbounded; gRPC's own consumer thread
    drains it), so neither the heartbeat thread nor the workers can be stalled
    by a slow peer. ``close`` ends the request stream and cancels the call.
    """

    _END = object()

    def __init__(self, address: str) -> None:
        self.address = address
        self.welcomed = False
        self.last_heard = 0.0  # clock() of the last message from the coordinator
        self.call: grpc.RpcContext | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = threading.Event()

    def requests(self) -> Iterator[agent_pb2.AgentMessage]:
        """The stream's messages: each write carries what queued up while the
        previous one was in flight (an ``AgentBatch`` when more than one; the
        Hello, always first, goes alone)."""
        while True:
            item = self._queue.get()
            if item is Session._END:
                return
            assert isinstance(item, agent_pb2.AgentMessage)
            more: list[agent_pb2.AgentMessage] = []
            end = False
            room = 0 if item.HasField("hello") else MAX_BATCH - 1
            while len(more) < room:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is Session._END:
                    end = True
                    break
                assert isinstance(nxt, agent_pb2.AgentMessage)
                more.append(nxt)
            if more:
                yield agent_pb2.AgentMessage(batch=agent_pb2.AgentBatch(messages=[item, *more]))
            else:
                yield item
            if end:
                return

    def send(self, msg: agent_pb2.AgentMessage) -> None:
        if not self._closed.is_set():
            self._queue.put(msg)

    def half_close(self) -> None:
        """End the request stream (the server then ends the call)."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(Session._END)

    def close(self) -> None:
        """Half-close and cancel the call (idempotent)."""
        self.half_close()
        if self.call is not None:
            self.call.cancel()
