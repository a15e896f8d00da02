"""``Client``: a blocking client of a workhive cluster that follows the leader.

Every call has a deadline. A call tries the last address that answered, then
the others; a follower's ``FAILED_PRECONDITION``/``NOT_LEADER`` answer names
the leader, which is dialled next (and added to the addresses); ``UNAVAILABLE``
and ``DEADLINE_EXCEEDED`` move on to the next address and, after a full round,
back off, until ``timeout`` seconds have passed. Any other error is raised at
once as a :class:`WorkhiveError` subclass. Only idempotent calls are retried
(a retried submit answers ``ProjectExists`` if the first try had committed).
Protocol details: docs/client.md and docs/design.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from workhive.client import _convert
from workhive.client._errors import Unavailable, UnknownProject, WaitTimeout, from_rpc
from workhive.client._security import CredentialsError, channel_credentials, read_token_file
from workhive.client._types import (
    ClusterStatus,
    ProjectEvent,
    ProjectLike,
    ProjectStatus,
    Submitted,
    TaskLike,
    TasksAdded,
    TaskStatus,
)
from workhive.v1 import client_pb2, client_pb2_grpc

T = TypeVar("T")

_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# Projects of many tasks with large payloads: the server enforces its own limits.
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def error_reason(err: grpc.RpcError) -> tuple[str, dict[str, str]]:
    """The workhive reason and metadata of a failed call (``""`` if none):
    from the ``google.rpc.ErrorInfo`` status detail, else trailing metadata."""
    status = rpc_status.from_call(err)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info.reason, dict(info.metadata)
    trailing: dict[str, str] = {}
    for m in err.trailing_metadata() or ():
        value: object = m.value  # str at runtime for text keys (the stubs say bytes)
        if isinstance(value, str):
            trailing[m.key] = value
    meta = {}
    if "workhive-leader-address" in trailing:
        meta["leader_address"] = trailing["workhive-leader-address"]
    return trailing.get("workhive-error-reason", ""), meta


class Client:
    """Submit, inspect, wait for, watch and cancel projects.

    Args:
        addresses: coordinator ``host:port`` addresses; any replica will do.
        timeout: how long a call keeps retrying while no coordinator or no
            leader answers (seconds).
        call_deadline: the deadline of one RPC (seconds; a submit gets three).
        tls: dial over TLS (implied by ``tls_ca`` or ``credentials``).
        tls_ca, tls_cert, tls_key: PEM files: the CA of the coordinators'
            certificate (system roots when not given); this client's
            certificate and key for mutual TLS.
        token, token_file: a bearer token, or a file holding one (first line).
        credentials: ready-made channel credentials (instead of the files).

    Raises:
        CredentialsError: a TLS or token file is unreadable, or options clash.
    """

    def __init__(
        self,
        addresses: Sequence[str] | str,
        *,
        timeout: float = 15.0,
        call_deadline: float = 10.0,
        tls: bool = False,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        token: str | None = None,
        token_file: str | Path | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if isinstance(addresses, str):
            addresses = addresses.split(",")
        self._addresses = [a.strip() for a in addresses if a.strip()]
        if not self._addresses:
            raise ValueError("at least one coordinator address is required")
        if token and token_file:
            raise CredentialsError("give token or token_file, not both")
        if token_file:
            token = read_token_file(token_file)
        if credentials is None and (tls or tls_ca or tls_cert or tls_key):
            credentials = channel_credentials(tls_ca, tls_cert, tls_key)
        self._credentials = credentials
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._timeout = timeout
        self._deadline = call_deadline
        self._channels: dict[str, grpc.Channel] = {}
        self._preferred = self._addresses[0]

    # -- plumbing ------------------------------------------------------------------

    def _stub(self, address: str) -> client_pb2_grpc.ClientServiceStub:
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is not None:
                channel = grpc.secure_channel(address, self._credentials, _CHANNEL_OPTIONS)
            else:
                channel = grpc.insecure_channel(address, _CHANNEL_OPTIONS)
            self._channels[address] = channel
        return client_pb2_grpc.ClientServiceStub(channel)

    def close(self) -> None:
        """Close every channel (idempotent)."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self, fn: Callable[[client_pb2_grpc.ClientServiceStub], T], *, until: float | None = None
    ) -> T:
        """Run ``fn`` against the leader-following address order (module doc);
        retry until ``until`` (monotonic), default ``timeout`` from now."""
        give_up = time.monotonic() + self._timeout if until is None else until
        delay = 0.05
        last: grpc.RpcError | None = None
        while True:
            order = [self._preferred] + [a for a in self._addresses if a != self._preferred]
            for address in order:
                try:
                    result = fn(self._stub(address))
                except grpc.RpcError as err:
                    last = err
                    reason, meta = error_reason(err)
                    code = err.code()
                    if code == grpc.StatusCode.FAILED_PRECONDITION and reason == "NOT_LEADER":
                        leader = meta.get("leader_address", "")
                        if leader and leader != address:
                            if leader not in self._addresses:
                                self._addresses.append(leader)
                            self._preferred = leader
                            break
                        continue
                    if code in _RETRY_CODES:
                        continue
                    raise from_rpc(err, reason) from None
                self._preferred = address
                return result
            if time.monotonic() >= give_up:
                if last is None:
                    raise Unavailable("gave up before any coordinator answered", code="UNAVAILABLE")
                error = from_rpc(last, error_reason(last)[0])
                error.args = (f"{error.args[0]} (tried {', '.join(self._addresses)})",)
                raise error from None
            time.sleep(min(delay, max(0.0, give_up - time.monotonic())))
            delay = min(delay * 2, 1.0)

    def _rpc_deadline(self, until: float | None, factor: float = 1.0) -> float:
        deadline = self._deadline * factor
        if until is not None:
            deadline = max(0.05, min(deadline, until - time.monotonic()))
        return deadline

    # -- the API -------------------------------------------------------------------

    def submit(self, project: ProjectLike) -> Submitted:
        """Submit a project atomically: every task becomes visible at once, or none.

        Raises:
            InvalidProject: a task or the project was rejected (nothing written).
            ProjectExists: a project with this id exists.
            Unavailable: no leader could take it within ``timeout``.
        """
        req = client_pb2.SubmitProjectRequest(project=_convert.project_to_proto(project))
        # Big projects take longer to write: three call deadlines plus 1 s per 2,000 tasks.
        deadline = self._deadline * 3 + len(req.project.tasks) / 2000
        resp = self._call(lambda s: s.SubmitProject(req, timeout=deadline, metadata=self._metadata))
        return _convert.submitted_from_proto(resp)

    def add_tasks(self, project_id: str, tasks: Sequence[TaskLike]) -> TasksAdded:
        """Add tasks to a running (or finished: it reopens) project, in one
        fenced transaction: all of them or none. New tasks may depend on any
        existing task but a failed or cancelled one, and on each other; a
        task's ``blocks`` names existing unstarted tasks that now wait for it.

        Raises:
            InvalidProject: a rule was broken (the message names task and
                field; a cycle prints its path); nothing written.
            UnknownProject: no such project.
            WorkhiveError: ``ABORTED`` when the graph changed while writing.
        """
        req = client_pb2.AddTasksRequest(
            project_id=project_id, tasks=[_convert.task_to_proto(t) for t in tasks]
        )
        resp = self._call(
            lambda s: s.AddTasks(req, timeout=self._deadline, metadata=self._metadata)
        )
        return TasksAdded(resp.project_id, resp.revision, resp.added, resp.task_count)

    def status(
        self, project_id: str = "", *, tasks: bool = False, until: float | None = None
    ) -> ClusterStatus:
        """Projects (one, or all when ``project_id`` is empty), agents, the
        leader and metrics, as one replica sees them; ``tasks`` adds per-task
        states. A project that does not exist is simply absent. ``until``
        (monotonic time) bounds the retries instead of ``timeout``."""
        req = client_pb2.GetStatusRequest(project_id=project_id, include_tasks=tasks)
        resp = self._call(
            lambda s: s.GetStatus(req, timeout=self._rpc_deadline(until), metadata=self._metadata),
            until=until,
        )
        return _convert.status_from_proto(resp)

    def task(self, project_id: str, task_id: str) -> TaskStatus:
        """One task's state; ``TaskState.UNKNOWN`` for an id that does not exist."""
        req = client_pb2.GetTaskRequest(project_id=project_id, task_id=task_id)
        resp = self._call(lambda s: s.GetTask(req, timeout=self._deadline, metadata=self._metadata))
        return _convert.task_status_from_proto(resp)

    def result(self, project_id: str, task_id: str) -> Any:
        """The JSON result a task completed with (``None``: none, or not yet)."""
        return self.task(project_id, task_id).result

    def cancel(self, project_id: str, reason: str = "") -> int:
        """Cancel every unfinished task of a project; returns how many were.

        Raises:
            UnknownProject: no project with this id.
        """
        req = client_pb2.CancelProjectRequest(project_id=project_id, reason=reason)
        resp = self._call(
            lambda s: s.CancelProject(req, timeout=self._deadline, metadata=self._metadata)
        )
        return resp.cancelled

    def drain_agent(self, agent_id: str, reason: str = "") -> None:
        """Ask a connected agent to drain: it hands its queued tasks back,
        finishes what runs, reports and exits (as on SIGTERM).

        Raises:
            WorkhiveError: ``NOT_FOUND`` when no such agent is connected.
        """
        req = client_pb2.DrainAgentRequest(agent_id=agent_id, reason=reason)
        self._call(lambda s: s.DrainAgent(req, timeout=self._deadline, metadata=self._metadata))

    def delete(self, project_id: str, *, compact: bool = False) -> int:
        """Delete a finished project (tasks, results, meta) in one fenced txn;
        returns how many tasks it had. ``compact`` also compacts etcd's history
        up to the delete, which frees the space (watchers from before re-list).

        Raises:
            UnknownProject: no project with this id.
            ProjectRunning: some task has not finished (cancel the project first).
        """
        req = client_pb2.DeleteProjectRequest(project_id=project_id, compact=compact)
        resp = self._call(
            lambda s: s.DeleteProject(req, timeout=self._deadline * 3, metadata=self._metadata)
        )
        return resp.tasks

    def wait(self, project_id: str, timeout: float, *, poll: float = 0.25) -> ProjectStatus:
        """Block until every task of the project is terminal; returns its status
        with per-task states. ``timeout`` bounds the whole wait, status calls
        that fail and are retried included.

        Raises:
            WaitTimeout: the project had not finished after ``timeout`` seconds.
            UnknownProject: no project with this id.
        """
        until = time.monotonic() + timeout
        while True:
            try:
                status = self.status(project_id, until=until)
            except Unavailable as exc:
                raise WaitTimeout(
                    f"project {project_id!r}: no answer within {timeout:g}s: {exc.args[0]}",
                    code="DEADLINE_EXCEEDED",
                ) from None
            project = status.project(project_id)
            if project is None:
                raise UnknownProject(f"no project {project_id!r}", code="NOT_FOUND")
            if project.finished:
                final = self.status(project_id, tasks=True).project(project_id)
                return final or project
            left = until - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"project {project_id!r} did not finish within {timeout:g}s",
                    code="DEADLINE_EXCEEDED",
                )
            time.sleep(min(poll, left))

    def watch(self, project_id: str, from_revision: int = 0) -> Iterator[ProjectEvent]:
        """Task state changes of a project, the current state first; ends after
        the events that report the project finished (``project_finished`` is
        true on each change of the last batch). A broken stream is
        re-opened on another replica (events already seen are not repeated).

        Raises:
            UnknownProject: no project with this id.
            Unavailable: no replica could serve the stream within ``timeout``.
        """
        seen: dict[str, object] = {}
        give_up = time.monotonic() + self._timeout
        req = client_pb2.WatchProjectRequest(project_id=project_id, from_revision=from_revision)

        def stream(s: client_pb2_grpc.ClientServiceStub) -> Iterator[ProjectEvent]:
            # Open the stream and read its first event inside _call's retries.
            it = iter(s.WatchProject(req, metadata=self._metadata))
            first = next(it, None)
            events = [] if first is None else [first]
            return (_convert.event_from_proto(e) for seq in (events, it) for e in seq)

        while True:
            try:
                events = self._call(stream, until=give_up)
                for ev in events:  # the server ends the stream after the finishing batch
                    key = ev.task.task_id
                    if seen.get(key) != ev.task.state:
                        seen[key] = ev.task.state
                        yield ev
                return
            except grpc.RpcError as err:
                reason = error_reason(err)[0]
                error = from_rpc(err, reason)
                if not isinstance(error, Unavailable) or time.monotonic() >= give_up:
                    raise error from None
                give_up = time.monotonic() + self._timeout
