"""Partition tests need network namespaces: skipped, with the reason, where
they cannot be made (not root / no CAP_NET_ADMIN, no iproute2 or iptables);
never silently. Nets left by dead test processes are removed first."""

from __future__ import annotations

import pytest

from tests.harness import netns


@pytest.fixture(autouse=True)
def _namespaces_available() -> None:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    netns.remove_leftovers()
