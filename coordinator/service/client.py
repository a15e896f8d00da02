"""A blocking client for ``ClientService`` that finds the leader by itself.

Tries each address; on ``FAILED_PRECONDITION``/``NOT_LEADER`` it dials the
leader named in the error details; on ``UNAVAILABLE`` it moves to the next
address and, after a full round, backs off (bounded by ``timeout``). Every
call has a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from workhive.coordinator.model import ProjectSpec
from workhive.coordinator.service.convert import project_to_proto
from workhive.coordinator.service.errors import reason_of
from workhive.v1 import client_pb2, client_pb2_grpc

T = TypeVar("T")


class ClientError(RuntimeError):
    """A call failed for good; ``code`` is the gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class WorkhiveClient:
    """Submit, inspect and cancel projects on a workhive cluster."""

    def __init__(
        self,
        addresses: list[str],
        *,
        timeout: float = 15.0,
        call_deadline: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if not addresses:
            raise ValueError("at least one coordinator address is required")
        self._addresses = list(addresses)
        self._timeout = timeout
        self._deadline = call_deadline
        self._credentials = credentials
        self._metadata = metadata
        self._channels: dict[str, grpc.Channel] = {}
        self._preferred = self._addresses[0]

    def _stub(self, address: str) -> client_pb2_grpc.ClientServiceStub:
        if address not in self._channels:
            if self._credentials is not None:
                self._channels[address] = grpc.secure_channel(address, self._credentials)
            else:
                self._channels[address] = grpc.insecure_channel(address)
        return client_pb2_grpc.ClientServiceStub(self._channels[address])

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()

    def __enter__(self) -> WorkhiveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[[client_pb2_grpc.ClientServiceStub], T]) -> T:
        give_up = time.monotonic() + self._timeout
        delay = 0.05
        last: grpc.RpcError | None = None
        while True:
            order = [self._preferred] + [a for a in self._addresses if a != self._preferred]
            for address in order:
                try:
                    result = fn(self._stub(address))
                    self._preferred = address
                    return result
                except grpc.RpcError as err:
                    last = err
                    code = err.code()
                    reason, meta = reason_of(err)
                    if code == grpc.StatusCode.FAILED_PRECONDITION and reason == "NOT_LEADER":
                        leader = meta.get("leader_address", "")
                        if leader and leader != address:
                            if leader not in self._addresses:
                                self._addresses.append(leader)
                            self._preferred = leader
                            break
                        continue
                    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        continue
                    raise ClientError(code, err.details() or str(code), reason) from None
            else:
                if time.monotonic() > give_up:
                    assert last is not None
                    reason, _ = reason_of(last)
                    raise ClientError(
                        last.code(), last.details() or "no coordinator answered", reason
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def submit(self, spec: ProjectSpec) -> client_pb2.SubmitProjectResponse:
        req = client_pb2.SubmitProjectRequest(project=project_to_proto(spec))
        return self._call(
            lambda s: s.SubmitProject(req, timeout=self._deadline * 3, metadata=self._metadata)
        )

    def status(
        self, project_id: str = "", include_tasks: bool = False
    ) -> client_pb2.GetStatusResponse:
        req = client_pb2.GetStatusRequest(project_id=project_id, include_tasks=include_tasks)
        return self._call(
            lambda s: s.GetStatus(req, timeout=self._deadline, metadata=self._metadata)
        )

    def task(self, project_id: str, task_id: str) -> client_pb2.TaskStatus:
        req = client_pb2.GetTaskRequest(project_id=project_id, task_id=task_id)
        return self._call(lambda s: s.GetTask(req, timeout=self._deadline, metadata=self._metadata))

    def cancel(self, project_id: str, reason: str = "") -> client_pb2.CancelProjectResponse:
        req = client_pb2.CancelProjectRequest(project_id=project_id, reason=reason)
        return self._call(
            lambda s: s.CancelProject(req, timeout=self._deadline, metadata=self._metadata)
        )

    def watch(self, project_id: str, from_revision: int = 0) -> Iterator[client_pb2.ProjectEvent]:
        req = client_pb2.WatchProjectRequest(project_id=project_id, from_revision=from_revision)
        yield from self._stub(self._preferred).WatchProject(req, metadata=self._metadata)
