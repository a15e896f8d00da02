"""The failover scenarios, as plain functions shared by the pytest suite and
``tools/recovery_table.py``.

Each function takes the etcd member(s) it may disturb and a run directory,
runs one bounded fault scenario on a fresh ``Scenario`` (own key prefix), checks
the invariants over the whole run, and returns an ``Outcome`` with the measured
recovery times (seconds). Assertions that are part of the scenario's contract
(e.g. "the deposed leader wrote nothing", "the late completion was rejected")
raise ``AssertionError`` here, so the table tool checks them as well.

Recovery is measured from the fault to the first task start that proves the
system works again:
- leader faults: the first start granted by a new leader term (the claim's
  started write carries the writer's term);
- etcd faults: the first start after etcd is back (unpaused / restarted /
  raft leader killed);
- agent faults: the first start, on a surviving agent, of a task the failed
  agent held.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.etcd_container import EtcdContainer
from tests.harness.scenario import Scenario, generated_project, scenario
from workhive.coordinator.local_cluster.audit import AuditReport

ELECTION_TTL = 5  # coordinator default (--election-ttl)
AGENT_LEASE_TTL = 6  # coordinator default (WORKHIVE_AGENT_LEASE_TTL)
FINISH_TIMEOUT = 120.0
SIGSTOP_HOLD = ELECTION_TTL + 10.0  # long enough to see work resume without the old leader


@dataclass
class Outcome:
    """What one scenario run measured (seconds) and what the audit saw."""

    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)
    audit: AuditReport | None = None

    def to_dict(self) -> dict[str, object]:
        a = self.audit
        return {
            "scenario": self.name,
            **{k: round(v, 3) for k, v in self.metrics.items()},
            **self.info,
            "tasks": a.tasks if a else 0,
            "requeued": a.requeued if a else 0,
            "lost": len(a.lost) if a else None,
            "committed_twice": len(a.committed_twice) if a else None,
        }


def _need(value: float | None, what: str, sc: Scenario) -> float:
    assert value is not None, f"{what}: no task started after the fault; logs in {sc.run_dir}"
    return value


def _running(sc: Scenario, agent: str | None = None) -> list[tuple[str, str, int]]:
    """(project, task, fence) started and not finished, per the exec log."""
    open_: dict[tuple[str, str, int], str] = {}
    for e in sc.exec_events():
        key = (str(e["project"]), str(e["task"]), int(e["fence"]))  # type: ignore[call-overload]
        if e["event"] == "start":
            open_[key] = str(e["agent"])
        elif e["event"] in ("finish", "dropped", "rejected"):
            open_.pop(key, None)
    return [k for k, a in open_.items() if agent is None or a == agent]


def _mid_project(sc: Scenario, pid: str, done: int = 12) -> None:
    sc.wait_succeeded(pid, done, timeout=60.0)


# -- coordinator (leader) faults --------------------------------------------------------


def sigkill_leader(etcd_urls: list[str], run_dir: Path, seed: int = 1) -> Outcome:
    """SIGKILL the leader mid-project; a follower takes over (fast failover
    revokes the dead leader's lease), the project finishes."""
    with scenario(etcd_urls, run_dir) as sc:
        sc.start(coordinators=3, agents=4)
        pid = sc.submit(generated_project("kill-leader", 80, seed=seed))
        _mid_project(sc, pid)
        proc, old = sc.leader_proc()
        t0 = time.time()
        proc.kill()
        new = sc.wait_leader(30.0, not_term=old.term)
        sc.wait_finished(pid, FINISH_TIMEOUT)
        out = Outcome("sigkill-leader")
        out.metrics["new_leader"] = new.seen_at - t0
        out.metrics["recover"] = _need(sc.resume_under_new_term(t0, old.term), "resume", sc)
        out.info["old_leader_id"], out.info["new_leader_id"] = old.id, new.id
        out.info["agent_leases_ended"] = sc.agent_leases_ended()
        out.audit = sc.check()
        return out


def sigstop_leader(etcd_urls: list[str], run_dir: Path, seed: int = 2) -> Outcome:
    """SIGSTOP the leader well past its election TTL, then SIGCONT it: a
    follower leads and work resumes while the old one is still stopped (agents
    abandon a silent session); the old leader steps down and writes nothing."""
    hold_s = SIGSTOP_HOLD
    with scenario(etcd_urls, run_dir) as sc:
        sc.start(coordinators=3, agents=4)
        pid = sc.submit(generated_project("stop-leader", 100, seed=seed))
        _mid_project(sc, pid)
        proc, old = sc.leader_proc()
        t0 = time.time()
        proc.signal(signal.SIGSTOP)
        try:
            new = sc.wait_leader(hold_s + 20.0, not_term=old.term, not_id=old.id)
            time.sleep(max(0.0, t0 + hold_s - time.time()))
        finally:
            proc.signal(signal.SIGCONT)
        t_cont = time.time()
        # the old leader notices its lost session and steps down
        deadline = time.monotonic() + 15.0
        said = sc.ask_directly(proc)
        while said == "leader" and time.monotonic() < deadline:
            time.sleep(0.2)
            said = sc.ask_directly(proc)
        assert said != "leader", f"{old.id} still claims to lead after SIGCONT; {sc.run_dir}"
        sc.wait_finished(pid, FINISH_TIMEOUT)
        assert sc.log_has(proc, "lost leadership") or sc.log_has(proc, "leadership lost"), (
            f"{old.id} never logged losing leadership:\n{sc.log_tail(proc)}"
        )
        out = Outcome("sigstop-leader")
        out.metrics["new_leader"] = new.seen_at - t0
        out.metrics["recover"] = _need(sc.resume_under_new_term(t0, old.term), "resume", sc)
        out.info["paused_s"] = round(t_cont - t0, 1)
        out.info["old_leader_says"] = said
        assert out.metrics["recover"] < hold_s - 1.0, (
            f"no work under the new leader until the old one was resumed; {sc.run_dir}"
        )
        out.info["agent_leases_ended"] = sc.agent_leases_ended()
        out.audit = sc.check()
        assert not out.audit.deposed_writes  # check() raises first; explicit for readers
        # nothing at all was written under the old term after SIGCONT
        late = [
            p
            for p in sc.started_by_terms(lambda term: term == old.term)
            if p[2] > 0 and _claim_written_after(sc, p, t_cont)
        ]
        assert not late, f"old leader wrote started claims after SIGCONT: {late[:5]}"
        return out


def _claim_written_after(sc: Scenario, key: tuple[str, str, int], t: float) -> bool:
    """Whether an agent started ``key`` after ``t`` (its start was granted late)."""
    return any(
        (e["project"], e["task"], e["fence"]) == key and float(e["t"]) > t  # type: ignore[arg-type]
        for e in sc.exec_events("start")
    )


def sigterm_leader(etcd_urls: list[str], run_dir: Path, seed: int = 3) -> Outcome:
    """SIGTERM the leader: it resigns, a follower leads in well under a second."""
    with scenario(etcd_urls, run_dir) as sc:
        sc.start(coordinators=3, agents=4)
        pid = sc.submit(generated_project("term-leader", 80, seed=seed))
        _mid_project(sc, pid)
        proc, old = sc.leader_proc()
        t0 = time.time()
        proc.signal(signal.SIGTERM)
        new = sc.wait_leader(10.0, not_term=old.term, not_id=old.id)
        sc.wait_finished(pid, FINISH_TIMEOUT)
        out = Outcome("sigterm-leader")
        out.metrics["new_leader"] = new.seen_at - t0
        out.metrics["recover"] = _need(sc.resume_under_new_term(t0, old.term), "resume", sc)
        assert proc.popen is not None and proc.popen.wait(15) == 0, "SIGTERM exit code not 0"
        out.info["agent_leases_ended"] = sc.agent_leases_ended()
        out.audit = sc.check()
        return out


# -- etcd faults --------------------------------------------------------------------------


def etcd_pause(member: EtcdContainer, run_dir: Path, seed: int = 4) -> Outcome:
    """Pause the etcd container past every lease TTL, unpause: the leases have
    expired, the cluster re-elects, agents re-register, requeued work runs."""
    hold_s = max(ELECTION_TTL, AGENT_LEASE_TTL) + 2.0
    with scenario([member.url], run_dir) as sc:
        sc.start(coordinators=3, agents=4)
        pid = sc.submit(generated_project("etcd-pause", 80, seed=seed))
        _mid_project(sc, pid)
        member.pause()
        try:
            time.sleep(hold_s)
        finally:
            member.unpause()
        t0 = time.time()
        sc.wait_finished(pid, FINISH_TIMEOUT)
        out = Outcome("etcd-pause")
        out.metrics["recover"] = _need(sc.first_start_after(t0), "resume", sc)
        out.info["paused_s"] = hold_s
        out.audit = sc.check()
        return out


def etcd_restart(member: EtcdContainer, run_dir: Path, seed: int = 5) -> Outcome:
    """Restart the etcd container (data kept): everyone reconnects, work resumes."""
    with scenario([member.url], run_dir) as sc:
        sc.start(coordinators=3, agents=4)
        pid = sc.submit(generated_project("etcd-restart", 80, seed=seed))
        _mid_project(sc, pid)
        t_fault = time.time()
        member.restart()
        member.wait_ready(30.0)
        t0 = time.time()
        sc.wait_finished(pid, FINISH_TIMEOUT)
        out = Outcome("etcd-restart")
        out.metrics["recover"] = _need(sc.first_start_after(t0), "resume", sc)
        out.metrics["recover_from_fault"] = _need(sc.first_start_after(t_fault), "resume", sc)
        out.info["restart_s"] = round(t0 - t_fault, 2)
        out.audit = sc.check()
        return out


def etcd_raft_leader(members: list[EtcdContainer]) -> EtcdContainer:
    """The member that is etcd's raft leader (Maintenance Status RPC)."""
    import etcd3  # tests only; the coordinator itself uses its etcd layer
    from etcd3 import etcdrpc

    for _ in range(50):
        for m in members:
            host, port = m.url.removeprefix("http://").split(":")
            c = etcd3.client(host=host, port=int(port), timeout=3)
            try:
                r = c.maintenancestub.Status(etcdrpc.StatusRequest(), 3)
            except Exception:
                continue
            finally:
                c.close()
            if r.leader and r.header.member_id == r.leader:
                return m
        time.sleep(0.1)
    raise AssertionError("no etcd member reports being the raft leader")


def etcd_kill_raft_leader(members: list[EtcdContainer], run_dir: Path, seed: int = 6) -> Outcome:
    """3-member etcd: kill the raft leader member's container; the project finishes."""
    with scenario([m.url for m in members], run_dir) as sc:
        sc.start(coordinators=3, agents=4)
        pid = sc.submit(generated_project("etcd-leader", 80, seed=seed))
        _mid_project(sc, pid)
        victim = etcd_raft_leader(members)
        t0 = time.time()
        victim.kill()
        sc.wait_finished(pid, FINISH_TIMEOUT)
        out = Outcome("etcd-raft-leader-kill")
        out.metrics["recover"] = _need(sc.first_start_after(t0), "resume", sc)
        out.info["killed_member"] = victim.name
        survivors = [m.url for m in members if m is not victim]
        out.audit = _check_on(sc, survivors)
        return out


def _check_on(sc: Scenario, urls: list[str]) -> AuditReport:
    sc.etcd_url = ",".join(urls)  # read history from the surviving members
    return sc.check()


# -- agent faults --------------------------------------------------------------------------


def kill_agents(etcd_urls: list[str], run_dir: Path, seed: int = 7, victims: int = 3) -> Outcome:
    """SIGKILL several busy agents at once; their tasks go back to ready and
    the survivors finish the project."""
    with scenario(etcd_urls, run_dir) as sc:
        sc.start(coordinators=3, agents=victims + 2)
        pid = sc.submit(generated_project("kill-agents", 80, seed=seed, sleep=(0.2, 0.6)))
        _mid_project(sc, pid, 8)
        deadline = time.monotonic() + 20
        busy: list[str] = []
        while time.monotonic() < deadline:
            busy = sorted({a for a in (_agent_of(sc, k) for k in _running(sc)) if a})
            if len(busy) >= victims:
                break
            time.sleep(0.05)
        chosen = busy[:victims] or [a.name for a in sc.agents[:victims]]
        t0 = time.time()
        for name in chosen:
            sc.proc(name).kill()
        # read after the kill: the dead agents can log nothing more
        held = [k for name in chosen for k in _running(sc, name)]
        sc.wait_finished(pid, FINISH_TIMEOUT)
        held_tasks = {(p, t) for p, t, _ in held}
        out = Outcome("kill-agents")
        out.metrics["recover"] = _need(
            sc.first_start_after(
                t0, lambda e: (e["project"], e["task"]) in held_tasks and e["agent"] not in chosen
            )
            if held_tasks
            else sc.first_start_after(t0),
            "rerun of a killed agent's task",
            sc,
        )
        out.info["killed"] = chosen
        out.info["tasks_in_flight"] = len(held)
        out.audit = sc.check()
        for p, t in held_tasks:  # each one re-ran on a survivor, committed once
            agent, writes = sc.result_of(p, t)
            assert agent not in chosen and writes == 1, f"{p}/{t}: result by {agent}, {writes}x"
        return out


def _agent_of(sc: Scenario, key: tuple[str, str, int]) -> str:
    for e in reversed(sc.exec_events("start")):
        if (e["project"], e["task"], e["fence"]) == key:
            return str(e["agent"])
    return ""


def agent_stopped_past_lease(etcd_urls: list[str], run_dir: Path, seed: int = 8) -> Outcome:
    """SIGSTOP a busy agent past its lease (TTL 3 s), SIGCONT it: its task ran
    again elsewhere; its late completion is rejected; the result is the other's."""
    ttl = 3
    env = {"WORKHIVE_AGENT_LEASE_TTL": str(ttl)}
    with scenario(etcd_urls, run_dir, env=env) as sc:
        sc.start(coordinators=3, agents=3)
        pid = sc.submit(generated_project("stop-agent", 40, seed=seed, sleep=(0.8, 1.2)))
        deadline = time.monotonic() + 60
        running: list[tuple[str, str, int]] = []
        while time.monotonic() < deadline and not running:
            running = _running(sc)
            time.sleep(0.05)
        assert running, f"no task started; {sc.run_dir}"
        key = running[0]
        victim = sc.proc(_agent_of(sc, key))
        t0 = time.time()
        victim.signal(signal.SIGSTOP)
        try:
            # its lease expires, the task is requeued and run (and committed) by another agent
            end = time.monotonic() + 30
            while time.monotonic() < end:
                if sc.result_now(key[0], key[1]) is not None:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            victim.signal(signal.SIGCONT)
        t_cont = time.time()
        sc.wait_finished(pid, FINISH_TIMEOUT)
        # give the resumed agent a moment to report (and be told to drop) its result
        end = time.monotonic() + 10
        late: list[dict[str, object]] = []
        while time.monotonic() < end and not late:
            late = [
                e
                for e in sc.exec_events()
                if e["agent"] == victim.name
                and (e["project"], e["task"], e["fence"]) == key
                and e["event"] in ("rejected", "dropped")
            ]
            time.sleep(0.2)
        agent, writes = sc.result_of(key[0], key[1])
        assert writes == 1, f"{key}: {writes} result writes"
        assert agent and agent != victim.name, f"{key}: result by {agent!r}, victim {victim.name}"
        assert late, f"{victim.name} never had its late completion of {key} rejected/dropped"
        out = Outcome("agent-stopped-past-lease")
        out.metrics["recover"] = _need(
            sc.first_start_after(t0, lambda e: (e["project"], e["task"]) == key[:2]),
            "rerun of the stopped agent's task",
            sc,
        )
        out.info["late_completion"] = str(late[0]["event"])
        out.info["result_agent"] = agent
        out.info["stopped_s"] = round(t_cont - t0, 1)
        out.audit = sc.check()
        return out
