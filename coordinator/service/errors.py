"""gRPC error statuses with machine-readable details.

Every error a caller can act on carries a ``google.rpc.ErrorInfo`` (domain
``workhive.dev``, reason = a ``workhive.v1.ErrorReason`` name) in the status
details, mirrored in trailing metadata (``workhive-error-reason`` and, for
redirects, ``workhive-leader-id`` / ``workhive-leader-address``) so clients
without the status protos can still follow a redirect.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from workhive.coordinator.model import LeaderInfo

DOMAIN = "workhive.dev"


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def error_status(
    code: grpc.StatusCode, reason: str, message: str, metadata: dict[str, str] | None = None
) -> grpc.Status:
    """A status with ErrorInfo details and the same facts in trailing metadata."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata or {})
    detail = any_pb2.Any()
    detail.Pack(info)
    proto = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    base = rpc_status.to_status(proto)
    mirrored: list[tuple[str, str | bytes]] = [("workhive-error-reason", reason)]
    mirrored += [(f"workhive-{k.replace('_', '-')}", v) for k, v in (metadata or {}).items()]
    return _Status(code, message, tuple(base.trailing_metadata) + tuple(mirrored))


def not_leader(leader: LeaderInfo) -> grpc.Status:
    """FAILED_PRECONDITION: ask the leader instead (id and address included)."""
    return error_status(
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_LEADER",
        f"not the leader; the leader is {leader.id} at {leader.address}",
        {"leader_id": leader.id, "leader_address": leader.address, "term": str(leader.term)},
    )


def no_leader() -> grpc.Status:
    """UNAVAILABLE: nobody leads right now; retry shortly."""
    return error_status(grpc.StatusCode.UNAVAILABLE, "NO_LEADER", "no leader is elected yet")


def reason_of(error: grpc.RpcError) -> tuple[str, dict[str, str]]:
    """Client side: the ErrorInfo reason and metadata of a failed call ('' if none)."""
    status = rpc_status.from_call(error)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info.reason, dict(info.metadata)
    return "", {}


__all__ = ["DOMAIN", "error_status", "no_leader", "not_leader", "reason_of"]
