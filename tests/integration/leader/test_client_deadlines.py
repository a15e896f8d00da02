"""A client's deadline never reaches the leader's loop (issue 13, item 3).

A caller that gives up on ``CancelProject`` while the leader is busy gets
DEADLINE_EXCEEDED; the leader keeps leading (no crash, no failover) and the
cancel still happens.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from tests.security.conftest import NodeThread, base_settings, coordinator
from workhive.client import Client, Project, Task, TaskState
from workhive.v1 import client_pb2, client_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _slow_turns(node: NodeThread, seconds: float) -> Any:
    """Make every turn of the leader's loop take ``seconds`` longer (a busy
    leader); returns a function that undoes it."""
    driver: Any = node.node.driver
    real = driver._turn

    async def slow(items: list[object]) -> None:
        await asyncio.sleep(seconds)
        await real(items)

    driver._turn = slow
    return lambda: setattr(driver, "_turn", real)


def test_a_cancel_whose_caller_gave_up_still_cancels_and_the_leader_keeps_leading(
    etcd_url: str,
) -> None:
    with coordinator(base_settings(etcd_url, plan_time_box=0)) as node:
        client = Client([node.address])
        client.submit(Project("big", tuple(Task(f"t{i}") for i in range(20))))
        time.sleep(0.3)
        driver = node.node.driver
        assert driver is not None
        undo = _slow_turns(node, 0.5)
        with grpc.insecure_channel(node.address) as ch:
            stub = client_pb2_grpc.ClientServiceStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                stub.CancelProject(client_pb2.CancelProjectRequest(project_id="big"), timeout=0.05)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(1.2)  # the busy leader gets to the cancel
        undo()
        project = client.wait("big", timeout=10)  # WaitTimeout: the cancel was lost
        assert dict(project.counts) == {"cancelled": 20}
        assert node.node.driver is driver and not driver.lost.is_set()
        assert client.status().leader.term == node.node.leader_info.term  # type: ignore[union-attr]
        assert client.task("big", "t0").state is TaskState.CANCELLED
        client.close()
