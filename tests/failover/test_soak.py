"""Randomized soak (marker ``soak``): ``WORKHIVE_SOAK_FAULTS`` faults (default
200; CI sets 20) across several projects in one bounded run; the report goes
to stdout and to the test's own folder. A test run never overwrites the
committed result: only ``WORKHIVE_SOAK_REPORT=bench/results/soak_crash_200.json`` (a
deliberate long run) writes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.failover.soak import run_soak
from tests.harness.etcd_container import EtcdContainer

pytestmark = [pytest.mark.failover, pytest.mark.docker, pytest.mark.soak]

FAULTS = int(os.environ.get("WORKHIVE_SOAK_FAULTS", "200"))
REPORT = os.environ.get("WORKHIVE_SOAK_REPORT", "")


@pytest.mark.timeout(300 + FAULTS * 10)
def test_randomized_soak(etcd_container: EtcdContainer, tmp_path: Path) -> None:
    out = Path(REPORT) if REPORT else tmp_path / "soak.json"
    result = run_soak(etcd_container, tmp_path, FAULTS, out=out)
    assert result["faults_survived"] == FAULTS
    assert result["lost"] == 0 and result["doubled"] == 0, result
    assert result["violations"] == {}, result
