"""Shared fixtures: real etcd (process or container), always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from tests.harness.docker_env import require_docker
from tests.harness.etcd_container import EtcdContainer, start_cluster, start_single


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """A test that configures logging (a CLI run, the logging tests) may bind
    structlog to a stream that closes with it: every test starts from, and
    leaves, structlog's defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def etcd_container() -> Iterator[EtcdContainer]:
    """One etcd member in a Docker container (host network, local image)."""
    require_docker()
    member = start_single()
    try:
        yield member
    finally:
        member.stop()


@pytest.fixture
def etcd_container_cluster() -> Iterator[list[EtcdContainer]]:
    """A 3-member etcd cluster, one member per container."""
    require_docker()
    members = start_cluster(3)
    try:
        yield members
    finally:
        for m in members:
            m.stop()


# Process-based etcd fixtures (single member, private member, 3-member cluster).
from tests.harness.etcd_fixtures import etcd, etcd_cluster, etcd_private, etcd_server  # noqa: E402,F401
