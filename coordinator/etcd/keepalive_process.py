"""Agent lease keepalives from a process of their own, out of reach of the coordinator's GIL.

A thread cannot keep a thousand agent leases alive while the coordinator's
event loop is busy: every answer on the keepalive stream needs the GIL, a
busy loop lends it once per switch interval, and a batch that takes 0.1 s
idle takes seconds (``bench.keepalive_convoy``); leases ran down during a
100k-task submit (issue 17; docs/failover.md, "Event-loop stalls").

So the coordinator runs the batched :class:`LeaseRefresher` and the
:class:`StallCover` in a child process (``python -m`` this module), joined
by a socket pair:

- the coordinator answers each heartbeat from memory (:meth:`KeepaliveProcess.heard`)
  and, from its loop every ``beat_every`` seconds, sends the leases it heard
  since (an empty list is still a beat: the loop is alive);
- the child renews every due lease it was told of and sends the answers
  back (``{lease: (when, ttl)}``, monotonic clock, which is system-wide),
  which the coordinator remembers for the next heartbeats. A thread of
  their own sends them, coalesced to the newest answer per lease while the
  socket is full (a stalled coordinator reads nothing): renewing never
  waits on reporting;
- when the beats stop (a stalled loop) the child's stall cover renews the
  leases that were heartbeating, for at most ``max_stall``, and only while
  the coordinator's process is running (SIGSTOPped, it is not covered).

Invariants: a dead agent's lease is renewed no more than it was in-process
(only leases heard since their last keepalive, or covered during one stall);
the child ends when the coordinator does (end of file on the socket, or a
new parent). If the child lags or dies, a lease the coordinator remembers as
more than ``TTL / 2`` old is answered 0 from memory, and the caller renews it
itself (``refresh``); a dead child is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import psutil
import structlog

from workhive.coordinator.etcd.client import EtcdClient
from workhive.coordinator.etcd.lease_refresher import LeaseRefresher
from workhive.coordinator.etcd.session import LeaseKeeper
from workhive.coordinator.etcd.stall_cover import StallCover

log = structlog.get_logger("workhive.leases")

RESTART_AFTER = 1.0
"""Seconds before a keepalive process that ended is started again."""

__all__ = ["KeepaliveProcess"]


class KeepaliveProcess:
    """The coordinator's side: heartbeats answered from memory, renewals done
    by the child process. ``heard``, ``beat`` and the answers' reader run on
    the event loop; ``refresh`` may block (call it from a thread)."""

    def __init__(
        self,
        keeper: LeaseKeeper,
        ttl: float,
        *,
        connect: Callable[[], EtcdClient],
        setup: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``keeper``: this process's keepalive stream, for leases the child
        has not confirmed (``refresh``); ``connect`` and ``setup`` (logging)
        are pickled and called in the child."""
        self.memory = LeaseRefresher(keeper, ttl / 4, clock=clock)
        self.overdue = ttl / 2
        self.restarts = 0
        self._spec = pickle.dumps((connect, setup, ttl))
        self._child: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False

    # -- the event loop's side ----------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the child; its answers are read on ``loop``."""
        self._loop = loop
        self._spawn()

    def heard(self, lease_id: int) -> int:
        """A heartbeat: the remaining TTL from memory, 0 when the caller must
        ask etcd itself (not confirmed yet, or not renewed when it was due)."""
        ttl = self.memory.heard(lease_id)
        age = self.memory.last_keepalive(lease_id)
        if ttl and age is not None and age > self.overdue and self._conn is not None:
            self._on_answers()  # answers may wait unread behind a busy loop's callbacks
            ttl = self.memory.heard(lease_id)
            age = self.memory.last_keepalive(lease_id)
        return ttl if age is not None and age <= self.overdue else 0

    def refresh(self, lease_id: int) -> int:
        """Renew ``lease_id`` from this process (blocking): remaining TTL, 0 if gone."""
        return self.memory.refresh(lease_id)

    def last_keepalive(self, lease_id: int) -> float | None:
        """Seconds since etcd last confirmed ``lease_id`` (``None``: not recently)."""
        return self.memory.last_keepalive(lease_id)

    def beat(self) -> None:
        """The loop is alive: send the leases heard since the last beat."""
        heard = self.memory.take_heard()
        conn = self._conn
        if conn is None:
            self.memory.mark(heard)
            return
        try:
            _, writable, _ = select.select([], [conn.fileno()], [], 0)
            if not writable:  # the child is not reading: keep them for the next beat
                self.memory.mark(heard)
                return
            conn.send(heard)
        except OSError:
            self.memory.mark(heard)  # the reader sees the end and restarts the child

    async def beating(self, every: float = 0.1) -> None:
        """:meth:`beat` every ``every`` seconds, until cancelled."""
        while True:
            self.beat()
            await asyncio.sleep(every)

    def stop(self) -> None:
        """End the child (closing the socket ends it) and wait for it."""
        self._stopped = True
        self._close()
        self.memory.keeper.close()

    # -- the child's lifecycle ---------------------------------------------------

    def _spawn(self) -> None:
        if self._stopped or self._loop is None:
            return
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", __name__, str(theirs.fileno())]
        self._child = subprocess.Popen(cmd, stdin=subprocess.PIPE, pass_fds=[theirs.fileno()])
        theirs.close()
        assert self._child.stdin is not None
        self._child.stdin.write(self._spec)
        self._child.stdin.close()
        self._conn = Connection(ours.detach())
        self._loop.add_reader(self._conn.fileno(), self._on_answers)
        log.info("keepalive process started", pid=self._child.pid)

    def _on_answers(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while conn.poll():
                self.memory.remember(conn.recv())
        except (EOFError, OSError):
            code = self._close()
            if not self._stopped and self._loop is not None:
                self.restarts += 1
                log.error("keepalive process ended; starting another", code=code)
                self._loop.call_later(RESTART_AFTER, self._spawn)

    def _close(self) -> int | None:
        conn, child = self._conn, self._child
        self._conn = self._child = None
        if conn is not None:
            if self._loop is not None:
                with contextlib.suppress(ValueError, OSError):
                    self._loop.remove_reader(conn.fileno())
            conn.close()
        if child is None:
            return None
        try:
            return child.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()


# -- the child process ------------------------------------------------------------


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not stopped (SIGSTOP) or a zombie."""
    try:
        status = psutil.Process(pid).status()
    except psutil.Error:
        return False
    return status not in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


class Reports:
    """The child's answers on their way to the coordinator: the newest answer
    per lease waits here while a send is blocked (the socket is full when the
    coordinator's loop reads nothing), so the renewing threads never block on
    reporting. ``add`` is thread-safe; one thread sends."""

    def __init__(self, send: Callable[[dict[int, tuple[float, int]]], None]) -> None:
        self._send = send
        self._pending: dict[int, tuple[float, int]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name="workhive-keepalive-reports", daemon=True
        )
        self._thread.start()

    def add(self, when: float, ttls: dict[int, int]) -> None:
        """One round's answers (the ``LeaseRefresher.on_confirmed`` hook)."""
        with self._cond:
            for lease, ttl in ttls.items():
                self._pending[lease] = (when, ttl)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch, self._pending = self._pending, {}
            try:
                self._send(batch)
            except OSError:
                return  # the coordinator is gone: the serving loop sees it too


def serve(conn: Connection, connect: Callable[[], EtcdClient], ttl: float, parent: int) -> None:
    """The child's loop: renew what the coordinator heard, cover its stalls,
    report the answers; return when the coordinator is gone."""
    client = connect()
    reports = Reports(conn.send)
    refresher = LeaseRefresher.started(
        LeaseKeeper(client, own_connection=True), ttl, on_confirmed=reports.add
    )
    cover = StallCover(refresher, ttl=ttl, running=lambda: _running(parent))
    cover.start()
    try:
        while os.getppid() == parent:
            if not conn.poll(1.0):
                continue
            try:
                heard: list[int] = conn.recv()
            except (EOFError, OSError):
                break
            cover.beat()
            refresher.mark(heard)
    finally:
        cover.stop()
        refresher.stop()
        reports.close()
        client.close()


def main() -> None:
    """``python -m workhive.coordinator.etcd.keepalive_process FD``: the
    pickled ``(connect, setup, ttl)`` on stdin, the socket to the
    coordinator as file descriptor ``FD``."""
    connect, setup, ttl = pickle.loads(sys.stdin.buffer.read())
    if setup is not None:
        setup()
    serve(Connection(int(sys.argv[1])), connect, ttl, os.getppid())


if __name__ == "__main__":
    main()
