"""The mixed soak (issue 17): the randomized soak of ``tests/failover/soak.py``
with network faults among the crash faults, every process in its own network
namespace (``tests/harness/netns.py``) and a 3-member etcd.

Network fault kinds, each healed before the next fault:

- ``leader-etcd-cut``: the leader cut from every etcd member (2-9 s);
- ``leader-agents-cut``: the leader cut from every agent (2-9 s);
- ``agent-cut-short`` / ``agent-cut-long``: one agent cut from every
  coordinator for less than its lease TTL (0.5-2.5 s of 4 s) / past it (5-8 s);
- ``etcd-member-isolated``: one etcd member cut from its two peers (2-9 s);
- ``leader-link-delayed``: every packet the leader sends delayed 0.5-2 s for
  3-8 s (all coordinators have a shaped link, so whoever leads can be slowed);

plus the crash kinds (kill / stop / terminate the leader, kill or stop agents)
and ``pause-etcd`` (every member SIGSTOPped). The audit afterwards is the
soak's: nothing lost, committed twice, started early, written by a deposed
leader or run again while its agent's lease lived.

``python -m tests.partitions.soak --faults 1000 [--seed 17] [--out FILE]``
prints progress and the JSON report (``bench/results/soak.json`` holds the
committed 1,000-fault run); the test (``test_soak.py``) runs a short one.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tests.failover.soak import AGENTS, KINDS, SOAK_ENV, Kinds, Soak, drive
from tests.harness.netns import NsEtcdMember
from tests.partitions.scenarios import NetScenario, partitioned

NET_KINDS: Kinds = (
    ("leader-etcd-cut", 2),
    ("leader-agents-cut", 2),
    ("agent-cut-short", 2),
    ("agent-cut-long", 1),
    ("etcd-member-isolated", 2),
    ("leader-link-delayed", 2),
)
AGENT_LEASE_TTL = float(SOAK_ENV["WORKHIVE_AGENT_LEASE_TTL"])


class _Members:
    """``pause-etcd`` for a member list: every member stopped, then continued."""

    def __init__(self, members: list[NsEtcdMember]) -> None:
        self.members = members

    def pause(self) -> None:
        for m in self.members:
            m.pause()

    def unpause(self) -> None:
        for m in self.members:
            m.resume()


class NetSoak(Soak):
    """A ``Soak`` over a ``NetScenario``: the crash kinds and ``NET_KINDS``."""

    kinds: Kinds = (*KINDS, *NET_KINDS)

    def __init__(self, sc: NetScenario, rng: random.Random) -> None:
        super().__init__(sc, _Members(sc.etcd), rng)
        self.net_sc = sc

    def inject(self, kind: str) -> bool:
        if kind not in dict(NET_KINDS):
            return super().inject(kind)
        fault = self._apply(kind)
        if fault is None:
            return False
        undo, hold = fault
        try:
            time.sleep(hold)
        finally:
            undo()
        self.done[kind] += 1
        return True

    def _apply(self, kind: str) -> tuple[Callable[[], None], float] | None:
        """Start one network fault: (how to end it, seconds to hold it);
        None when it has no target now (no leader, too few live agents)."""
        sc, net, rng = self.net_sc, self.net_sc.net, self.rng
        if kind == "etcd-member-isolated":
            victim = rng.choice(sc.etcd_nodes)
            net.cut([victim], [n for n in sc.etcd_nodes if n != victim])
            return net.heal, rng.uniform(2.0, 9.0)
        if kind.startswith("agent-cut"):
            live = self.live_agents()
            if len(live) <= 2:
                return None
            net.cut([sc.node_of[rng.choice(live).name]], sc.nodes(sc.coordinators))
            if kind == "agent-cut-short":
                return net.heal, rng.uniform(0.5, AGENT_LEASE_TTL - 1.5)
            return net.heal, rng.uniform(AGENT_LEASE_TTL + 1.0, AGENT_LEASE_TTL + 4.0)
        leader = self.leader()
        if leader is None:
            return None
        node = sc.node_of[leader.name]
        if kind == "leader-link-delayed":
            net.shape(node, rng.uniform(0.5, 2.0))
            return (lambda: net.shape(node, 0.0)), rng.uniform(3.0, 8.0)
        net.cut([node], sc.etcd_nodes if kind == "leader-etcd-cut" else sc.nodes(sc.agents))
        return net.heal, rng.uniform(2.0, 9.0)


def run_mixed_soak(
    run_dir: Path, faults: int, seed: int = 17, out: Path | None = None
) -> dict[str, object]:
    """Inject ``faults`` crash and network faults, finish every project, audit;
    the JSON report (also written to ``out``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob("e*.etcd"):  # an earlier run's members: another cluster
        shutil.rmtree(stale)
    # an earlier run's executions (the same project names) would fail the audit
    (run_dir / "exec.jsonl").unlink(missing_ok=True)
    with partitioned(run_dir, etcd_members=3, env=SOAK_ENV, shaped=3) as sc:
        sc.start(coordinators=3, agents=AGENTS)
        result = drive(NetSoak(sc, random.Random(seed)), faults, seed, out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description="the mixed crash + network fault soak")
    ap.add_argument("--faults", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--out", type=Path, default=None, help="also write the report here")
    ap.add_argument("--run-dir", type=Path, default=Path("/tmp/workhive-mixed-soak"))
    args = ap.parse_args()
    run_mixed_soak(args.run_dir, args.faults, args.seed, args.out)


if __name__ == "__main__":
    main()
