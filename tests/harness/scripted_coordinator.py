"""A real gRPC ``AgentService`` on 127.0.0.1 whose behaviour the test scripts.

It speaks the v1 session protocol just far enough to drive the agent SDK:
Welcome (with lease resume), automatic or manual StartGranted/StartRefused,
CompletionAck/CompletionRejected, Redirect as a message or as
FAILED_PRECONDITION + ``google.rpc.ErrorInfo`` (NOT_LEADER), UNAVAILABLE, and
dropping live streams. Everything received is recorded with a timestamp.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from workhive.v1 import agent_pb2, agent_pb2_grpc, common_pb2

SERVER_OPTIONS = (
    # accept the agents' keepalive pings (agent: every 20 s)
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)

_END = object()


@dataclass(frozen=True)
class Received:
    session: int  # 0 for unary calls
    t: float
    msg: Any  # AgentMessage or HeartbeatRequest

    @property
    def kind(self) -> str:
        if isinstance(self.msg, agent_pb2.HeartbeatRequest):
            return "unary_heartbeat"
        return str(self.msg.WhichOneof("kind"))


@dataclass(frozen=True)
class _Abort:
    code: grpc.StatusCode
    message: str


@dataclass(frozen=True)
class _Status(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


@dataclass
class ServerSession:
    number: int
    hello: agent_pb2.Hello
    lease_id: int
    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    live: bool = True


def no_leader_status() -> grpc.Status:
    """UNAVAILABLE as a replica answers while nobody leads: ErrorInfo NO_LEADER."""
    info = error_details_pb2.ErrorInfo(reason="NO_LEADER", domain="workhive.dev")
    st = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="no leader is elected yet")
    st.details.add().Pack(info)
    base = rpc_status.to_status(st)
    return _Status(base.code, base.details, tuple(base.trailing_metadata))


def not_leader_status(leader: common_pb2.LeaderInfo, *, details: bool = True) -> grpc.Status:
    """FAILED_PRECONDITION as a follower answers: ErrorInfo + trailing metadata."""
    mirror: tuple[tuple[str, str | bytes], ...] = (
        ("workhive-error-reason", "NOT_LEADER"),
        ("workhive-leader-id", leader.leader_id),
        ("workhive-leader-address", leader.address),
    )
    if not details:
        return _Status(grpc.StatusCode.FAILED_PRECONDITION, "not the leader", mirror)
    info = error_details_pb2.ErrorInfo(
        reason="NOT_LEADER",
        domain="workhive.dev",
        metadata={
            "leader_id": leader.leader_id,
            "leader_address": leader.address,
            "term": str(leader.term),
        },
    )
    st = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="not the leader")
    st.details.add().Pack(info)
    base = rpc_status.to_status(st)
    return _Status(base.code, base.details, tuple(base.trailing_metadata) + mirror)


class ScriptedCoordinator(agent_pb2_grpc.AgentServiceServicer):
    """Scriptable AgentService. Use as a context manager; ``address`` to dial.

    Attributes that scripts set (any time):
        mode: "serve" | "redirect" (Redirect message after Hello) |
            "not_leader" (FAILED_PRECONDITION + ErrorInfo) |
            "not_leader_md" (the same, trailing metadata only) | "unavailable" |
            "no_leader" (UNAVAILABLE + ErrorInfo NO_LEADER, as a replica answers
            while nobody leads) |
            "unauthenticated" (a refused token).
        leader: LeaderInfo used by the redirect modes.
        serve_relayed: serve a session that asks for a relay
            (``workhive-relay: 1``) whatever the mode; ``relayed`` counts them.
        auto_grant: answer StartRequest with StartGranted.
        refuse: task ids whose StartRequest gets StartRefused.
        auto_ack: answer completions with CompletionAck.
        reject: task ids whose completion gets CompletionRejected(STALE_FENCE).
        heartbeat_interval_ms / ttl_seconds: sent in Welcome.
        heartbeat_ttl: when set, session heartbeats are answered with a
            HeartbeatAck saying the lease has that many seconds left (a
            leader renewing it answers about the TTL; one cut from etcd, less
            and less); None (the default): they go unanswered.
    """

    def __init__(
        self,
        *,
        coordinator_id: str = "scripted-1",
        heartbeat_interval_ms: int = 100,
        ttl_seconds: int = 6,
        first_lease: int = 7000,
    ) -> None:
        self.coordinator_id = coordinator_id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.ttl_seconds = ttl_seconds
        self.mode = "serve"
        self.leader = common_pb2.LeaderInfo()
        self.serve_relayed = False
        self.relayed = 0
        self.heartbeat_ttl: int | None = None
        self.auto_grant = True
        self.refuse: set[str] = set()
        self.auto_ack = True
        self.reject: set[str] = set()
        self.received: list[Received] = []
        self.hellos: list[agent_pb2.Hello] = []
        self.sessions: list[ServerSession] = []
        self.leases: set[int] = set()
        self._lease_ids = itertools.count(first_lease)
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="scripted"),
            options=SERVER_OPTIONS,
        )
        agent_pb2_grpc.add_AgentServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- control

    def start(self) -> ScriptedCoordinator:
        self._server.start()
        return self

    def stop(self) -> None:
        with self._lock:
            for s in self.sessions:
                s.out.put(_END)
        self._server.stop(grace=None).wait(5)

    def __enter__(self) -> ScriptedCoordinator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def live_session(self, timeout: float = 5.0) -> ServerSession:
        """The most recent live session (waits for one)."""
        found: list[ServerSession] = []

        def pred() -> bool:
            found[:] = [s for s in self.sessions if s.live]
            return bool(found)

        self.wait_for(pred, timeout, "a live session")
        return found[-1]

    def send(self, msg: agent_pb2.CoordinatorMessage, timeout: float = 5.0) -> None:
        self.live_session(timeout).out.put(msg)

    def assign(
        self,
        task_id: str,
        *,
        fence: int,
        project_id: str = "p1",
        started: bool = False,
        attempt: int = 1,
        payload_json: str = "",
        priority: int = 5,
        kind: str = "",
    ) -> None:
        self.send(
            agent_pb2.CoordinatorMessage(
                assign=agent_pb2.Assign(
                    task=ref(task_id, fence, project_id, attempt),
                    payload_json=payload_json,
                    priority=priority,
                    kind=kind,
                    started=started,
                    term=1,
                )
            )
        )

    def grant(self, task_id: str, fence: int, project_id: str = "p1", attempt: int = 1) -> None:
        self.send(
            agent_pb2.CoordinatorMessage(
                start_granted=agent_pb2.StartGranted(task=ref(task_id, fence, project_id, attempt))
            )
        )

    def revoke(self, task_id: str, fence: int, project_id: str = "p1") -> None:
        self.send(
            agent_pb2.CoordinatorMessage(
                revoke=agent_pb2.Revoke(task=ref(task_id, fence, project_id), reason="stolen")
            )
        )

    def ack(self, task_id: str, fence: int, project_id: str = "p1") -> None:
        self.send(
            agent_pb2.CoordinatorMessage(
                completion_ack=agent_pb2.CompletionAck(task=ref(task_id, fence, project_id))
            )
        )

    def drop_sessions(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        """Abort every live stream (the agent sees ``code``)."""
        with self._lock:
            for s in self.sessions:
                if s.live:
                    s.out.put(_Abort(code, "scripted disconnect"))

    # ------------------------------------------------------------- inspection

    def messages(self, kind: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if kind is None or r.kind == kind]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or pred}")
            time.sleep(0.02)

    def wait_kind(self, kind: str, count: int = 1, timeout: float = 5.0) -> list[Received]:
        self.wait_for(lambda: len(self.messages(kind)) >= count, timeout, f"{count} x {kind}")
        return self.messages(kind)

    # ------------------------------------------------------------ the service

    def _record(self, session: int, msg: Any) -> None:
        with self._cv:
            self.received.append(Received(session, time.monotonic(), msg))
            self._cv.notify_all()

    def Session(
        self, request_iterator: Iterator[agent_pb2.AgentMessage], context: grpc.ServicerContext
    ) -> Iterator[agent_pb2.CoordinatorMessage]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("kind") != "hello":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be Hello")
        number = next(self._numbers)
        self._record(number, first)
        hello = first.hello
        with self._lock:
            self.hellos.append(hello)
        mode = self.mode
        if self.serve_relayed and ("workhive-relay", "1") in tuple(
            context.invocation_metadata() or ()
        ):
            mode = "serve"
            with self._lock:
                self.relayed += 1
        if mode == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "no leader")
        if mode == "no_leader":
            context.abort_with_status(no_leader_status())
        if mode == "unauthenticated":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Session: an unknown bearer token")
        if mode in ("not_leader", "not_leader_md"):
            context.abort_with_status(not_leader_status(self.leader, details=mode == "not_leader"))
        if mode == "redirect":
            yield agent_pb2.CoordinatorMessage(redirect=agent_pb2.Redirect(leader=self.leader))
            return
        with self._lock:
            resumed = hello.resume_lease_id in self.leases
            lease = hello.resume_lease_id if resumed else next(self._lease_ids)
            self.leases.add(lease)
            sess = ServerSession(number, hello, lease)
            self.sessions.append(sess)
        reader = threading.Thread(
            target=self._read, args=(sess, request_iterator), name=f"scripted-read-{number}"
        )
        reader.daemon = True
        reader.start()
        try:
            yield agent_pb2.CoordinatorMessage(
                welcome=agent_pb2.Welcome(
                    lease_id=lease,
                    ttl_seconds=self.ttl_seconds,
                    heartbeat_interval_ms=self.heartbeat_interval_ms,
                    coordinator_id=self.coordinator_id,
                    resumed=resumed,
                )
            )
            while True:
                try:
                    item = sess.out.get(timeout=0.1)
                except queue.Empty:
                    if not context.is_active():
                        return
                    continue
                if item is _END:
                    return
                if isinstance(item, _Abort):
                    context.abort(item.code, item.message)
                yield item
        finally:
            with self._cv:
                sess.live = False
                self._cv.notify_all()

    def _read(self, sess: ServerSession, it: Iterator[agent_pb2.AgentMessage]) -> None:
        try:
            for write in it:
                batch = write.batch.messages if write.WhichOneof("kind") == "batch" else (write,)
                for msg in batch:
                    self._record(sess.number, msg)
                    reply = self._react(msg)
                    if reply is not None:
                        sess.out.put(reply)
        except grpc.RpcError:
            pass
        except Exception:  # the stream was torn down under us
            pass
        sess.out.put(_END)

    def _react(self, msg: agent_pb2.AgentMessage) -> agent_pb2.CoordinatorMessage | None:
        kind = msg.WhichOneof("kind")
        if kind == "heartbeat" and self.heartbeat_ttl is not None:
            return agent_pb2.CoordinatorMessage(
                heartbeat_ack=agent_pb2.HeartbeatAck(
                    seq=msg.heartbeat.seq, ttl_seconds=self.heartbeat_ttl
                )
            )
        if kind == "start":
            task = msg.start.task
            if task.task_id in self.refuse:
                return agent_pb2.CoordinatorMessage(
                    start_refused=agent_pb2.StartRefused(task=task, reason="stolen")
                )
            if self.auto_grant:
                return agent_pb2.CoordinatorMessage(start_granted=agent_pb2.StartGranted(task=task))
        elif kind in ("completed", "failed"):
            task = getattr(msg, kind).task
            if task.task_id in self.reject:
                return agent_pb2.CoordinatorMessage(
                    completion_rejected=agent_pb2.CompletionRejected(
                        task=task, reason=common_pb2.STALE_FENCE, message="claim re-created"
                    )
                )
            if self.auto_ack:
                return agent_pb2.CoordinatorMessage(
                    completion_ack=agent_pb2.CompletionAck(task=task)
                )
        return None

    def GetLeader(
        self, request: agent_pb2.GetLeaderRequest, context: grpc.ServicerContext
    ) -> common_pb2.LeaderInfo:
        return self.leader

    def Heartbeat(
        self, request: agent_pb2.HeartbeatRequest, context: grpc.ServicerContext
    ) -> agent_pb2.HeartbeatAck:
        self._record(0, request)
        if request.lease_id not in self.leases:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown lease")
        return agent_pb2.HeartbeatAck(seq=request.seq, ttl_seconds=self.ttl_seconds)


def ref(task_id: str, fence: int, project_id: str = "p1", attempt: int = 1) -> common_pb2.TaskRef:
    return common_pb2.TaskRef(project_id=project_id, task_id=task_id, fence=fence, attempt=attempt)
