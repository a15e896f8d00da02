"""Fuzz the wire: random bytes and random valid-but-nonsense messages on raw
channels to every AgentService and ClientService method, and oversized ones.

Every call ends with a precise status (never UNKNOWN, which would mean an
unhandled exception in a servicer), and the coordinator keeps serving:
health is SERVING after each example.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pbd
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.conftest import NodeThread, base_settings, coordinator
from workhive.v1 import agent_pb2, client_pb2

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
Code = grpc.StatusCode

AGENT = "/workhive.v1.AgentService/"
CLIENT = "/workhive.v1.ClientService/"
UNARY: dict[str, type[Message]] = {
    AGENT + "GetLeader": agent_pb2.GetLeaderRequest,
    AGENT + "Heartbeat": agent_pb2.HeartbeatRequest,
    CLIENT + "SubmitProject": client_pb2.SubmitProjectRequest,
    CLIENT + "GetStatus": client_pb2.GetStatusRequest,
    CLIENT + "GetTask": client_pb2.GetTaskRequest,
    CLIENT + "CancelProject": client_pb2.CancelProjectRequest,
}
WATCH = CLIENT + "WatchProject"
SESSION = AGENT + "Session"
# What a well-formed or malformed request may legitimately end with.
PRECISE = {
    Code.OK,
    Code.INVALID_ARGUMENT,
    Code.NOT_FOUND,
    Code.FAILED_PRECONDITION,
    Code.ALREADY_EXISTS,
    Code.RESOURCE_EXHAUSTED,
    Code.OUT_OF_RANGE,
    Code.DEADLINE_EXCEEDED,  # only an open watch or session reaching the test's deadline
}
UNDECODABLE = {Code.INVALID_ARGUMENT}  # DecodeInterceptor: malformed message
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def node(etcd_server: Any) -> Iterator[NodeThread]:
    url = etcd_server if isinstance(etcd_server, str) else etcd_server.endpoints[0]
    with coordinator(base_settings(url)) as n:
        yield n


@pytest.fixture(scope="module")
def channel(node: NodeThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(
        node.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as ch:
        yield ch


def serving(channel: grpc.Channel) -> None:
    resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def outcome(fn: Any) -> Code:
    try:
        fn()
    except grpc.RpcError as err:
        return err.code()
    return Code.OK


# -- random messages from the descriptors ---------------------------------------------------

_TEXT = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["", "a", "../x", "/", "t1", "p", "*", "\x00", "é" * 3]),
)
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    pbd.FieldDescriptor.CPPTYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    pbd.FieldDescriptor.CPPTYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    pbd.FieldDescriptor.CPPTYPE_UINT32: st.integers(0, 2**32 - 1),
    pbd.FieldDescriptor.CPPTYPE_UINT64: st.integers(0, 2**64 - 1),
    pbd.FieldDescriptor.CPPTYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    pbd.FieldDescriptor.CPPTYPE_FLOAT: st.floats(width=32, allow_nan=True),
    pbd.FieldDescriptor.CPPTYPE_BOOL: st.booleans(),
}


def _field(f: pbd.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        k, v = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
        return st.dictionaries(_field(k, depth), _field(v, depth), max_size=3)
    if f.cpp_type == pbd.FieldDescriptor.CPPTYPE_MESSAGE:
        one = messages(f.message_type, depth + 1)
    elif f.cpp_type == pbd.FieldDescriptor.CPPTYPE_STRING:
        one = _TEXT if f.type == pbd.FieldDescriptor.TYPE_STRING else st.binary(max_size=24)
    elif f.cpp_type == pbd.FieldDescriptor.CPPTYPE_ENUM:
        one = st.sampled_from([v.number for v in f.enum_type.values])
    else:
        one = _SCALARS[f.cpp_type]
    if f.is_repeated:
        return st.lists(one, max_size=3)
    return one


def messages(desc: pbd.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Random instances of the message type ``desc`` (nested up to 3 levels)."""
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(desc)
    if depth > 3:
        return st.just(cls())
    fields = {f.name: _field(f, depth) for f in desc.fields}

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        for name in draw(st.lists(st.sampled_from(sorted(fields)), unique=True)) if fields else []:
            value = draw(fields[name])
            f = desc.fields_by_name[name]
            if f.message_type is not None and f.message_type.GetOptions().map_entry:
                target = getattr(msg, name)
                for k, v in value.items():
                    if isinstance(v, Message):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif f.is_repeated:
                getattr(msg, name).extend(value)
            elif f.cpp_type == pbd.FieldDescriptor.CPPTYPE_MESSAGE:
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return build()


FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


def _identity(b: bytes) -> bytes:
    return b


@pytest.mark.parametrize("method", sorted(UNARY))
@FUZZ
@given(data=st.binary(max_size=256))
def test_random_bytes_to_unary_methods(method: str, data: bytes, channel: grpc.Channel) -> None:
    call = channel.unary_unary(method, request_serializer=_identity)
    code = outcome(lambda: call(data, timeout=5))
    assert code in PRECISE | UNDECODABLE, (method, data, code)
    serving(channel)


@pytest.mark.parametrize("method", sorted(UNARY))
@FUZZ
@given(data=st.data())
def test_nonsense_messages_to_unary_methods(
    method: str, data: st.DataObject, channel: grpc.Channel
) -> None:
    req = data.draw(messages(UNARY[method].DESCRIPTOR))
    call = channel.unary_unary(
        method, request_serializer=lambda m: m.SerializeToString(), response_deserializer=None
    )
    code = outcome(lambda: call(req, timeout=5))
    assert code in PRECISE, (method, req, code)
    serving(channel)


@FUZZ
@given(data=st.data())
def test_nonsense_sessions_and_watches(data: st.DataObject, channel: grpc.Channel) -> None:
    msgs = data.draw(st.lists(messages(agent_pb2.AgentMessage.DESCRIPTOR), max_size=4))
    raw = data.draw(st.lists(st.binary(max_size=64), max_size=2))
    session = channel.stream_stream(SESSION, request_serializer=_identity)
    frames = [m.SerializeToString() for m in msgs] + raw

    def run_session() -> None:
        for _ in session(iter(frames), timeout=2):
            pass

    code = outcome(run_session)
    assert code in PRECISE | UNDECODABLE, (msgs, raw, code)
    watch_req = data.draw(messages(client_pb2.WatchProjectRequest.DESCRIPTOR))
    watch = channel.unary_stream(WATCH, request_serializer=lambda m: m.SerializeToString())

    def run_watch() -> None:
        for _ in watch(watch_req, timeout=1):
            pass

    code = outcome(run_watch)
    assert code in PRECISE, (watch_req, code)
    serving(channel)


@pytest.mark.parametrize("method", [AGENT + "Heartbeat", CLIENT + "SubmitProject", SESSION])
def test_oversized_messages_are_refused(method: str, channel: grpc.Channel) -> None:
    big = b"\x0a" + b"\xff\xff\xff\x04" + b"x" * (9 * 1024 * 1024)  # field 1, ~9 MiB > 8 MiB
    if method == SESSION:
        call = channel.stream_stream(method, request_serializer=_identity)
        code = outcome(lambda: list(call(iter([big]), timeout=10)))
    else:
        unary = channel.unary_unary(method, request_serializer=_identity)
        code = outcome(lambda: unary(big, timeout=10))
    assert code == Code.RESOURCE_EXHAUSTED
    serving(channel)
