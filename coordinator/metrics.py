"""Prometheus metrics of a coordinator (names follow Prometheus conventions).

One registry per coordinator process (``Metrics()``); tests make their own.
Counters end in ``_total`` (prometheus_client adds it), durations are in
seconds, and no label takes unbounded values (no task or agent ids).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)

from workhive import __version__

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The coordinator's instruments, registered in ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.build_info = Info("workhive_build", "Build information", registry=r)
        self.build_info.info({"version": __version__})
        self.is_leader = Gauge("workhive_is_leader", "1 while this replica leads", registry=r)
        self.leader_transitions = Counter(
            "workhive_leader_transitions", "Times this replica became leader", registry=r
        )
        self.elections = Counter(
            "workhive_elections", "Campaigns started by this replica", registry=r
        )
        self.tasks = Gauge("workhive_tasks", "Tasks by state", ["state"], registry=r)
        self.assignments = Counter(
            "workhive_assignments", "Claim attempts by outcome", ["result"], registry=r
        )
        self.assignment_latency = Histogram(
            "workhive_assignment_latency_seconds",
            "Time from a task becoming ready to its start being granted",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.steals = Counter("workhive_steals", "Tasks moved by stealing", ["outcome"], registry=r)
        self.steal_size = Histogram(
            "workhive_steal_size_tasks",
            "Tasks moved per steal decision",
            buckets=(1, 2, 3, 5, 8, 13),
            registry=r,
        )
        self.redistribution_latency = Histogram(
            "workhive_redistribution_latency_seconds",
            "Time from a steal decision to the thief starting the task",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.load_imbalance = Gauge(
            "workhive_load_imbalance_seconds",
            "Standard deviation of per-agent predicted load",
            registry=r,
        )
        self.last_steal_time = Gauge(
            "workhive_last_steal_timestamp_seconds", "Unix time of the last steal", registry=r
        )
        self.claim_conflicts = Counter(
            "workhive_claim_conflicts", "Claim transactions lost to a concurrent change", registry=r
        )
        self.lease_expirations = Counter(
            "workhive_lease_expirations", "Agent leases that expired or were revoked", registry=r
        )
        self.claims_released = Counter(
            "workhive_claims_released", "Claims released by reason", ["reason"], registry=r
        )
        self.agents_connected = Gauge(
            "workhive_agents_connected", "Agents with an open session here", registry=r
        )
        self.keepalive_failures = Counter(
            "workhive_lease_keepalive_failures", "Failed lease refreshes", registry=r
        )
        self.completions_rejected = Counter(
            "workhive_completions_rejected", "Completions refused (stale fence)", registry=r
        )
        self.leader_relists = Counter(
            "workhive_leader_relists",
            "Re-lists of the keyspace because a completion already given to the scheduler"
            " was refused",
            registry=r,
        )
        self.agent_messages = Counter(
            "workhive_agent_messages",
            "Agent session messages (a batch's members one by one)",
            ["direction"],
            registry=r,
        )
        self.relayed_sessions = Counter(
            "workhive_agent_sessions_relayed",
            "Agent sessions this follower relayed to the leader (the agent could not reach it)",
            registry=r,
        )
        self.agent_stream_writes = Counter(
            "workhive_agent_stream_writes",
            "Agent session stream messages (a batch counts once)",
            ["direction"],
            registry=r,
        )
        self.gc_pauses = Histogram(
            "workhive_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector (workhive coordinator only)",
            ["generation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.etcd_txn_latency = Histogram(
            "workhive_etcd_txn_latency_seconds",
            "Latency of leader etcd transactions",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose the registry over HTTP on ``addr:port`` (a daemon thread)."""
        start_http_server(port, addr=addr, registry=self.registry)
