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
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from tests.harness.etcd_container import EtcdContainer
from tests.harness.scenario import Scenario, generated_project, scenario
from workhive.client import WorkhiveError
from workhive.coordinator.local_cluster.processes import Proc

Kinds = Sequence[tuple[str, int]]  # fault kind, relative weight

KINDS: Kinds = (
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
SMALL_SHARE = 0.5
"""Projects of 1-40 tasks (stored with their first claims, docs/leader.md "Submit
and claim in one txn"); the others have 41-80 (the full submit protocol)."""
PROGRESS_TIMEOUT = 60.0  # seconds a fault may stop all work


class Pausable(Protocol):
    """What ``pause-etcd`` freezes: the etcd container, or every member."""

    def pause(self) -> None: ...

    def unpause(self) -> None: ...


class Soak:
    """One soak's fault injector and supervisor over a running ``Scenario``.

    ``inject(kind)`` applies one fault of ``kinds`` and returns once it is over
    (a stopped process continued, etcd unpaused) or scheduled to end (a killed
    process restarts after a delay, ``supervise`` does it); False when the
    fault had no target right now (no leader, too few live agents)."""

    kinds: Kinds = KINDS

    def __init__(self, sc: Scenario, etcd: Pausable, rng: random.Random) -> None:
        self.sc = sc
        self.etcd = etcd
        self.rng = rng
        self.done: Counter[str] = Counter()
        self.restarts: list[tuple[float, Proc]] = []
        self.submitted = 0
        self.finished: set[str] = set()
        self.unplanned_restarts = 0
        self.recover: list[float] = []

    # -- projects ------------------------------------------------------------------------

    def top_up(self) -> None:
        """Keep IN_FLIGHT projects running: submit the next when one finished."""
        open_ = [p.id for p in self.sc.projects if p.id not in self.finished]
        for pid in open_:
            p = self.sc.project(pid)
            if p is not None and p.finished:
                self.finished.add(pid)
        while len([p for p in self.sc.projects if p.id not in self.finished]) < IN_FLIGHT:
            small = self.rng.random() < SMALL_SHARE
            spec = generated_project(
                f"soak-{self.submitted}",
                self.rng.randint(1, 40) if small else self.rng.randint(41, 80),
                seed=self.rng.randrange(1 << 30),
                max_attempts=50,
            )
            try:
                self.sc.submit(spec)
            except WorkhiveError:
                return  # no leader right now; next round
            self.submitted += 1

    # -- faults --------------------------------------------------------------------------

    def pick(self) -> str:
        kinds, weights = zip(*self.kinds, strict=True)
        return str(self.rng.choices(kinds, weights)[0])

    def supervise(self, force: bool = False) -> None:
        """Restart every process that is down and due (a supervisor's job):
        killed ones after their delay, and any that exited on its own (an agent
        gives up after 60 s without a coordinator)."""
        now = time.monotonic()
        scheduled = {id(p) for _, p in self.restarts}
        for when, proc in list(self.restarts):
            if (force or now >= when) and not proc.alive:
                self.restarts.remove((when, proc))
                proc.start()
        for proc in [*self.sc.coordinators, *self.sc.agents]:
            if id(proc) not in scheduled and not proc.alive:
                self.unplanned_restarts += 1
                proc.start()

    def wait_progress(self, since: float, timeout: float) -> float | None:
        """Seconds from ``since`` to the first task start after it (None: none)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = self.sc.first_start_after(since)
            if rec is not None:
                return rec
            self.supervise()
            self.top_up()
            time.sleep(0.1)
        return None

    def leader(self) -> Proc | None:
        try:
            proc, _ = self.sc.leader_proc(timeout=5.0)
        except AssertionError:
            return None
        return proc if proc.alive and not proc.paused else None

    def live_agents(self) -> list[Proc]:
        return [a for a in self.sc.agents if a.alive and not a.paused]

    def inject(self, kind: str) -> bool:
        rng = self.rng
        if kind.endswith("-leader"):
            leader = self.leader()
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
            live = self.live_agents()
            n = 1 if kind == "kill-agent" else 2
            if len(live) <= n + 1:
                return False
            for a in rng.sample(live, n):
                a.kill()
                self.restarts.append((time.monotonic() + rng.uniform(0.5, 3.0), a))
        elif kind == "stop-agent":
            live = self.live_agents()
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
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        self.done[kind] += 1
        return True


def _etcd_state(etcd: EtcdContainer, run_dir: Path) -> str:
    """The etcd container's status (and its log, saved to the run dir)."""
    try:
        assert etcd.container is not None
        c = etcd.container.get_wrapped_container()
        c.reload()
        out, err = etcd.container.get_logs()
        (run_dir / "etcd-container.log").write_bytes(out + err)
        st = c.attrs.get("State", {})
        return f"{st.get('Status')} (exit {st.get('ExitCode')}, oom {st.get('OOMKilled')})"
    except Exception as exc:
        return f"unknown ({exc})"


def run_soak(
    etcd: EtcdContainer, run_dir: Path, faults: int, seed: int = 11, out: Path | None = None
) -> dict[str, object]:
    """Inject ``faults`` crash faults, finish every project, audit; the JSON report."""
    with scenario([etcd.url], run_dir, env=SOAK_ENV) as sc:
        sc.start(coordinators=3, agents=AGENTS)
        soak = Soak(sc, etcd, random.Random(seed))
        return drive(soak, faults, seed, out, lambda: f"etcd {_etcd_state(etcd, run_dir)}")


SOAK_ENV = {"WORKHIVE_AGENT_LEASE_TTL": "4"}


def drive(
    soak: Soak,
    faults: int,
    seed: int,
    out: Path | None = None,
    describe: Callable[[], str] = lambda: "",
) -> dict[str, object]:
    """Inject ``faults`` faults one after another into ``soak``'s running
    scenario, each only once work runs again after the last (every fault is
    survived, or the run fails naming it, ``describe()`` added); then finish
    every project and audit the whole history. The JSON report, also written
    to ``out``."""
    sc, rng = soak.sc, soak.rng
    budget = 120.0 + faults * 10.0  # the run is bounded whatever happens
    t_start = time.monotonic()
    # short client retries: with every coordinator down, polling must not
    # keep the supervisor from restarting them
    sc.client_timeout = 3.0
    soak.top_up()
    skipped = 0
    while sum(soak.done.values()) < faults:
        n = sum(soak.done.values())
        assert time.monotonic() - t_start < budget, (
            f"soak exceeded {budget:.0f}s after {n} faults; {sc.run_dir}"
        )
        soak.supervise()
        soak.top_up()
        kind = soak.pick()
        t_fault = time.time()
        if not soak.inject(kind):
            skipped += 1
            continue
        soak.supervise()
        rec = soak.wait_progress(t_fault, PROGRESS_TIMEOUT)
        assert rec is not None, (
            f"no task started within {PROGRESS_TIMEOUT:.0f}s after fault {n + 1} "
            f"({kind}); {describe()}; {sc.run_dir}"
        )
        soak.recover.append(rec)
        if n % 50 == 49:
            print(f"soak: {n + 1}/{faults} faults, {time.monotonic() - t_start:.0f}s", flush=True)
        time.sleep(rng.uniform(0.1, 1.0))
    soak.supervise(force=True)
    remaining = max(60.0, budget - (time.monotonic() - t_start))
    deadline = time.monotonic() + remaining
    sc.client_timeout = 30.0
    sc.reset_client()
    for spec in list(sc.projects):
        sc.wait_finished(spec.id, max(10.0, deadline - time.monotonic()))
    report = sc.check()
    starts = sc.exec_events("start")
    result: dict[str, object] = {
        "faults": sum(soak.done.values()),
        "faults_survived": sum(soak.done.values()),
        "by_kind": dict(sorted(soak.done.items())),
        "skipped_no_target": skipped,
        "unplanned_restarts": soak.unplanned_restarts,
        "recover_median_s": round(statistics.median(soak.recover), 3) if soak.recover else None,
        "recover_worst_s": round(max(soak.recover), 3) if soak.recover else None,
        "projects": len(sc.projects),
        "tasks": report.tasks,
        "tasks_run": len(starts),
        "requeued": report.requeued,
        "chained_claims": report.chained,
        "agent_leases_ended": report.leases_ended,
        "leader_terms": report.terms,
        "lost": len(report.lost),
        "doubled": len(report.committed_twice),
        # a task run again while its first agent's lease lived and its process
        # did not die (the audit's executed_twice): must be 0
        "reexecutions_without_agent_death": len(report.executed_twice),
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
