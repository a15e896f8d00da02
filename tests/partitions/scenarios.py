"""Partition scenarios: every etcd member, coordinator and agent in its own
network namespace (``tests/harness/netns.py``), a link cut (or delayed)
mid-project, healed, the project finished and the whole run audited.

Shared by ``test_partitions.py`` and ``python -m tests.partitions.scenarios``
(which prints one JSON line per run: the figures of docs/failover.md).

Recovery is the time from the cut (or the heal) to the first task start that
proves work goes on: a start granted by a new leader term when the leader was
cut off, a re-run elsewhere of a cut-off agent's task, else the first start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.failover.scenarios import AGENT_LEASE_TTL, Outcome, _agent_of, _need, _running
from tests.harness.netns import Net, Node, NsEtcdMember, start_etcd
from tests.harness.scenario import Scenario, generated_project
from workhive.coordinator.cli.up import SLEEP_CMD
from workhive.coordinator.local_cluster.processes import Proc

FINISH_TIMEOUT = 120.0


class NetScenario(Scenario):
    """A ``Scenario`` whose processes each run in their own node of ``net``.

    coordinator-0 starts alone and leads (the first campaigner has the lowest
    election key), so the leader's node is known before any fault."""

    def __init__(
        self, net: Net, etcd: list[NsEtcdMember], run_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        super().__init__([m.client_url for m in etcd], run_dir, env=env)
        self.net = net
        self.etcd = etcd
        self.node_of: dict[str, Node] = {}
        self.shaped = 0  # how many coordinators (the first ones) get a shaped link

    def start(self, coordinators: int = 3, agents: int = 4, slots: int = 1) -> NetScenario:
        for i in range(coordinators):
            node = self.net.add_node(f"c{i}", shaped=i < self.shaped)
            proc = self.cluster.add_coordinator(
                # a private subnet inside the test's own namespaces
                ["--insecure-listen-anywhere"],
                host=node.ip,
                command_prefix=node.prefix,
            )
            self.node_of[proc.name] = node
            self.cluster.wait_coordinators(60.0)
            if i == 0:
                leader = self.wait_leader(30.0)
                assert leader.id == proc.name, f"{leader.id} leads, expected {proc.name}"
        self.reset_client()  # made when only coordinator-0 was up: give it every address
        for _ in range(agents):
            self.add_agent(slots=slots)
        return self

    def add_agent(self, slots: int = 1, agent_id: str | None = None) -> Proc:
        node = self.net.add_node(f"a{len(self.agents)}")
        proc = self.cluster.add_agent(
            SLEEP_CMD, slots=slots, agent_id=agent_id, command_prefix=node.prefix
        )
        self.node_of[proc.name] = node
        return proc

    def nodes(self, procs: list[Proc]) -> list[Node]:
        return [self.node_of[p.name] for p in procs]

    @property
    def etcd_nodes(self) -> list[Node]:
        return [m.node for m in self.etcd if m.node is not None]


@contextlib.contextmanager
def partitioned(
    run_dir: Path, etcd_members: int = 1, env: dict[str, str] | None = None, shaped: int = 0
) -> Iterator[NetScenario]:
    """A net, etcd in it and a ``NetScenario`` whose first ``shaped``
    coordinators have a delay/loss link; everything removed afterwards."""
    with Net() as net:
        members = start_etcd(net, etcd_members, run_dir)
        sc = NetScenario(net, members, run_dir, env)
        sc.shaped = shaped
        try:
            yield sc
        finally:
            sc.stop()
            for m in members:
                m.kill()


def _finish(sc: NetScenario, pid: str, out: Outcome) -> Outcome:
    sc.wait_finished(pid, FINISH_TIMEOUT)
    out.info["agent_leases_ended"] = sc.agent_leases_ended()
    out.audit = sc.check()
    out.info["executions"] = out.audit.executions
    out.info["terms"] = out.audit.terms
    return out


# -- the scenarios ----------------------------------------------------------------------


def leader_etcd_cut(run_dir: Path, seed: int = 21, hold: float = 12.0) -> Outcome:
    """Cut the leader from etcd (it still reaches agents and the other
    coordinators): its election lease expires, a follower leads, work resumes;
    the old leader writes nothing more (fencing), the project finishes."""
    with partitioned(run_dir) as sc:
        sc.start(coordinators=3, agents=4)
        pid = sc.submit(generated_project("cut-leader-etcd", 80, seed=seed))
        sc.wait_succeeded(pid, 12, timeout=60.0)
        proc, old = sc.leader_proc()
        t0 = time.time()
        sc.net.cut([sc.node_of[proc.name]], sc.etcd_nodes)
        try:
            new = sc.wait_leader(hold + 20.0, not_term=old.term, not_id=old.id)
            time.sleep(max(0.0, t0 + hold - time.time()))
        finally:
            sc.net.heal()
        t_heal = time.time()
        out = Outcome("leader-etcd-cut")
        out.metrics["new_leader"] = new.seen_at - t0
        out.metrics["recover"] = _need(sc.resume_under_new_term(t0, old.term), "resume", sc)
        out.info["cut_s"] = round(t_heal - t0, 1)
        # after the heal the old leader notices its lost session and steps down
        # (it went on answering as the leader for ~11 s after the heal: docs/failover.md)
        deadline = time.monotonic() + 25.0
        said = sc.ask_directly(proc)
        while said == "leader" and time.monotonic() < deadline:
            time.sleep(0.2)
            said = sc.ask_directly(proc)
        out.info["old_leader_says"] = said
        out.metrics["old_leader_steps_down_after_heal"] = time.time() - t_heal
        out = _finish(sc, pid, out)
        now = sc.wait_leader(10.0)
        out.info["leader_after"] = f"{now.id} term {now.term}"
        out.info["old_term"] = old.term
        return out


def leader_agents_cut(run_dir: Path, seed: int = 22, hold: float = 20.0) -> Outcome:
    """Cut the leader from every agent (it still reaches etcd and the other
    coordinators): agents reach a follower; the project goes on under the cut."""
    with partitioned(run_dir) as sc:
        sc.start(coordinators=3, agents=4)
        pid = sc.submit(generated_project("cut-leader-agents", 60, seed=seed))
        sc.wait_succeeded(pid, 12, timeout=60.0)
        proc, _ = sc.leader_proc()
        t0 = time.time()
        sc.net.cut([sc.node_of[proc.name]], sc.nodes(sc.agents))
        finished_under_cut = False
        try:
            deadline = time.monotonic() + hold
            while time.monotonic() < deadline:
                p = sc.project(pid)
                if p is not None and p.finished:
                    finished_under_cut = True
                    break
                time.sleep(0.2)
        finally:
            sc.net.heal()
        t_heal = time.time()
        out = Outcome("leader-agents-cut")
        out.info["finished_under_cut"] = finished_under_cut
        out.info["cut_s"] = round(t_heal - t0, 1)
        under_cut = sc.first_start_after(t0 + 0.5, lambda e: float(e["t"]) < t_heal)  # type: ignore[arg-type]
        out.info["started_under_cut"] = under_cut is not None
        out = _finish(sc, pid, out)
        # the first start of new work after the cut (0.5 s: starts already on their way)
        out.metrics["recover"] = _need(sc.first_start_after(t0 + 0.5), "start", sc) + 0.5
        after_heal = sc.first_start_after(t_heal)
        if after_heal is not None:  # none when the project finished under the cut
            out.metrics["recover_after_heal"] = after_heal
        return out


def _busy_agent(sc: NetScenario) -> tuple[Proc, tuple[str, str, int]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = _running(sc)
        if running:
            return sc.proc(_agent_of(sc, running[0])), running[0]
        time.sleep(0.05)
    raise AssertionError(f"no task started; {sc.run_dir}")


def agent_cut_short(run_dir: Path, seed: int = 23, cut: float = 3.0) -> Outcome:
    """Cut a busy agent from every coordinator for less than its lease TTL
    (3 s of 6 s): nothing is requeued, nothing runs twice."""
    with partitioned(run_dir) as sc:
        sc.start(coordinators=3, agents=3)
        pid = sc.submit(generated_project("cut-agent-short", 40, seed=seed, sleep=(0.8, 1.5)))
        victim, key = _busy_agent(sc)
        t0 = time.time()
        sc.net.cut([sc.node_of[victim.name]], sc.nodes(sc.coordinators))
        try:
            time.sleep(cut)
        finally:
            sc.net.heal()
        t_heal = time.time()
        out = Outcome("agent-cut-short")
        out.info["cut_s"] = round(t_heal - t0, 1)
        out.info["lease_ttl"] = AGENT_LEASE_TTL
        out = _finish(sc, pid, out)
        out.metrics["recover"] = _need(
            sc.first_start_after(t_heal, lambda e: e["agent"] == victim.name),
            "the cut agent's next start",
            sc,
        )
        agent, writes = sc.result_of(key[0], key[1])
        out.info["held_task_result_by_victim"] = agent == victim.name and writes == 1
        return out


def agent_cut_past_lease(run_dir: Path, seed: int = 24) -> Outcome:
    """Cut a busy agent from every coordinator past its lease (TTL 3 s): its
    claims are released, its task runs again elsewhere, and its late
    completion, reported after the heal, is rejected."""
    env = {"WORKHIVE_AGENT_LEASE_TTL": "3"}
    with partitioned(run_dir, env=env) as sc:
        sc.start(coordinators=3, agents=3)
        pid = sc.submit(generated_project("cut-agent-long", 40, seed=seed, sleep=(0.8, 1.5)))
        victim, key = _busy_agent(sc)
        t0 = time.time()
        sc.net.cut([sc.node_of[victim.name]], sc.nodes(sc.coordinators))
        try:
            end = time.monotonic() + 30
            while time.monotonic() < end and sc.result_now(key[0], key[1]) is None:
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            sc.net.heal()
        t_heal = time.time()
        out = Outcome("agent-cut-past-lease")
        out.info["cut_s"] = round(t_heal - t0, 1)
        out = _finish(sc, pid, out)
        late = _late_reports(sc, victim, key)
        agent, writes = sc.result_of(key[0], key[1])
        out.info["late_completion"] = str(late[0]["event"]) if late else None
        out.info["result_agent"] = agent
        out.info["result_writes"] = writes
        out.info["victim"] = victim.name
        out.metrics["recover"] = _need(
            sc.first_start_after(t0, lambda e: (e["project"], e["task"]) == key[:2]),
            "re-run of the cut agent's task",
            sc,
        )
        return out


def _late_reports(
    sc: NetScenario, victim: Proc, key: tuple[str, str, int]
) -> list[dict[str, object]]:
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
    return late


def etcd_member_isolated(run_dir: Path, seed: int = 25, hold: float = 10.0) -> Outcome:
    """3-member etcd: cut the member every client lists first from its two
    peers (coordinators still reach it): the cluster keeps going."""
    with partitioned(run_dir, etcd_members=3) as sc:
        sc.start(coordinators=3, agents=4)
        pid = sc.submit(generated_project("etcd-isolated", 80, seed=seed))
        sc.wait_succeeded(pid, 12, timeout=60.0)
        victim = sc.etcd_nodes[0]
        t0 = time.time()
        sc.net.cut([victim], sc.etcd_nodes[1:])
        try:
            time.sleep(hold)
        finally:
            sc.net.heal()
        t_heal = time.time()
        out = Outcome("etcd-member-isolated")
        out.info["cut_s"] = round(t_heal - t0, 1)
        out.metrics["recover"] = _need(sc.first_start_after(t0), "start after the cut", sc)
        out.info["started_under_cut"] = (
            sc.first_start_after(t0, lambda e: float(e["t"]) < t_heal)  # type: ignore[arg-type]
            is not None
        )
        return _finish(sc, pid, out)


def leader_link_delayed(
    run_dir: Path, seed: int = 26, delay: float = 2.0, hold: float = 10.0
) -> Outcome:
    """Delay by 2 s every packet the leader sends (RTT + 2 s to etcd, agents
    and peers) for 15 s, then remove the delay: slower, nothing lost or doubled."""
    with partitioned(run_dir, shaped=1) as sc:
        sc.start(coordinators=3, agents=4)
        pid = sc.submit(generated_project("delay-leader", 120, seed=seed))
        sc.wait_succeeded(pid, 12, timeout=60.0)
        proc, old = sc.leader_proc()
        before = sc.project(pid)
        done_before = before.counts.get("succeeded", 0) if before else 0
        t0 = time.time()
        sc.net.shape(sc.node_of[proc.name], delay)
        try:
            time.sleep(hold)
        finally:
            sc.net.shape(sc.node_of[proc.name], 0.0)
        t_heal = time.time()
        during = sc.project(pid)
        out = Outcome("leader-link-delayed")
        out.info["delay_s"] = delay
        out.info["delayed_s"] = round(t_heal - t0, 1)
        out.info["succeeded_under_delay"] = (
            during.counts.get("succeeded", 0) if during else 0
        ) - done_before
        first = sc.first_start_after(t0, lambda e: float(e["t"]) < t_heal)  # type: ignore[arg-type]
        out.info["started_under_delay"] = first is not None
        if first is not None:
            out.metrics["recover"] = first
        after_heal = sc.first_start_after(t_heal)
        if after_heal is not None:  # None: the project finished under the delay
            out.metrics["recover_after_heal"] = after_heal
        out = _finish(sc, pid, out)
        out.info["leader_after"] = sc.wait_leader(10.0).id
        out.info["old_leader"] = old.id
        return out


SCENARIOS: dict[str, Callable[[Path], Outcome]] = {
    "leader-etcd-cut": leader_etcd_cut,
    "leader-agents-cut": leader_agents_cut,
    "agent-cut-short": agent_cut_short,
    "agent-cut-past-lease": agent_cut_past_lease,
    "etcd-member-isolated": etcd_member_isolated,
    "leader-link-delayed": leader_link_delayed,
}


def main() -> None:
    ap = argparse.ArgumentParser(description="run partition scenarios, print one JSON line each")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    for _ in range(args.runs):
        for name in names:
            d = tempfile.mkdtemp(prefix=f"whp-{name}-")
            try:
                out = SCENARIOS[name](Path(d))
            except AssertionError as exc:  # the run directory is kept for its logs
                print(json.dumps({"scenario": name, "ok": False, "error": str(exc)[:800]}))
                continue
            print(json.dumps({**out.to_dict(), "ok": True}), flush=True)
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
