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

import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import grpc
import structlog

import workhive
from workhive.v1 import agent_pb2, agent_pb2_grpc, common_pb2

from . import _convert as cv
from ._backoff import Backoff
from ._execlog import ENV_VAR as EXEC_LOG_ENV
from ._execlog import ExecLog
from ._leader import LeaderHint, leader_from_error, status_details, status_name
from ._results import success
from ._session import CHANNEL_OPTIONS, Session
from ._types import (
    ConnectionState,
    CoordinatorUnavailable,
    CredentialsRefused,
    Handler,
    Outcome,
    Task,
    TaskFailure,
    TaskKey,
    tail,
)

DEFAULT_HEARTBEAT_INTERVAL = 1.0
SILENT_DIAL = 5.0  # seconds a dial may go without a Welcome
MAX_REDIRECTS = 3
"""Consecutive redirects followed without backoff before going back to the list."""
UNARY_TIMEOUT = 2.0
"""Deadline of unary RPCs (the fallback Heartbeat), capped by the heartbeat interval."""
POLL = 0.05
REFUSED = ("UNAUTHENTICATED", "PERMISSION_DENIED")
REFUSED_WORK = common_pb2.INVALID_PROJECT  # a completion refused for its new tasks
"""Session ends that mean "these credentials will not do"."""
MAX_ORPHANS = 256
"""Successful results whose claim was gone, kept in case the task comes back."""

QUEUED = "queued"  # assigned, not started; may be stolen
START_PENDING = "start_pending"  # StartRequest sent, waiting for StartGranted
RUNNABLE = "runnable"  # start granted, waiting for a free worker
RUNNING = "running"

_log = structlog.get_logger("workhive.agent")


@dataclass(eq=False)
class _Held:
    task: Task
    state: str
    seq: int
    revoked: bool = False

    @property
    def order(self) -> tuple[int, int]:
        return (-self.task.priority, self.seq)


@dataclass(frozen=True, slots=True)
class _SessionEnd:
    welcomed: bool
    redirect: LeaderHint | None = None
    code: str = ""
    detail: str = ""


@dataclass
class _Counters:
    reconnects: int = 0
    redirects: int = 0
    lease_losses: int = 0
    heartbeats_sent: int = 0
    fallback_heartbeats: int = 0
    completions_acked: int = 0
    completions_rejected: int = 0
    dropped: int = 0


def _fence_matches(ref: TaskKey, fence: int) -> bool:
    return ref.fence == 0 or ref.fence == fence


class Agent:
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

    def __init__(
        self,
        coordinators: Sequence[str] | str,
        *,
        agent_id: str | None = None,
        capabilities: Iterable[str] = (),
        slots: int = 1,
        prefetch: int = 1,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        unreachable_timeout: float | None = None,
        drain_timeout: float = 10.0,
        exec_log: str | os.PathLike[str] | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(coordinators, str):
            coordinators = [coordinators]
        addresses = [a.strip() for c in coordinators for a in c.split(",") if a.strip()]
        if not addresses:
            raise ValueError("at least one coordinator address is required")
        if slots < 1:
            raise ValueError("slots must be >= 1")
        if prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        self.coordinators: tuple[str, ...] = tuple(addresses)
        self.agent_id = agent_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.capabilities: tuple[str, ...] = tuple(capabilities)
        self.slots = slots
        self.prefetch = prefetch
        self.unreachable_timeout = unreachable_timeout
        self.drain_timeout = drain_timeout
        self._credentials = credentials
        self._metadata: tuple[tuple[str, str], ...] = (("workhive-agent-id", self.agent_id),)
        if token:
            self._metadata += (("authorization", f"Bearer {token}"),)
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._stop_event = threading.Event()
        self._sleep = sleep or self._interruptible_sleep
        path = exec_log if exec_log is not None else os.environ.get(EXEC_LOG_ENV) or None
        self._exec_log = ExecLog(path, self.agent_id)
        self._log = _log.bind(agent_id=self.agent_id)

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._held: dict[tuple[str, str], _Held] = {}
        self._unacked: dict[tuple[str, str], Outcome] = {}  # finished, awaiting an answer
        self._orphans: dict[tuple[str, str], Outcome] = {}  # succeeded, claim gone
        self._seq = 0
        self._hb_seq = 0
        self._session: Session | None = None  # the welcomed session, if any
        self._attempt: Session | None = None  # the session being dialled or served
        self._silent_until: dict[str, float] = {}  # address -> avoid it until
        self._lease_id = 0
        self._ttl = 0
        self._hb_interval = DEFAULT_HEARTBEAT_INTERVAL
        self._hb_wake = threading.Event()
        self._state = ConnectionState.CONNECTING
        self._address = ""
        self._disconnected_since: float | None = clock()
        self._drain_requested = False
        self._stop_requested = False
        self._draining = False
        self._idle_since: float | None = None
        self._finished = False  # no more work; the connection thread may end
        self._closed = False
        self._handler: Handler | None = None
        self._fatal: BaseException | None = None
        self._run_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._fallback_channels: dict[str, grpc.Channel] = {}
        self._fallback_index = 0
        self.counters = _Counters()

    # ------------------------------------------------------------------ public

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def lease_id(self) -> int:
        """The lease the coordinators granted (0 before the first Welcome)."""
        return self._lease_id

    @property
    def address(self) -> str:
        """The coordinator address of the current (or last) session."""
        return self._address

    def held(self) -> dict[str, list[TaskKey]]:
        """Snapshot of the tasks this agent holds, by state."""
        with self._lock:
            out: dict[str, list[TaskKey]] = {}
            for h in self._held.values():
                out.setdefault(h.state, []).append(h.task.key)
            return out

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
        busy = any(h.state in (RUNNABLE, RUNNING) for h in self._held.values())
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

    # ------------------------------------------------------------- connection

    def _done(self) -> bool:
        """Closed or finished (a method, so type narrowing never caches it)."""
        return self._closed or self._finished

    def _interruptible_sleep(self, seconds: float) -> None:
        self._stop_event.wait(seconds)

    def _make_channel(self, address: str) -> grpc.Channel:
        if self._credentials is not None:
            return grpc.secure_channel(address, self._credentials, options=CHANNEL_OPTIONS)
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)

    def _connection_loop(self) -> None:
        index = 0
        hint: LeaderHint | None = None
        redirects = 0
        refusals = 0
        while not self._closed and not self._finished:
            address = hint.address if hint else self._next_address(index)
            end = self._run_session(address)
            if self._done():
                return
            refusals = refusals + 1 if end.code in REFUSED else 0
            if refusals >= max(2, len(self.coordinators)):
                raise CredentialsRefused(
                    f"the coordinators refused this agent's credentials ({end.code}: "
                    f"{end.detail}); check --token/--token-file and the agent id"
                )
            if end.welcomed:
                redirects = 0
            if (
                end.redirect is not None
                and end.redirect.address != address
                and redirects < MAX_REDIRECTS
                and not self._shunned(end.redirect.address)
            ):
                redirects += 1
                hint = end.redirect
                self.counters.redirects += 1
                self._log.info("following leader", leader=end.redirect.address, via=address)
                continue
            hint = None
            redirects = 0
            index += 1
            delay = self._backoff.next_delay()
            self._log.info("reconnecting", after=round(delay, 3), last=address, code=end.code)
            self.counters.reconnects += 1
            self._sleep(delay)

    def _shunned(self, address: str) -> bool:
        """True while ``address`` recently went silent on us (see _check_silence)."""
        with self._lock:
            until = self._silent_until.get(address, 0.0)
        return self._clock() < until

    def _next_address(self, index: int) -> str:
        """The index-th configured address, skipping silent ones when possible."""
        n = len(self.coordinators)
        for k in range(n):
            candidate = self.coordinators[(index + k) % n]
            if not self._shunned(candidate):
                return candidate
        return self.coordinators[index % n]

    def _run_session(self, address: str) -> _SessionEnd:
        session = Session(address)
        channel = self._make_channel(address)
        with self._lock:
            if self._closed or self._finished:
                channel.close()
                return _SessionEnd(welcomed=False)
            self._attempt = session
            session.last_heard = self._clock()
            session.send(
                cv.hello(
                    agent_id=self.agent_id,
                    capabilities=self.capabilities,
                    slots=self.slots,
                    prefetch=self.prefetch,
                    resume_lease_id=self._lease_id,
                    sdk_version=workhive.__version__,
                    pull=self.pull,
                    held=[
                        *(h.task.key for h in self._held.values()),
                        *(o.key for o in self._unacked.values()),
                    ],
                )
            )
        try:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            call = stub.Session(session.requests(), metadata=self._metadata)
            session.call = call
            for msg in call:
                session.last_heard = self._clock()
                hint = self._on_message(session, msg)
                if hint is not None:
                    return _SessionEnd(welcomed=session.welcomed, redirect=hint, code="REDIRECT")
            return _SessionEnd(welcomed=session.welcomed, code="END")
        except grpc.RpcError as err:
            hint = leader_from_error(err)
            code = status_name(err)
            if not self._closed:
                self._log.info(
                    "session ended",
                    address=address,
                    code=code,
                    detail=status_details(err),
                    leader=hint.address if hint else None,
                )
            return _SessionEnd(
                welcomed=session.welcomed, redirect=hint, code=code, detail=status_details(err)
            )
        finally:
            with self._lock:
                if self._session is session:
                    self._session = None
                    self._state = ConnectionState.SUSPENDED
                    self._disconnected_since = self._clock()
                if self._attempt is session:
                    self._attempt = None
            session.close()
            channel.close()

    # ------------------------------------------------------ coordinator input

    def _on_message(self, session: Session, msg: agent_pb2.CoordinatorMessage) -> LeaderHint | None:
        kind = msg.WhichOneof("kind")
        cancel: list[TaskKey] = []
        with self._lock:
            if kind == "welcome":
                self._on_welcome(session, msg.welcome)
            elif kind == "redirect":
                if msg.redirect.leader.address:
                    return LeaderHint(msg.redirect.leader.address, msg.redirect.leader.leader_id)
                self._log.warning("redirect without a leader address", address=session.address)
            elif kind == "assign":
                self._on_assign(msg.assign)
            elif kind == "start_granted":
                self._on_granted(cv.key_from_proto(msg.start_granted.task))
            elif kind == "start_refused":
                self._on_taken_back(
                    cv.key_from_proto(msg.start_refused.task), msg.start_refused.reason, cancel
                )
            elif kind == "revoke":
                self._on_taken_back(cv.key_from_proto(msg.revoke.task), msg.revoke.reason, cancel)
            elif kind == "completion_ack":
                key = cv.key_from_proto(msg.completion_ack.task)
                if self._take_unacked(key) is not None:
                    self.counters.completions_acked += 1
                    self._answered(key, True)
            elif kind == "completion_rejected":
                rej = msg.completion_rejected
                key = cv.key_from_proto(rej.task)
                rejected = self._take_unacked(key)
                self.counters.completions_rejected += 1
                reason = common_pb2.ErrorReason.Name(rej.reason)
                if rejected is not None and rejected.succeeded and rej.reason != REFUSED_WORK:
                    self._keep_orphan(rejected)  # refused work (bad new tasks) may run again
                self._answered(key, False, rej.message)
                self._exec_log.record("rejected", key, reason=reason)
                self._log.warning(
                    "completion rejected: dropping it",
                    project=key.project_id,
                    task=key.task_id,
                    fence=key.fence,
                    reason=reason,
                    message=rej.message,
                )
            elif kind == "claim_empty":
                self._claim_empty(msg.claim_empty.seq)
            elif kind == "heartbeat_ack":
                pass
            elif kind == "drain_request":
                self._log.info(
                    "drain requested by the coordinator", reason=msg.drain_request.reason
                )
                self._drain_requested = True
            else:
                self._log.warning("unknown coordinator message", kind=kind)
        cancel_fn = getattr(self._handler, "cancel", None)
        if callable(cancel_fn):
            for key in cancel:
                cancel_fn(key)
        return None

    def _on_welcome(self, session: Session, w: agent_pb2.Welcome) -> None:
        lost = self._lease_id != 0 and not w.resumed
        if lost:
            self.counters.lease_losses += 1
            self._state = ConnectionState.LOST
            self._log.warning("lease lost: dropping queued tasks", old_lease=self._lease_id)
            for key, h in list(self._held.items()):
                if h.state in (QUEUED, START_PENDING):
                    del self._held[key]
                    self._dropped(h.task.key, "lease lost")
        self._lease_id = w.lease_id
        self._ttl = w.ttl_seconds
        if w.heartbeat_interval_ms:
            self._hb_interval = w.heartbeat_interval_ms / 1000.0
        elif w.ttl_seconds:
            self._hb_interval = w.ttl_seconds / 3.0
        session.welcomed = True
        self._session = session
        self._address = session.address
        self._state = ConnectionState.CONNECTED
        self._disconnected_since = None
        self._backoff.reset()
        self._log.info(
            "welcomed",
            address=session.address,
            lease_id=w.lease_id,
            resumed=w.resumed,
            coordinator=w.coordinator_id,
        )
        for o in self._unacked.values():
            session.send(cv.outcome(o))
        for h in sorted(self._held.values(), key=lambda h: h.order):
            if h.state == START_PENDING:
                session.send(cv.start_request(h.task.key))
        if self._draining:
            session.send(cv.drain(return_queue=True))
        self._pump()
        self._hb_wake.set()
        self._welcomed()

    # Pull mode hooks (``_pull.PullCore``), called with the lock held.
    pull = False

    def _welcomed(self) -> None: ...
    def _claim_empty(self, seq: int) -> None: ...
    def _answered(self, key: TaskKey, committed: bool, message: str = "") -> None: ...

    def _on_assign(self, a: agent_pb2.Assign) -> None:
        """Take an assignment; a task is never run twice by this agent.

        A task already running or finished here under an older claim (its
        lease expired, or a new leader re-claimed it) carries on under the
        newer claim: the run in progress, or the result awaiting its ack, is
        reported under the new fence instead of running the task again.
        """
        task = cv.task_from_assign(a)
        tid = (task.project_id, task.task_id)
        existing = self._held.get(tid)
        if existing is not None:
            if existing.task.fence == task.fence:
                if a.started and existing.state in (QUEUED, START_PENDING):
                    existing.state = RUNNABLE
                    self._work.notify_all()
                return
            if existing.state in (RUNNABLE, RUNNING):
                if task.fence > existing.task.fence:
                    self._log.warning(
                        "task re-claimed while it runs here: the run goes on under the new claim",
                        task=task.task_id,
                        fence=task.fence,
                        old_fence=existing.task.fence,
                    )
                    existing.task = replace(existing.task, fence=task.fence, attempt=task.attempt)
                    existing.revoked = False
                    if not a.started and self._session is not None:
                        self._session.send(cv.start_request(existing.task.key))
                return
        finished = self._unacked.get(tid) or self._orphans.pop(tid, None)
        if finished is not None and task.fence >= finished.key.fence:
            self._report_again(finished, task, a.started)
            return
        if self._draining and not a.started:
            self._dropped(task.key, "draining")
            return
        self._seq += 1
        self._held[tid] = _Held(task, RUNNABLE if a.started else QUEUED, self._seq)
        if a.started:
            self._work.notify_all()
        self._pump()

    def _report_again(self, finished: Outcome, task: Task, started: bool) -> None:
        """An assignment for a task whose run already finished here: report the
        result (under the assignment's claim) instead of running it again."""
        outcome = replace(finished, key=task.key)
        self._unacked[(task.project_id, task.task_id)] = outcome
        self._log.info(
            "assign for a task already finished here: reporting its result",
            task=task.task_id,
            fence=task.fence,
            old_fence=finished.key.fence,
        )
        if self._session is not None:
            if not started:
                self._session.send(cv.start_request(task.key))
            self._session.send(cv.outcome(outcome))

    def _on_granted(self, key: TaskKey) -> None:
        h = self._held.get(key.id)
        waiting = h is not None and h.state in (QUEUED, START_PENDING)
        if h is None or not waiting or not _fence_matches(key, h.task.fence):
            self._log.info("start granted for a task not waiting for it", task=key.task_id)
            return
        h.state = RUNNABLE
        self._work.notify_all()

    def _on_taken_back(self, key: TaskKey, reason: str, cancel: list[TaskKey]) -> None:
        h = self._held.get(key.id)
        if h is None or not _fence_matches(key, h.task.fence):
            return
        if h.state == RUNNING:
            h.revoked = True
            cancel.append(h.task.key)
            self._log.warning("running task revoked", task=key.task_id, reason=reason)
            return
        del self._held[key.id]
        self._dropped(h.task.key, reason or "refused")
        self._pump()
        self._work.notify_all()

    def _take_unacked(self, key: TaskKey) -> Outcome | None:
        """Remove and return the outcome awaiting an answer for this claim."""
        o = self._unacked.get(key.id)
        if o is None or not _fence_matches(key, o.key.fence):
            return None
        return self._unacked.pop(key.id)

    def _keep_orphan(self, outcome: Outcome) -> None:
        """A successful run whose claim was gone when it reported (the lease
        expired under it): kept, bounded, so that if the task is claimed for
        this agent again its result is reported instead of running it twice."""
        self._orphans[outcome.key.id] = outcome
        while len(self._orphans) > MAX_ORPHANS:
            self._orphans.pop(next(iter(self._orphans)))

    def _dropped(self, key: TaskKey, reason: str) -> None:
        self.counters.dropped += 1
        self._exec_log.record("dropped", key, reason=reason)
        self._log.info("task dropped", project=key.project_id, task=key.task_id, reason=reason)

    def _pump(self) -> None:
        """Ask to start queued tasks while slots are free (lock held)."""
        if self._session is None or self._draining or self._finished:
            return
        active = sum(1 for h in self._held.values() if h.state != QUEUED)
        free = self.slots - active
        if free <= 0:
            return
        queued = sorted(
            (h for h in self._held.values() if h.state == QUEUED), key=lambda h: h.order
        )
        for h in queued[:free]:
            h.state = START_PENDING
            self._session.send(cv.start_request(h.task.key))

    # ---------------------------------------------------------------- workers

    def _worker_loop(self) -> None:
        while True:
            with self._work:
                while True:
                    if self._closed:
                        return
                    runnable = [h for h in self._held.values() if h.state == RUNNABLE]
                    if runnable:
                        h = min(runnable, key=lambda h: h.order)
                        h.state = RUNNING
                        break
                    self._work.wait(0.5)
            outcome = self._execute(h.task)
            with self._work:
                if self._held.get(h.task.key.id) is h:
                    del self._held[h.task.key.id]
                if self._done() and self._stop_requested:
                    return
                # h.task may carry a newer claim than the run started under (_on_assign)
                outcome = replace(outcome, key=h.task.key)
                self._unacked[outcome.key.id] = outcome
                if self._session is not None:
                    self._session.send(cv.outcome(outcome))
                self._pump()
                self._work.notify_all()

    def _execute(self, task: Task) -> Outcome:
        assert self._handler is not None
        key = task.key
        self._exec_log.record("start", key)
        log = self._log.bind(project=task.project_id, task=task.task_id, fence=task.fence)
        log.info("task started", attempt=task.attempt)
        t0 = self._clock()
        try:
            result = self._handler(task)
        except TaskFailure as exc:
            outcome = Outcome(
                key,
                succeeded=False,
                duration_seconds=self._clock() - t0,
                output_tail=tail(exc.output),
                reason=exc.reason,
                exit_code=exc.exit_code,
                retryable=exc.retryable,
                released=exc.released,
            )
        except Exception as exc:
            outcome = Outcome(
                key,
                succeeded=False,
                duration_seconds=self._clock() - t0,
                output_tail=tail(traceback.format_exc()),
                reason=f"{type(exc).__name__}: {exc}",
                retryable=True,
            )
        else:
            outcome = success(key, result, self._clock() - t0)
        result_name = "succeeded" if outcome.succeeded else "failed"
        self._exec_log.record("finish", key, outcome=result_name)
        log.info(
            "task finished",
            outcome=result_name,
            seconds=round(outcome.duration_seconds, 3),
            reason=outcome.reason or None,
        )
        return outcome

    # -------------------------------------------------------------- heartbeat

    def _heartbeat_loop(self) -> None:
        while not self._closed:
            self._hb_wake.wait(self._hb_interval)
            self._hb_wake.clear()
            if self._done():
                return
            with self._lock:
                session = self._session
                lease = self._lease_id
                self._hb_seq += 1
                seq = self._hb_seq
                running = [
                    h.task.key for h in self._held.values() if h.state in (RUNNABLE, RUNNING)
                ]
            if session is not None:
                session.send(cv.heartbeat(seq, running))
                self.counters.heartbeats_sent += 1
            elif lease and not self._finished:
                self._fallback_heartbeat(lease, seq)
            self._check_silence()

    def _check_silence(self) -> None:
        """Abandon a stream the coordinator stopped answering (a paused or
        partitioned process keeps TCP open, so gRPC alone notices late): no
        Welcome within SILENT_DIAL seconds, or no message (heartbeats are
        acknowledged) for half the lease TTL. The connection loop then dials
        the next address and the unary heartbeat keeps the lease alive."""
        with self._lock:
            attempt = self._attempt
            ttl = self._ttl
        if attempt is None:
            return
        limit = max(ttl / 2.0, 3 * self._hb_interval) if attempt.welcomed else SILENT_DIAL
        if self._clock() - attempt.last_heard > limit:
            # A silent coordinator (paused, partitioned) is avoided for a lease
            # TTL, even when a follower still names it leader: by then its lease
            # has expired and another replica leads.
            with self._lock:
                self._silent_until[attempt.address] = self._clock() + max(ttl, SILENT_DIAL)
            self._log.warning(
                "coordinator silent: abandoning the session",
                address=attempt.address,
                silent_for=round(self._clock() - attempt.last_heard, 2),
            )
            attempt.close()

    def _fallback_heartbeat(self, lease: int, seq: int) -> None:
        """Keep the lease alive through any replica while the stream is down."""
        address = self.coordinators[self._fallback_index % len(self.coordinators)]
        channel = self._fallback_channels.get(address)
        if channel is None:
            channel = self._fallback_channels[address] = self._make_channel(address)
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        try:
            stub.Heartbeat(
                agent_pb2.HeartbeatRequest(agent_id=self.agent_id, lease_id=lease, seq=seq),
                timeout=min(UNARY_TIMEOUT, max(0.2, self._hb_interval)),
                metadata=self._metadata,
            )
            self.counters.fallback_heartbeats += 1
        except grpc.RpcError as err:
            self._fallback_index += 1
            code = status_name(err)
            self._log.debug("fallback heartbeat failed", address=address, code=code)
