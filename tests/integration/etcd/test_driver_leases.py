"""The leader's claim writes when agent leases expire under them (real etcd)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from workhive.coordinator.etcd import (
    ClaimRequest,
    Claims,
    Election,
    EtcdClient,
    Fence,
    ItemResult,
    Keyspace,
    LeaseKeeper,
    Outcome,
)
from workhive.coordinator.leader.driver import LeaderDriver
from workhive.coordinator.metrics import Metrics
from workhive.coordinator.scheduling import SchedulerConfig
from workhive.coordinator.service.agent_hub import AgentHub

from .helpers import submit_ready

pytestmark = pytest.mark.integration


def test_claims_on_leases_that_keep_expiring_are_conflicts_and_the_rest_commit(
    client: EtcdClient, ks: Keyspace, keeper: LeaseKeeper, leader: Election
) -> None:
    recs = list(submit_ready(client, ks, "p", 3).values())
    alive, dies_first, dies_during_retry = (keeper.grant(30) for _ in range(3))
    keeper.revoke(dies_first)
    claims = Claims(client, ks)
    calls = 0

    def create(reqs: Sequence[ClaimRequest], fence: Fence) -> list[ItemResult]:
        nonlocal calls
        calls += 1
        if calls == 2:  # another agent's lease expires between the two attempts
            keeper.revoke(dies_during_retry)
        return claims.create(reqs, fence)

    reqs = [
        ClaimRequest(recs[0], "a", alive),
        ClaimRequest(recs[1], "b", dies_first),
        ClaimRequest(recs[2], "c", dies_during_retry),
    ]

    async def run() -> list[ItemResult]:
        driver = LeaderDriver(
            client=client,
            keyspace=ks,
            fence=leader.fence,
            keeper=keeper,
            hub=AgentHub(),
            metrics=Metrics(),
            config=SchedulerConfig(),
            agent_grace=1.5,
        )
        try:
            lease_of: Any = lambda r: int(r.lease_id)  # noqa: E731
            return await driver.term.writer.fenced_on_leases(create, reqs, lease_of)
        finally:
            await driver.stop()

    results = asyncio.run(run())
    assert [r.outcome for r in results] == [Outcome.OK, Outcome.CONFLICT, Outcome.CONFLICT]
    assert calls == 3
    held = claims.client.get(ks.claim(recs[0].key))
    assert held is not None and held.lease == alive
