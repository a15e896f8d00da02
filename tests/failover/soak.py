"""Randomized soak: many faults of random kinds across several projects in one
bounded run, then the invariant checker over the whole history.

Fault kinds: kill / stop / terminate the leader, kill or stop agents (one or
two at once), pause etcd. Killed processes are restarted (as a supervisor
would); stopped ones are continued. Up to two projects run at a time and a new
one is submitted whenever one finishes, so faults land mid-task, mid-claim and
mid-submit. Deterministic fault plan for a seed (the timing is real).
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

from tests.harness.etcd_container import EtcdContainer
from tests.harness.scenario import Scenario, generated_project, scenario
from workhive.coordinator.local_cluster.processes import Proc
from workhive.coordinator.service.client import ClientError

KINDS = (
    ("kill-leader", 3),
    ("stop-leader", 2),
    ("term-leader", 2),
    ("kill-agent", 3),
    ("kill-agents", 1),
    ("stop-agent", 2),
    ("pause-etcd", 2),
)
AGENTS = 5
IN_FLIGHT = 2


def _pick(rng: random.Random) -> str:
    kinds, weights = zip(*KINDS, strict=True)
    return rng.choices(kinds, weights)[0]


class _Soak:
    def __init__(self, sc: Scenario, etcd: EtcdContainer, rng: random.Random) -> None:
        self.sc = sc
        self.etcd = etcd
        self.rng = rng
        self.done: Counter[str] = Counter()
        self.restarts: list[tuple[float, Proc]] = []
        self.submitted = 0
        self.finished: set[str] = set()

    # -- projects ------------------------------------------------------------------------

    def top_up(self) -> None:
        """Keep IN_FLIGHT projects running: submit the next when one finished."""
        open_ = [p.id for p in self.sc.projects if p.id not in self.finished]
        for pid in open_:
            p = self.sc.project(pid)
            if p is not None and p.finished:
                self.finished.add(pid)
        while len([p for p in self.sc.projects if p.id not in self.finished]) < IN_FLIGHT:
            spec = generated_project(
                f"soak-{self.submitted}",
                self.rng.randint(40, 80),
                seed=self.rng.randrange(1 << 30),
                max_attempts=50,
            )
            try:
                self.sc.submit(spec)
            except ClientError:
                return  # no leader right now; next round
            self.submitted += 1

    # -- faults --------------------------------------------------------------------------

    def _restart_due(self, force: bool = False) -> None:
        now = time.monotonic()
        for when, proc in list(self.restarts):
            if force or now >= when:
                self.restarts.remove((when, proc))
                if not proc.alive:
                    proc.start()

    def _leader(self) -> Proc | None:
        try:
            proc, _ = self.sc.leader_proc(timeout=20.0)
        except AssertionError:
            return None
        return proc if proc.alive and not proc.paused else None

    def _live_agents(self) -> list[Proc]:
        return [a for a in self.sc.agents if a.alive and not a.paused]

    def inject(self, kind: str) -> bool:
        rng = self.rng
        if kind.endswith("-leader"):
            leader = self._leader()
            if leader is None:
                return False
            if kind == "kill-leader":
                leader.kill()
                self.restarts.append((time.monotonic() + rng.uniform(0.5, 2.0), leader))
            elif kind == "term-leader":
                leader.signal(signal.SIGTERM)
                self.restarts.append((time.monotonic() + rng.uniform(1.0, 3.0), leader))
            else:
                leader.signal(signal.SIGSTOP)
                time.sleep(rng.uniform(1.0, 7.0))
                leader.signal(signal.SIGCONT)
        elif kind in ("kill-agent", "kill-agents"):
            live = self._live_agents()
            n = 1 if kind == "kill-agent" else 2
            if len(live) <= n + 1:
                return False
            for a in rng.sample(live, n):
                a.kill()
                self.restarts.append((time.monotonic() + rng.uniform(0.5, 3.0), a))
        elif kind == "stop-agent":
            live = self._live_agents()
            if len(live) <= 2:
                return False
            a = rng.choice(live)
            a.signal(signal.SIGSTOP)
            time.sleep(rng.uniform(0.5, 5.0))
            a.signal(signal.SIGCONT)
        elif kind == "pause-etcd":
            self.etcd.pause()
            try:
                time.sleep(rng.uniform(0.5, 7.0))
            finally:
                self.etcd.unpause()
        self.done[kind] += 1
        return True


def run_soak(
    etcd: EtcdContainer, run_dir: Path, faults: int, seed: int = 11, out: Path | None = None
) -> dict[str, object]:
    """Inject ``faults`` faults, finish every project, audit; the JSON report."""
    rng = random.Random(seed)
    budget = 120.0 + faults * 8.0  # the run is bounded whatever happens
    t_start = time.monotonic()
    with scenario([etcd.url], run_dir, env={"WORKHIVE_AGENT_LEASE_TTL": "4"}) as sc:
        sc.start(coordinators=3, agents=AGENTS)
        soak = _Soak(sc, etcd, rng)
        soak.top_up()
        skipped = 0
        while sum(soak.done.values()) < faults:
            assert time.monotonic() - t_start < budget, (
                f"soak exceeded {budget:.0f}s after {sum(soak.done.values())} faults; {run_dir}"
            )
            soak._restart_due()
            soak.top_up()
            if not soak.inject(_pick(rng)):
                skipped += 1
            time.sleep(rng.uniform(0.2, 1.5))
        soak._restart_due(force=True)
        remaining = max(60.0, budget - (time.monotonic() - t_start))
        deadline = time.monotonic() + remaining
        for spec in list(sc.projects):
            sc.wait_finished(spec.id, max(10.0, deadline - time.monotonic()))
        report = sc.check()
        starts = sc.exec_events("start")
        result: dict[str, object] = {
            "faults": sum(soak.done.values()),
            "faults_survived": sum(soak.done.values()),
            "by_kind": dict(sorted(soak.done.items())),
            "skipped_no_target": skipped,
            "projects": len(sc.projects),
            "tasks": report.tasks,
            "tasks_run": len(starts),
            "requeued": report.requeued,
            "leader_terms": report.terms,
            "lost": len(report.lost),
            "doubled": len(report.committed_twice),
            "violations": report.violations,
            "seconds": round(time.monotonic() - t_start, 1),
            "seed": seed,
        }
    text = json.dumps(result)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result
