"""Client authorization with tokens on: each client token has a role (read,
submit, admin) and may be limited to a project-id prefix; a call above its
role or outside its prefix is PERMISSION_DENIED and changes nothing
(a real coordinator in-process, real etcd, plaintext on 127.0.0.1)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.security.conftest import NodeThread, base_settings, bearer, coordinator
from workhive.coordinator.model import ProjectSpec, TaskSpec
from workhive.coordinator.service.client_service import STATUS_MAX_AGE
from workhive.coordinator.service.convert import project_to_proto
from workhive.v1 import client_pb2, client_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
Code = grpc.StatusCode


@pytest.fixture(scope="module")
def node(tokens_file: Path, etcd_server: Any) -> Iterator[NodeThread]:
    url = etcd_server if isinstance(etcd_server, str) else etcd_server.endpoints[0]
    with coordinator(base_settings(url, auth_tokens_file=str(tokens_file))) as n:
        yield n


@pytest.fixture
def stub(node: NodeThread) -> Iterator[client_pb2_grpc.ClientServiceStub]:
    with grpc.insecure_channel(node.address) as ch:
        yield client_pb2_grpc.ClientServiceStub(ch)


def _submit(stub: client_pb2_grpc.ClientServiceStub, who: str, pid: str) -> Any:
    spec = ProjectSpec(id=pid, tasks=(TaskSpec(id="a"),))
    return stub.SubmitProject(
        client_pb2.SubmitProjectRequest(project=project_to_proto(spec)),
        timeout=10,
        metadata=bearer(who),
    )


def _cancel(stub: client_pb2_grpc.ClientServiceStub, who: str, pid: str) -> Any:
    return stub.CancelProject(
        client_pb2.CancelProjectRequest(project_id=pid), timeout=10, metadata=bearer(who)
    )


def _projects(stub: client_pb2_grpc.ClientServiceStub, who: str) -> set[str]:
    time.sleep(STATUS_MAX_AGE)  # past the status answer cache
    resp = stub.GetStatus(client_pb2.GetStatusRequest(), timeout=10, metadata=bearer(who))
    return {p.project_id for p in resp.projects}


def _denied(fn: Any) -> str:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    assert info.value.code() == Code.PERMISSION_DENIED, info.value
    return str(info.value.details())


def test_a_read_token_sees_status_but_cannot_submit(stub: Any) -> None:
    _submit(stub, "*client*", "roles-visible")
    assert "roles-visible" in _projects(stub, "viewer")
    why = _denied(lambda: _submit(stub, "viewer", "roles-by-viewer"))
    assert "SubmitProject needs role 'submit'" in why and "'viewer'" in why
    assert "roles-by-viewer" not in _projects(stub, "*client*")


def test_a_submit_token_can_submit_but_not_cancel(stub: Any) -> None:
    _submit(stub, "submitter", "roles-submitted")
    why = _denied(lambda: _cancel(stub, "submitter", "roles-submitted"))
    assert "CancelProject needs role 'admin'" in why
    assert _cancel(stub, "*client*", "roles-submitted").cancelled >= 0


def test_a_prefixed_token_only_touches_its_projects(stub: Any) -> None:
    _submit(stub, "*client*", "roles-other")
    _submit(stub, "ci-bot", "ci-build-1")
    why = _denied(lambda: _submit(stub, "ci-bot", "prod-deploy"))
    assert "only use projects starting with 'ci-'" in why
    _denied(lambda: _cancel(stub, "ci-bot", "roles-other"))
    seen = _projects(stub, "ci-bot")
    assert "ci-build-1" in seen and "roles-other" not in seen
    assert "roles-other" in _projects(stub, "*client*")  # a cached answer stays whole


def test_an_agent_token_cannot_use_the_client_api(stub: Any) -> None:
    why = _denied(lambda: _projects(stub, "agent-a"))
    assert "agent token" in why


def test_status_answers_for_unknown_ids_are_not_kept(stub: Any) -> None:
    """Memory keyed by client input is bounded: 300 distinct unknown project
    ids leave the status cache no larger than its bound."""
    import gc

    from workhive.coordinator.service.client_service import STATUS_CACHE_ENTRIES, ClientServicer

    for i in range(300):
        stub.GetStatus(
            client_pb2.GetStatusRequest(project_id=f"nobody-{i:03d}-" + "x" * 150),
            timeout=10,
            metadata=bearer("viewer"),
        )
    servicers = [o for o in gc.get_objects() if isinstance(o, ClientServicer)]
    assert servicers and all(len(s._status_cache) <= STATUS_CACHE_ENTRIES for s in servicers)


def test_an_overlong_project_id_is_refused_without_echoing_it(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.GetStatus(
            client_pb2.GetStatusRequest(project_id="p" * 10_000),
            timeout=10,
            metadata=bearer("viewer"),
        )
    assert info.value.code() == Code.INVALID_ARGUMENT
    assert "10000 characters, limit 200" in str(info.value.details())
    assert len(str(info.value.details())) < 200
