"""Living graphs run on the cluster harness (tests/integration/cluster)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.cluster.conftest import Harness, make_cluster

SUM_CMD = f"{sys.executable} {Path(__file__).with_name('sum_task.py')}"

__all__ = ["SUM_CMD", "Harness", "make_cluster"]
