"""The invariant checker for fault tests (issue 7).

``assert_invariants(etcd_url, prefix, exec_log)`` reads etcd's full history
under ``prefix`` and the agents' execution log, runs the audit
(``workhive.coordinator.local_cluster.audit``) and fails with a readable
message on any task lost, committed twice, started before its dependencies
succeeded, owned by two agents at once, or written by a deposed leader.
"""

from __future__ import annotations

from pathlib import Path

from workhive.coordinator.etcd import EtcdClient, Keyspace, WatchEvent
from workhive.coordinator.etcd.history import history
from workhive.coordinator.local_cluster.audit import AuditReport, audit

SHOWN = 10  # violations listed per kind in the failure message


class InvariantViolation(AssertionError):
    """The audit found violations; ``report`` holds all of them."""

    def __init__(self, message: str, report: AuditReport) -> None:
        super().__init__(message)
        self.report = report


def read_history(etcd_url: str, prefix: str, timeout: float = 60.0) -> list[WatchEvent]:
    """Every change under ``prefix`` since revision 1 (``etcd_url`` may list several)."""
    client = EtcdClient([u for u in etcd_url.split(",") if u], timeout=10.0)
    try:
        client.wait_ready(30.0)
        return history(client, Keyspace(prefix), timeout=timeout)
    finally:
        client.close()


def format_report(report: AuditReport) -> str:
    """A multi-line description of the violations (and the audit's totals)."""
    lines = [
        f"invariants violated: {report.tasks} tasks, {report.results} results, "
        f"{report.terms} leader terms, {report.claim_writes} claim writes"
    ]
    for kind, items in report.violations.items():
        lines.append(f"  {kind} ({len(items)}):")
        lines.extend(f"    - {item}" for item in items[:SHOWN])
        if len(items) > SHOWN:
            lines.append(f"    ... and {len(items) - SHOWN} more")
    return "\n".join(lines)


def check_events(
    events: list[WatchEvent], prefix: str, exec_log: Path | None = None
) -> AuditReport:
    """Audit already-read history; raise ``InvariantViolation`` when not ok."""
    report = audit(events, Keyspace(prefix), exec_log)
    if not report.ok:
        raise InvariantViolation(format_report(report), report)
    return report


def assert_invariants(
    etcd_url: str, prefix: str, exec_log: Path | None = None, *, min_tasks: int = 1
) -> AuditReport:
    """Audit the run under ``prefix``; fail listing every violation kind.

    ``min_tasks`` guards against a vacuous pass (an audit of an empty or wrong
    prefix finds nothing wrong because it finds nothing).
    """
    report = check_events(read_history(etcd_url, prefix), prefix, exec_log)
    if report.tasks < min_tasks:
        raise AssertionError(
            f"audit saw {report.tasks} tasks under {prefix!r}, expected at least {min_tasks}"
        )
    return report


__all__ = [
    "InvariantViolation",
    "assert_invariants",
    "check_events",
    "format_report",
    "read_history",
]
