"""The committed generated protobuf code matches what the pinned tools make."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = sorted(p.name for p in (tmp_path / "workhive" / "v1").glob("*_pb2*.py*"))
    committed = sorted(p.name for p in (ROOT / "proto" / "workhive" / "v1").glob("*_pb2*.py*"))
    assert fresh == committed, "generated file set differs: run `make protos`"
    for name in fresh:
        new = (tmp_path / "workhive" / "v1" / name).read_text()
        old = (ROOT / "proto" / "workhive" / "v1" / name).read_text()
        assert new == old, f"{name} is stale: run `make protos` and commit the result"


def test_generated_code_imports_under_workhive_namespace() -> None:
    from workhive.v1 import agent_pb2, agent_pb2_grpc, client_pb2, client_pb2_grpc, common_pb2

    assert agent_pb2.Hello.DESCRIPTOR.full_name == "workhive.v1.Hello"
    assert client_pb2_grpc.ClientServiceStub and agent_pb2_grpc.AgentServiceStub
    assert common_pb2.TaskState.Value("TASK_STATE_UNKNOWN") == 1
    assert client_pb2.ProjectSpec
