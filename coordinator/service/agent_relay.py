"""A follower relaying an agent's session to the leader (docs/failover.md,
"Agents that cannot reach the leader").

An agent that was sent to the leader but cannot reach it (a partition between
them, while the followers reach both) dials a follower again asking for a relay
(metadata ``workhive-relay: 1``). The follower then opens the leader's
``AgentService.Session`` and pipes both directions message by message,
untouched: the leader sees an ordinary session and checks the Hello, the lease
and the credentials itself (the agent's ``authorization`` and
``workhive-agent-id`` metadata are forwarded; the relay flag is not, so a
relayed call is never relayed again). The relay holds no state: when either
side ends, the other ends too, the agent's side with the leader's status and
error details (a NOT_LEADER still names the new leader).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import structlog

from workhive.v1 import agent_pb2, agent_pb2_grpc

log = structlog.get_logger("workhive.agents")
Ctx = grpc.aio.ServicerContext[Any, Any]
Dial = Callable[[str], grpc.aio.Channel]

RELAY_METADATA = "workhive-relay"
"""Set to ``1`` by an agent that wants this replica to relay its session."""
RELAYED_BY_METADATA = "workhive-relayed-by"
"""Added by the relaying replica: its id, for the leader's logs."""
FORWARDED = frozenset({"authorization", "workhive-agent-id"})
STATUS_DETAILS = "grpc-status-details-bin"


def wants_relay(context: Ctx) -> bool:
    """True when the caller asked for its session to be relayed to the leader."""
    metadata = context.invocation_metadata() or ()
    return any(k == RELAY_METADATA and v in ("1", b"1") for k, v in metadata)


def relayed_by(context: Ctx) -> str:
    """The id of the replica that relayed this call ('' when it came directly)."""
    for k, v in context.invocation_metadata() or ():
        if k == RELAYED_BY_METADATA:
            return v.decode("latin-1") if isinstance(v, bytes) else v
    return ""


async def relay(
    first: agent_pb2.AgentMessage,
    requests: AsyncIterator[agent_pb2.AgentMessage],
    context: Ctx,
    *,
    leader_address: str,
    dial: Dial,
    via: str,
) -> AsyncIterator[agent_pb2.CoordinatorMessage]:
    """Yield the leader's messages for this session; send it ``first`` and the
    rest of ``requests``. Ends the agent's call with the leader's status."""
    forwarded = [(k, v) for k, v in context.invocation_metadata() or () if k in FORWARDED]
    metadata = (*forwarded, (RELAYED_BY_METADATA, via))

    async def upstream() -> AsyncIterator[agent_pb2.AgentMessage]:
        yield first
        async for msg in requests:
            yield msg

    channel = dial(leader_address)
    call = agent_pb2_grpc.AgentServiceStub(channel).Session(upstream(), metadata=metadata)
    error: grpc.aio.AioRpcError | None = None
    try:
        async for msg in call:
            yield msg
    except grpc.aio.AioRpcError as err:
        error = err
    finally:
        call.cancel()
        await channel.close()
    if error is not None:
        log.info("relayed session ended", leader=leader_address, code=error.code().name, via=via)
        trailing = tuple((k, v) for k, v in error.trailing_metadata() or () if k == STATUS_DETAILS)
        await context.abort(error.code(), error.details() or "", trailing_metadata=trailing)


__all__ = ["RELAYED_BY_METADATA", "RELAY_METADATA", "Dial", "relay", "relayed_by", "wants_relay"]
