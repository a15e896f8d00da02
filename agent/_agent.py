"""``Agent``: the blocking SDK entry point (connection, heartbeat, workers).

Threads (docs/design.md, "Concurrency model" and rule 7):

- the caller's thread runs :meth:`Agent.run` and supervises (drain, stop,
  unreachable timeout); signal handlers only set flags it polls;
- one *connection* thread owns the ``AgentService.Session`` stream: it dials,
  follows redirects, reads coordinator messages and reconnects with backoff;
- one *heartbeat* thread sends ``Heartbeat`` every
  ``Welcome.heartbeat_interval_ms``; it never waits on task code (handlers run
  outside every lock, sends never block). While the stream is down it
  refreshes the lease through the unary ``Heartbeat`` RPC on any replica;
- ``slots`` *worker* threads run the handler.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from . import _convert as cv
from ._connection import Connection
from ._heartbeat import Heartbeats
from ._held import QUEUED, RUNNABLE, RUNNING, WAITING
from ._types import ConnectionState, CoordinatorUnavailable, CredentialsRefused, Handler
from ._workers import Workers

POLL = 0.05


class Agent(Connection, Heartbeats, Workers):
    """A workhive worker: connects to the coordinators and runs tasks.

    Example::

        def handle(task: Task) -> str | None:
            ...  # return output text (success) or raise (failure)

        Agent(["10.0.0.1:50051", "10.0.0.2:50051"], capabilities=["python"]).run(handle)

    Args:
        coordinators: Addresses (``host:port``) of the coordinator replicas,
            a list or one comma-separated string. Any replica will do: a
            follower redirects the agent to the leader.
        agent_id: Stable id; default ``<hostname>-<8 hex>``.
        capabilities: What this agent can do (tasks' ``requires`` filter).
        slots: Tasks run at the same time (one worker thread per slot).
        prefetch: Assigned-not-started tasks the agent would like queued.
        token: Sent as ``authorization: Bearer <token>`` metadata on every call.
        credentials: TLS channel credentials; insecure channels when ``None``.
        unreachable_timeout: ``run`` raises :class:`CoordinatorUnavailable`
            when no session was welcomed for this many seconds (``None``: never).
        drain_timeout: After a drain request, how long to wait for the
            coordinator's answers (start grants, completion acks) once no task
            is running any more.
        exec_log: Path of the execution log (JSON lines); default env
            ``WORKHIVE_EXEC_LOG``.
        backoff: Reconnect delays (capped exponential, full jitter).
        sleep: ``sleep(seconds)`` between reconnect attempts; default waits on
            an event that ``stop`` sets.
        clock: Monotonic clock (seconds).
    """

    def run(self, handler: Handler) -> None:
        """Connect and run tasks until :meth:`drain` finished or :meth:`stop`.

        Blocks. Raises :class:`CoordinatorUnavailable` when no coordinator
        welcomed the agent for ``unreachable_timeout`` seconds.
        """
        with self._lock:
            if self._handler is not None:
                raise RuntimeError("Agent.run() may be called only once")
            self._handler = handler
            self._disconnected_since = self._clock()
        self._run_thread = threading.current_thread()
        self._log.info("agent starting", coordinators=list(self.coordinators), slots=self.slots)
        specs: list[tuple[str, Callable[[], None]]] = [
            ("workhive-agent-connection", self._connection_loop),
            ("workhive-agent-heartbeat", self._heartbeat_loop),
        ]
        specs += [(f"workhive-agent-worker-{i}", self._worker_loop) for i in range(self.slots)]
        for name, target in specs:
            t = threading.Thread(target=self._guard, args=(target,), name=name, daemon=True)
            self._threads.append(t)
            t.start()
        try:
            self._supervise()
        finally:
            self._shutdown()

    def drain(self) -> None:
        """Stop taking work: hand the queue back, finish running tasks, report, exit.

        Non-blocking and safe to call from a signal handler; :meth:`run`
        returns when the drain is complete.
        """
        self._drain_requested = True
        if threading.current_thread() is not self._run_thread:
            self._hb_wake.set()

    def stop(self) -> None:
        """Stop now: cancel the stream, kill what the handler runs (if it can).

        Running tasks are not reported; their claims expire with the lease.
        Idempotent, non-blocking, safe from a signal handler.
        """
        self._stop_requested = True

    # ------------------------------------------------------------- supervisor

    def _guard(self, target: Callable[[], None]) -> None:
        """Run a thread body; a crash stops the agent and is re-raised by ``run``."""
        try:
            target()
        except BaseException as exc:
            if self._fatal is None:
                self._fatal = exc
            self._stop_requested = True

    def _supervise(self) -> None:
        while True:
            if isinstance(self._fatal, CredentialsRefused):
                self._log.error("credentials refused", error=str(self._fatal))
                raise self._fatal
            if self._fatal is not None:
                raise RuntimeError(
                    f"agent thread crashed: {type(self._fatal).__name__}: {self._fatal}"
                ) from self._fatal
            if self._stop_requested:
                self._log.info("agent stopping")
                return
            if self._drain_requested and not self._draining:
                self._begin_drain()
            now = self._clock()
            with self._lock:
                if self._draining and self._drain_complete(now):
                    self._finished = True
                    session = self._session
                else:
                    session = None
                disconnected = self._disconnected_since
            if self._finished:
                if session is not None:
                    session.half_close()
                self._log.info("agent drained")
                return
            if (
                self.unreachable_timeout is not None
                and disconnected is not None
                and now - disconnected > self.unreachable_timeout
            ):
                self._log.error("no coordinator reachable", seconds=round(now - disconnected, 1))
                raise CoordinatorUnavailable(
                    f"no coordinator of {', '.join(self.coordinators)} welcomed the agent "
                    f"for {self.unreachable_timeout:g}s"
                )
            self._stop_event.wait(POLL)

    def _begin_drain(self) -> None:
        with self._lock:
            self._draining = True
            for key, h in list(self._held.items()):
                if h.state == QUEUED:
                    del self._held[key]
                    self._dropped(h.task.key, "drain")
            if self._session is not None:
                self._session.send(cv.drain(return_queue=True))
            self._work.notify_all()
        self._log.info("draining")

    def _drain_complete(self, now: float) -> bool:
        busy = any(h.state in (WAITING, RUNNABLE, RUNNING) for h in self._held.values())
        if busy:
            self._idle_since = None
            return False
        if not self._held and not self._unacked:
            return True
        if self._idle_since is None:
            self._idle_since = now
            return False
        if now - self._idle_since > self.drain_timeout:
            self._log.warning(
                "drain: giving up waiting for the coordinator",
                start_pending=[h.task.task_id for h in self._held.values()],
                unacked=len(self._unacked),
            )
            return True
        return False

    def _shutdown(self) -> None:
        self._stop_event.set()  # wakes a connection thread sleeping in backoff
        with self._lock:
            self._closed = True
            self._finished = True
            attempt = self._attempt
            self._work.notify_all()
        self._hb_wake.set()
        if attempt is not None:
            attempt.half_close()
        for t in self._threads:
            if t.name == "workhive-agent-connection":
                t.join(timeout=1.0)
        with self._lock:
            attempt = self._attempt
        if attempt is not None:
            attempt.close()
        handler = self._handler
        terminate = getattr(handler, "terminate", None)
        if self._stop_requested and callable(terminate):
            terminate()
        # Workers still inside a handler that cannot be interrupted are daemon
        # threads: give them a shared grace period, not one per slot.
        deadline = time.monotonic() + 2.0
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for ch in self._fallback_channels.values():
            ch.close()
        self._exec_log.close()
        self._state = ConnectionState.CLOSED
        self._log.info("agent stopped")
