"""The watch echoes every write the leader makes; a write the leader folded
into its mirror exactly (the etcd layer built the fold from the values it
stored) is not decoded a second time (docs/leader.md, "Folding its own
writes"). A value that cannot be decoded stands in for the echo: decoding it
would raise."""

from __future__ import annotations

import pytest

from workhive.coordinator.etcd import ClusterState, Keyspace, TaskRecord
from workhive.coordinator.etcd.types import KeyValue
from workhive.coordinator.etcd.watch import EventType, WatchEvent
from workhive.coordinator.model import Claim, TaskKey, TaskResult, TaskSpec, TaskState

KS = Keyspace("/t/")
KEY = TaskKey("p", "a")
UNDECODABLE = b"\xff not json"


def _mirror() -> ClusterState:
    cs = ClusterState(KS, revision=10)
    cs.fold_task(TaskRecord(KEY, TaskSpec("a"), TaskState.READY, 1, mod_revision=5))
    return cs


def _put(key: bytes, revision: int) -> WatchEvent:
    return WatchEvent(EventType.PUT, KeyValue(key, UNDECODABLE, 5, revision, 2, 0))


def test_the_echo_of_an_exactly_folded_task_record_is_not_decoded() -> None:
    cs = _mirror()
    done = TaskRecord(KEY, TaskSpec("a"), TaskState.SUCCEEDED, 1, mod_revision=11)
    cs.fold_task(done, exact=True)
    cs.apply([_put(KS.task(KEY), 11)])
    assert cs.tasks[KEY] is done and cs.revision == 11


def test_the_echo_of_exactly_folded_claims_and_results_is_not_decoded() -> None:
    cs = _mirror()
    cs.fold_claim(Claim(KEY, "agent-1", 1, fence=11, mod_revision=11, lease_id=7), exact=True)
    cs.apply([_put(KS.claim(KEY), 11)])
    cs.fold_result(TaskResult(KEY, TaskState.SUCCEEDED, "agent-1", 1), 12, exact=True)
    cs.apply([_put(KS.result(KEY), 12)])
    assert cs.state_of(KEY) is TaskState.SUCCEEDED and cs.revision == 12


def test_a_fold_not_marked_exact_is_decoded_again_from_its_echo() -> None:
    cs = _mirror()
    cs.fold_task(TaskRecord(KEY, TaskSpec("a"), TaskState.SUCCEEDED, 1, mod_revision=11))
    with pytest.raises(ValueError):
        cs.apply([_put(KS.task(KEY), 11)])


def test_a_later_write_of_an_exactly_folded_key_is_decoded() -> None:
    cs = _mirror()
    cs.fold_task(TaskRecord(KEY, TaskSpec("a"), TaskState.READY, 1, mod_revision=11), exact=True)
    cs.apply([_put(KS.task(KEY), 11)])
    with pytest.raises(ValueError):
        cs.apply([_put(KS.task(KEY), 12)])
