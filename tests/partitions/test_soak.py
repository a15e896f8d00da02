"""The mixed soak, short (marker ``soak``): ``WORKHIVE_SOAK_FAULTS`` crash and
network faults (default 200; CI sets 20) on processes in their own network
namespaces, then the audit. The report goes to the test's own folder: only
``python -m tests.partitions.soak --out bench/results/soak.json`` (a
deliberate long run) writes the committed result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.partitions.soak import run_mixed_soak

pytestmark = [pytest.mark.failover, pytest.mark.slow, pytest.mark.soak]

FAULTS = int(os.environ.get("WORKHIVE_SOAK_FAULTS", "200"))


@pytest.mark.timeout(300 + FAULTS * 12)
def test_every_crash_and_network_fault_is_survived_with_nothing_lost_doubled_or_rerun(
    tmp_path: Path,
) -> None:
    result = run_mixed_soak(tmp_path, FAULTS, out=tmp_path / "soak.json")
    assert result["faults_survived"] == FAULTS
    assert result["lost"] == 0 and result["doubled"] == 0, result
    assert result["reexecutions_without_agent_death"] == 0, result
    assert result["violations"] == {}, result
