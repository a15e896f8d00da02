"""The agent SDK against a real gRPC server that follows a script."""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.scripted_coordinator import ScriptedCoordinator
from workhive.agent import ConnectionState, CoordinatorUnavailable, ExecHandler, Task, TaskFailure
from workhive.v1 import agent_pb2, common_pb2

from .conftest import Running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

Start = Callable[..., Running]


class Recorder:
    """A handler that records calls and can be held until released."""

    def __init__(self, block: bool = False) -> None:
        self.calls: list[Task] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()

    def __call__(self, task: Task) -> str:
        self.calls.append(task)
        self.started.set()
        assert self.release.wait(10)
        return f"out:{task.task_id}"


def wait(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_hello_welcome_handshake(coord: ScriptedCoordinator, start_agent: Start) -> None:
    r = start_agent(coord.address, Recorder(), capabilities=["gpu", "py"], slots=3, prefetch=2)
    hello = coord.wait_kind("hello")[0].msg.hello
    assert hello.agent_id == "agent-test"
    assert list(hello.capabilities) == ["gpu", "py"]
    assert (hello.slots, hello.prefetch, hello.resume_lease_id) == (3, 2, 0)
    assert hello.sdk_version
    wait(lambda: r.agent.state is ConnectionState.CONNECTED)
    assert r.agent.lease_id == 7000
    assert r.agent.address == coord.address
    coord.wait_kind("heartbeat", 2)


def test_task_runs_only_after_start_granted(coord: ScriptedCoordinator, start_agent: Start) -> None:
    coord.auto_grant = False
    h = Recorder()
    start_agent(coord.address, h)
    coord.assign("t1", fence=41, payload_json='{"n": 1}')
    start = coord.wait_kind("start")[0].msg.start.task
    assert (start.task_id, start.fence) == ("t1", 41)
    assert not h.started.wait(0.3), "ran before StartGranted"
    coord.grant("t1", 41)
    assert h.started.wait(5)
    assert h.calls[0].payload == {"n": 1}
    assert h.calls[0].fence == 41
    done = coord.wait_kind("completed")[0].msg.completed
    assert (done.task.task_id, done.task.fence, done.task.attempt) == ("t1", 41, 1)
    assert done.output_tail == "out:t1"
    assert done.duration_seconds >= 0


def test_start_refused_never_runs(
    coord: ScriptedCoordinator, start_agent: Start, tmp_path: Path
) -> None:
    coord.refuse = {"t1"}
    h = Recorder()
    log = tmp_path / "exec.jsonl"
    r = start_agent(coord.address, h, exec_log=log)
    coord.assign("t1", fence=5)
    coord.wait_kind("start")
    wait(lambda: r.agent.counters.dropped == 1)
    assert not h.started.wait(0.3)
    assert r.agent.held() == {}
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["event"], e["task"], e["fence"]) for e in events] == [("dropped", "t1", 5)]


def test_started_assign_runs_without_start_request(
    coord: ScriptedCoordinator, start_agent: Start, tmp_path: Path
) -> None:
    h = Recorder()
    log = tmp_path / "exec.jsonl"
    start_agent(coord.address, h, exec_log=log)
    coord.assign("t1", fence=9, started=True, attempt=2)
    coord.wait_kind("completed")
    assert coord.messages("start") == []
    assert h.calls[0].attempt == 2
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "finish"]
    assert events[1] | {"t": 0} == {
        "t": 0,
        "agent": "agent-test",
        "pid": os.getpid(),  # the agent runs in this process
        "event": "finish",
        "project": "p1",
        "task": "t1",
        "fence": 9,
        "attempt": 2,
        "outcome": "succeeded",
    }


def test_a_batch_of_coordinator_messages_is_handled_in_order(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    h = Recorder()
    start_agent(coord.address, h)
    coord.wait_kind("hello")
    assert coord.hellos[0].batches  # the SDK reads batches
    assign = [
        agent_pb2.Assign(task=common_pb2.TaskRef(project_id="p1", task_id=t, fence=f), started=s)
        for t, f, s in (("t1", 3, True), ("t2", 4, False))
    ]
    grant = agent_pb2.StartGranted(task=assign[1].task)
    coord.send(
        agent_pb2.CoordinatorMessage(
            batch=agent_pb2.CoordinatorBatch(
                messages=[
                    agent_pb2.CoordinatorMessage(assign=assign[0]),
                    agent_pb2.CoordinatorMessage(assign=assign[1]),
                    agent_pb2.CoordinatorMessage(start_granted=grant),
                ]
            )
        )
    )
    coord.wait_kind("completed", count=2)
    assert [c.task_id for c in h.calls] == ["t1", "t2"]


def test_progress_goes_at_once_and_a_burst_is_coalesced_to_its_latest(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    def handler(task: Task) -> str:
        task.progress(0.25, "first")
        task.progress(0.5, "dropped: replaced by the next")
        task.progress(0.75, "latest")
        time.sleep(0.8)  # the held report goes with a heartbeat once the interval passed
        return "done"

    start_agent(coord.address, handler)
    coord.assign("t1", fence=3, started=True)
    coord.wait_kind("completed", timeout=10)
    sent = [(m.msg.progress.fraction, m.msg.progress.note) for m in coord.messages("progress")]
    assert sent == [(0.25, "first"), (0.75, "latest")]
    assert coord.messages("progress")[0].msg.progress.task.fence == 3


def test_failures_carry_fence_reason_and_retryability(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    def handler(task: Task) -> None:
        if task.task_id == "final":
            raise TaskFailure("bad input", exit_code=3, output="oops")
        raise ValueError("boom")

    start_agent(coord.address, handler, slots=2)
    coord.assign("final", fence=11, started=True)
    coord.assign("retry", fence=12, started=True)
    failed = {m.msg.failed.task.task_id: m.msg.failed for m in coord.wait_kind("failed", 2)}
    assert failed["final"].task.fence == 11
    assert failed["final"].reason == "bad input"
    assert not failed["final"].retryable
    assert failed["final"].exit_code == 3
    assert failed["final"].output_tail == "oops"
    assert failed["retry"].retryable
    assert failed["retry"].reason == "ValueError: boom"
    assert "Traceback" in failed["retry"].output_tail


def test_rejected_completion_is_dropped(
    coord: ScriptedCoordinator, start_agent: Start, tmp_path: Path
) -> None:
    coord.reject = {"t1"}
    log = tmp_path / "exec.jsonl"
    r = start_agent(coord.address, Recorder(), exec_log=log)
    coord.assign("t1", fence=3, started=True)
    coord.wait_kind("completed")
    wait(lambda: r.agent.counters.completions_rejected == 1)
    # not re-sent after a reconnect: it was dropped
    coord.drop_sessions()
    coord.wait_kind("hello", 2)
    coord.wait_kind("heartbeat", len(coord.messages("heartbeat")) + 2)
    assert len(coord.messages("completed")) == 1
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events == ["start", "finish", "rejected"]


def test_redirect_message_leads_to_leader(
    coord: ScriptedCoordinator, coord2: ScriptedCoordinator, start_agent: Start
) -> None:
    coord.mode = "redirect"
    coord.leader = common_pb2.LeaderInfo(leader_id="scripted-2", address=coord2.address, term=4)
    h = Recorder()
    r = start_agent(coord.address, h)
    coord2.wait_kind("hello")
    wait(lambda: r.agent.address == coord2.address)
    coord2.assign("t1", fence=1, started=True)
    coord2.wait_kind("completed")
    assert len(coord.messages("hello")) == 1
    assert r.agent.counters.redirects == 1


@pytest.mark.parametrize("mode", ["not_leader", "not_leader_md"])
def test_not_leader_status_leads_to_leader(
    mode: str, coord: ScriptedCoordinator, coord2: ScriptedCoordinator, start_agent: Start
) -> None:
    coord.mode = mode
    coord.leader = common_pb2.LeaderInfo(leader_id="scripted-2", address=coord2.address, term=4)
    r = start_agent(coord.address, Recorder())
    coord2.wait_kind("hello")
    wait(lambda: r.agent.state is ConnectionState.CONNECTED)
    assert r.agent.address == coord2.address
    assert r.agent.counters.redirects == 1


def test_a_leader_out_of_reach_is_reached_through_the_follower_that_named_it(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    with socket.socket() as closed:  # a port nobody listens on: the leader is unreachable
        closed.bind(("127.0.0.1", 0))
        unreachable = f"127.0.0.1:{closed.getsockname()[1]}"
    coord.mode = "not_leader"
    coord.serve_relayed = True
    coord.leader = common_pb2.LeaderInfo(leader_id="cut-off", address=unreachable, term=3)
    r = start_agent(coord.address, Recorder())
    wait(lambda: r.agent.state is ConnectionState.CONNECTED)
    assert coord.relayed == 1 and r.agent.counters.relays == 1
    coord.assign("t1", fence=1, started=True)
    coord.wait_kind("completed")


def _session_with_answers(
    leader: ScriptedCoordinator, follower: ScriptedCoordinator, start_agent: Start, ttl: int
) -> Running:
    """An agent in session with ``leader``, whose heartbeat answers say the
    lease has ``ttl`` of its 6 s left; ``follower`` accepts its lease."""
    leader.heartbeat_ttl = ttl
    r = start_agent([leader.address, follower.address], Recorder())
    wait(lambda: r.agent.state is ConnectionState.CONNECTED)
    follower.leases |= leader.leases
    return r


def test_a_lease_the_session_no_longer_renews_is_renewed_through_another_replica(
    coord: ScriptedCoordinator, coord2: ScriptedCoordinator, start_agent: Start
) -> None:
    # a leader cut from etcd still answers heartbeats, from memory, with less
    # and less of the lease left: the agent renews it through a follower
    # before it runs out (a quarter of the TTL before: 4.5 s after the
    # Welcome, the last renewal it knows of), and keeps its session
    r = _session_with_answers(coord, coord2, start_agent, ttl=1)
    coord2.wait_kind("unary_heartbeat", timeout=6.0)
    wait(lambda: r.agent.counters.renewed_elsewhere >= 1)
    assert r.agent.address == coord.address and len(coord.hellos) == 1


def test_a_session_that_renews_the_lease_sends_no_heartbeat_elsewhere(
    coord: ScriptedCoordinator, coord2: ScriptedCoordinator, start_agent: Start
) -> None:
    r = _session_with_answers(coord, coord2, start_agent, ttl=6)
    coord.wait_kind("heartbeat", 15)  # 1.5 s of answered heartbeats
    assert coord2.messages("unary_heartbeat") == []
    assert r.agent.counters.renewed_elsewhere == 0


def test_a_named_leader_that_answers_no_leader_yet_is_not_relayed_to(
    coord: ScriptedCoordinator, coord2: ScriptedCoordinator, start_agent: Start
) -> None:
    # it answered (it is reachable, it just lost its term): a relay through the
    # follower would reach the same answer; the agent tries again instead
    coord.mode = "not_leader"
    coord.serve_relayed = True
    coord.leader = common_pb2.LeaderInfo(leader_id="scripted-2", address=coord2.address, term=3)
    coord2.mode = "no_leader"
    r = start_agent([coord.address], Recorder())
    coord2.wait_kind("hello", 2)
    assert coord.relayed == 0 and r.agent.counters.relays == 0


def test_unavailable_tries_the_next_address(
    coord: ScriptedCoordinator, coord2: ScriptedCoordinator, start_agent: Start
) -> None:
    coord.mode = "unavailable"
    r = start_agent([coord.address, coord2.address], Recorder())
    coord2.wait_kind("hello")
    wait(lambda: r.agent.address == coord2.address)


def test_a_session_abandoned_for_silence_is_dialled_again_at_once(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    # The scripted leader never answers heartbeats: with a 2 s TTL the agent
    # gives the session up after 1 s of silence. A follower still names that
    # leader; the agent dials it again at once (a short partition has healed
    # by then) rather than avoiding it for a lease TTL, and resumes its lease.
    with ScriptedCoordinator(coordinator_id="scripted-2", ttl_seconds=2) as leader:
        coord.mode = "not_leader"
        coord.leader = common_pb2.LeaderInfo(leader_id="scripted-2", address=leader.address)
        r = start_agent([coord.address, leader.address], Recorder())
        leader.wait_kind("hello", timeout=5)
        first = time.monotonic()
        leader.wait_kind("hello", count=2, timeout=5)
        assert time.monotonic() - first < 3.0, "the silent leader was avoided"
        assert leader.hellos[1].resume_lease_id in leader.leases
        wait(lambda: r.agent.state is ConnectionState.CONNECTED)


def _granted_behind_a_running_task(
    coord: ScriptedCoordinator, start_agent: Start
) -> tuple[Running, Recorder]:
    """One slot busy with t1 (held by its handler); q1 granted, waiting for it."""
    rec = Recorder(block=True)
    r = start_agent(coord.address, rec, slots=1, prefetch=2)
    coord.assign("t1", fence=21, started=True)
    assert rec.started.wait(5)
    coord.assign("q1", fence=22)
    coord.grant("q1", fence=22)
    wait(lambda: "q1" in [k.task_id for k in r.agent.held().get("runnable", [])])
    return r, rec


def test_a_start_granted_before_a_reconnect_is_asked_for_again_not_run_on_the_old_word(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    # while the agent was away its claim may have moved on and another agent
    # run the task: after the reconnect it asks again, and a refusal drops it
    coord.auto_grant = False
    r, rec = _granted_behind_a_running_task(coord, start_agent)
    coord.drop_sessions()
    coord.wait_kind("hello", 2)
    asked = coord.wait_kind("start")[-1]
    assert asked.session == 2 and asked.msg.start.task.task_id == "q1"
    coord.revoke("q1", fence=22)
    rec.release.set()
    coord.wait_kind("completed")
    wait(lambda: r.agent.counters.dropped == 1)
    assert [t.task_id for t in rec.calls] == ["t1"]


def test_a_start_granted_again_after_a_reconnect_runs(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    _, rec = _granted_behind_a_running_task(coord, start_agent)  # auto_grant re-grants
    coord.drop_sessions()
    rec.release.set()
    coord.wait_kind("completed", 2)
    assert sorted(t.task_id for t in rec.calls) == ["q1", "t1"]


def test_a_lost_lease_drops_a_granted_start_with_its_claim(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    r, rec = _granted_behind_a_running_task(coord, start_agent)
    coord.leases.clear()  # the lease expired meanwhile: the next Welcome is a fresh one
    coord.drop_sessions()
    wait(lambda: r.agent.counters.lease_losses == 1)
    rec.release.set()
    time.sleep(0.3)
    assert [t.task_id for t in rec.calls] == ["t1"]


def test_reconnect_resumes_lease_and_resends_unacked(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    coord.auto_ack = False
    coord.auto_grant = False
    r = start_agent(coord.address, Recorder(), slots=1, prefetch=2)
    coord.assign("t1", fence=21, started=True)
    coord.assign("q1", fence=22)
    first = coord.wait_kind("completed")[0].msg.completed
    coord.wait_kind("start")  # q1 asked to start once t1 freed the slot
    coord.drop_sessions()
    hello = coord.wait_kind("hello", 2)[1].msg.hello
    assert hello.resume_lease_id == 7000
    # held: the queued task, and the finished one whose result awaits its ack
    assert [(t.task_id, t.fence) for t in hello.held] == [("q1", 22), ("t1", 21)]
    again = coord.wait_kind("completed", 2)[1]
    assert again.session == 2
    assert again.msg.completed.task == first.task
    # the pending start request is repeated on the new session too
    assert coord.wait_kind("start", 2)[1].msg.start.task.task_id == "q1"
    wait(lambda: r.agent.state is ConnectionState.CONNECTED)
    assert r.agent.lease_id == 7000
    coord.ack("t1", 21)
    wait(lambda: r.agent.counters.completions_acked == 1)


def test_lost_lease_drops_queued_tasks(coord: ScriptedCoordinator, start_agent: Start) -> None:
    coord.auto_grant = False
    r = start_agent(coord.address, Recorder(), prefetch=2)
    coord.assign("q1", fence=1)
    coord.assign("q2", fence=2)
    coord.wait_kind("start")
    coord.leases.clear()  # the lease expired meanwhile
    coord.drop_sessions()
    coord.wait_kind("hello", 2)
    wait(lambda: r.agent.lease_id == 7001)
    wait(lambda: r.agent.held() == {})
    assert r.agent.counters.lease_losses == 1


@pytest.mark.parametrize("work", ["cpu", "sleep"])
def test_heartbeats_flow_while_handler_blocks(
    work: str, coord: ScriptedCoordinator, start_agent: Start
) -> None:
    """docs/design.md, rule 7: task code cannot starve the heartbeat thread."""
    done = threading.Event()
    window: list[float] = []

    def handler(task: Task) -> None:
        window.append(time.monotonic())
        end = time.monotonic() + 1.2
        if work == "cpu":
            x = 0
            while time.monotonic() < end:
                x += sum(i * i for i in range(2000))
        else:
            time.sleep(1.2)
        window.append(time.monotonic())
        done.set()

    start_agent(coord.address, handler)
    coord.assign("t1", fence=1, started=True)
    assert done.wait(10)
    beats = [m.t for m in coord.messages("heartbeat") if window[0] <= m.t <= window[1]]
    assert len(beats) >= 6, beats  # interval 100 ms over 1.2 s
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert max(gaps) < 0.5, gaps
    running = [m.msg.heartbeat for m in coord.messages("heartbeat") if window[0] <= m.t]
    assert any(hb.running and hb.running[0].task_id == "t1" for hb in running)


def test_fallback_unary_heartbeat_while_stream_down(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    r = start_agent(coord.address, Recorder())
    wait(lambda: r.agent.state is ConnectionState.CONNECTED)
    coord.mode = "unavailable"  # sessions refused, unary heartbeats accepted
    coord.drop_sessions()
    beats = coord.wait_kind("unary_heartbeat", 2)
    assert beats[0].msg.lease_id == 7000
    assert beats[0].msg.agent_id == "agent-test"
    assert r.agent.state is ConnectionState.SUSPENDED


def test_drain_returns_queue_and_finishes_running_work(
    coord: ScriptedCoordinator, start_agent: Start, tmp_path: Path
) -> None:
    h = Recorder(block=True)
    log = tmp_path / "exec.jsonl"
    r = start_agent(coord.address, h, slots=1, prefetch=2, exec_log=log)
    coord.assign("run", fence=1, started=True)
    coord.assign("queued", fence=2)
    assert h.started.wait(5)
    r.agent.drain()
    drain = coord.wait_kind("drain")[0].msg.drain
    assert drain.return_queue
    assert r.thread.is_alive()
    h.release.set()
    done = coord.wait_kind("completed")[0].msg.completed
    assert done.task.task_id == "run"
    r.join(5)
    assert r.errors == []
    assert [t.task_id for t in h.calls] == ["run"]
    events = [(e["event"], e["task"]) for e in map(json.loads, log.read_text().splitlines())]
    assert ("dropped", "queued") in events
    assert ("finish", "run") in events
    assert r.agent.state is ConnectionState.CLOSED


def test_unreachable_raises(start_agent: Start) -> None:
    r = start_agent("127.0.0.1:1", Recorder(), unreachable_timeout=0.5)
    r.join(5)
    assert len(r.errors) == 1
    assert isinstance(r.errors[0], CoordinatorUnavailable)


def test_revoke_drops_queued_task(coord: ScriptedCoordinator, start_agent: Start) -> None:
    coord.auto_grant = False
    h = Recorder()
    r = start_agent(coord.address, h, slots=1, prefetch=1)
    coord.assign("q1", fence=8)
    coord.wait_kind("start")
    coord.revoke("q1", 8)
    wait(lambda: r.agent.held() == {})
    coord.grant("q1", 8)  # late grant for a task it no longer holds
    assert not h.started.wait(0.3)


def test_revoke_of_running_exec_task_kills_it(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    r = start_agent(coord.address, ExecHandler("sleep 30", kill_grace=0.5))
    coord.assign("t1", fence=4, started=True)
    wait(lambda: "running" in r.agent.held())
    coord.revoke("t1", 4)
    failed = coord.wait_kind("failed")[0].msg.failed
    assert failed.task.fence == 4
    assert "signal" in failed.reason


def test_redirect_mid_session_keeps_the_lease(
    coord: ScriptedCoordinator, coord2: ScriptedCoordinator, start_agent: Start
) -> None:
    r = start_agent(coord.address, Recorder())
    wait(lambda: r.agent.state is ConnectionState.CONNECTED)
    leader = common_pb2.LeaderInfo(leader_id="scripted-2", address=coord2.address)
    coord.send(agent_pb2.CoordinatorMessage(redirect=agent_pb2.Redirect(leader=leader)))
    hello = coord2.wait_kind("hello")[0].msg.hello
    assert hello.resume_lease_id == 7000
    wait(lambda: r.agent.address == coord2.address)


def test_a_task_reclaimed_while_it_runs_reports_under_the_new_claim(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    """The agent outlived its lease mid-run; the leader claimed the task for it
    again: the run in progress finishes under the new fence, and runs once."""
    handler = Recorder(block=True)
    r = start_agent(coord.address, handler, slots=1)
    coord.assign("t1", fence=10, started=True)
    assert handler.started.wait(5)
    coord.leases.clear()  # the lease expired while the agent was paused
    coord.drop_sessions()
    wait(lambda: r.agent.lease_id == 7001)
    coord.assign("t1", fence=30, attempt=2, started=True)
    time.sleep(0.2)  # the assignment reaches the agent while the handler runs
    handler.release.set()
    done = coord.wait_kind("completed")[0].msg.completed
    assert (done.task.task_id, done.task.fence, done.task.attempt) == ("t1", 30, 2)
    time.sleep(0.3)
    assert len(handler.calls) == 1


def test_a_reassigned_task_whose_result_awaits_its_ack_is_not_run_again(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    """A new leader re-sends a started claim whose result the agent holds: the
    agent reports the result again instead of running the task a second time."""
    coord.auto_ack = False
    handler = Recorder()
    start_agent(coord.address, handler, slots=1)
    coord.assign("t1", fence=21, started=True)
    coord.wait_kind("completed")
    coord.assign("t1", fence=21, started=True)
    again = coord.wait_kind("completed", 2)[1].msg.completed
    assert (again.task.task_id, again.task.fence) == ("t1", 21)
    time.sleep(0.3)
    assert len(handler.calls) == 1


def test_a_result_rejected_for_a_lost_lease_is_reused_when_the_task_comes_back(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    coord.reject = {"t1"}
    handler = Recorder()
    r = start_agent(coord.address, handler, slots=1)
    coord.assign("t1", fence=21, started=True)
    wait(lambda: r.agent.counters.completions_rejected == 1)
    coord.reject = set()
    coord.assign("t1", fence=40, attempt=2, started=True)
    again = coord.wait_kind("completed", 2)[1].msg.completed
    assert (again.task.fence, again.task.attempt) == (40, 2)
    wait(lambda: r.agent.counters.completions_acked == 1)
    assert len(handler.calls) == 1


def test_one_completion_ack_may_acknowledge_several_completions(
    coord: ScriptedCoordinator, start_agent: Start
) -> None:
    coord.auto_ack = False
    r = start_agent(coord.address, Recorder(), slots=3)
    assert coord.wait_kind("hello")[0].msg.hello.ack_batches  # the SDK reads CompletionAck.more
    for i, t in enumerate(("t1", "t2", "t3")):
        coord.assign(t, fence=30 + i, started=True)
    coord.wait_kind("completed", count=3)
    refs = [
        common_pb2.TaskRef(project_id="p1", task_id=t, fence=30 + i)
        for i, t in enumerate(("t1", "t2", "t3"))
    ]
    coord.send(
        agent_pb2.CoordinatorMessage(
            completion_ack=agent_pb2.CompletionAck(task=refs[0], more=refs[1:])
        )
    )
    wait(lambda: r.agent.counters.completions_acked == 3)
