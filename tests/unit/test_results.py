"""Task results: the size and JSON rules, the etcd encoding, the SDK's
return values (docs/etcd-layer.md, docs/agent.md "Results")."""

from __future__ import annotations

import json

import pytest

from workhive.agent import Result
from workhive.agent._results import success
from workhive.agent._types import TaskKey as AgentKey
from workhive.coordinator.etcd import codec
from workhive.coordinator.etcd.types import KeyValue
from workhive.coordinator.model import TaskKey, TaskResult, TaskState
from workhive.coordinator.results import MAX_RESULT_BYTES, ResultError, check_result, inputs_json

KEY = AgentKey("p", "t", 7, 1)


def test_a_result_is_stored_as_compact_json() -> None:
    assert check_result('{ "b": [1, 2],  "a": "x" }') == '{"b":[1,2],"a":"x"}'


def test_a_null_or_empty_result_is_no_result() -> None:
    assert check_result("") == ""
    assert check_result("null") == ""


def test_a_result_over_64_kib_is_refused_with_its_size_and_the_limit() -> None:
    big = json.dumps("x" * MAX_RESULT_BYTES)
    with pytest.raises(ResultError, match=f"task 't': result is {len(big)} bytes, limit 65536"):
        check_result(big, "t")


def test_a_result_that_is_not_json_is_refused() -> None:
    with pytest.raises(ResultError, match="not JSON"):
        check_result("{oops")


def test_the_result_record_embeds_the_result_and_decodes_it_back() -> None:
    r = TaskResult(TaskKey("p", "t"), TaskState.SUCCEEDED, agent="a", result_json='{"n":1}')
    raw = codec.encode_result(r)
    assert json.loads(raw)["result"] == {"n": 1}
    back = codec.decode_result(r.key, KeyValue(b"k", raw, 1, 1, 1, 0))
    assert back.result_json == '{"n":1}'


def test_a_record_without_a_result_decodes_to_no_result() -> None:
    r = TaskResult(TaskKey("p", "t"), TaskState.FAILED, reason="x")
    assert "result" not in json.loads(codec.encode_result(r))


def test_inputs_are_one_object_of_parent_results() -> None:
    assert json.loads(inputs_json({"b": "[1]", "a": '{"x":2}'})) == {"a": {"x": 2}, "b": [1]}
    assert inputs_json({}) == ""


def test_a_handler_returning_text_succeeds_without_a_result() -> None:
    o = success(KEY, "some output", 1.0)
    assert o.succeeded and o.output_tail == "some output" and o.result_json == ""


def test_a_handler_returning_a_dict_completes_with_that_result() -> None:
    assert success(KEY, {"files": ["a.py"]}, 1.0).result_json == '{"files":["a.py"]}'


def test_a_handler_returning_a_result_sends_output_and_value() -> None:
    o = success(KEY, Result(output="log", value=[1, 2]), 1.0)
    assert (o.output_tail, o.result_json) == ("log", "[1,2]")


def test_a_handler_result_over_the_limit_fails_the_task_for_good() -> None:
    o = success(KEY, Result(value="x" * MAX_RESULT_BYTES), 1.0)
    assert not o.succeeded and not o.retryable
    assert "limit 65536" in o.reason
