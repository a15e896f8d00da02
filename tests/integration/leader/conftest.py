"""An in-process coordinator (real etcd, real gRPC on 127.0.0.1) and raw agents."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def etcd_url(etcd_server: Any) -> str:
    return etcd_server if isinstance(etcd_server, str) else str(etcd_server.endpoints[0])
