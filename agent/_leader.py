"""Recognising "talk to the leader instead" in a gRPC error (docs/design.md, rule 6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

NOT_LEADER = "NOT_LEADER"
LEADER_ADDRESS_MD = "workhive-leader-address"
LEADER_ID_MD = "workhive-leader-id"
REASON_MD = "workhive-error-reason"


@dataclass(frozen=True, slots=True)
class LeaderHint:
    """Where the leader is, as a follower told us."""

    address: str
    leader_id: str = ""


def _error_infos(err: grpc.RpcError) -> list[error_details_pb2.ErrorInfo]:
    """The ``google.rpc.ErrorInfo`` details of a failed call (none when the
    server sent none, or its details do not match its code and message)."""
    try:
        status = rpc_status.from_call(cast(grpc.Call, err))
    except ValueError:  # details inconsistent with code/message: ignore them
        status = None
    infos = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
    return infos


def error_reason(err: grpc.RpcError) -> str:
    """The reason a coordinator gave (ErrorInfo), '' when none: the call
    failed before any replica answered it (a transport error)."""
    return next((i.reason for i in _error_infos(err)), "")


def leader_from_error(err: grpc.RpcError) -> LeaderHint | None:
    """The leader a FAILED_PRECONDITION/NOT_LEADER error points to, if any.

    Reads ``google.rpc.ErrorInfo`` (reason ``NOT_LEADER``, metadata
    ``leader_address`` -- ``leader_addr`` is accepted too -- and ``leader_id``)
    from the status details, falling back to the trailing metadata
    ``workhive-leader-address`` / ``workhive-leader-id``.
    """
    if status_code(err) != grpc.StatusCode.FAILED_PRECONDITION:
        return None
    for info in _error_infos(err):
        if info.reason != NOT_LEADER:
            continue
        address = info.metadata.get("leader_address") or info.metadata.get("leader_addr", "")
        if address:
            return LeaderHint(address, info.metadata.get("leader_id", ""))
    trailing = getattr(err, "trailing_metadata", None)
    pairs = trailing() if callable(trailing) else None
    md = {k: v for k, v in (pairs or ()) if isinstance(v, str)}
    address = md.get(LEADER_ADDRESS_MD, "")
    if address and md.get(REASON_MD, NOT_LEADER) == NOT_LEADER:
        return LeaderHint(address, md.get(LEADER_ID_MD, ""))
    return None


def status_code(err: grpc.RpcError) -> grpc.StatusCode | None:
    """The status code of a failed call (``None`` for a bare RpcError)."""
    code = getattr(err, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else None


def status_name(err: grpc.RpcError) -> str:
    code = status_code(err)
    return code.name if code is not None else "UNKNOWN"


def status_details(err: grpc.RpcError) -> str:
    details = getattr(err, "details", None)
    value = details() if callable(details) else None
    return value if isinstance(value, str) else str(err)
