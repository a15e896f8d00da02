"""``workhive up``: the whole system on this machine, end to end.

Starts an embedded etcd, N coordinator and M agent processes on loopback,
submits the project (the built-in demo when none is given), shows live
progress, optionally injects chaos, and prints a summary. Exit code 0 only when
every task succeeded with nothing lost and nothing committed twice. Ctrl-C
stops every child process and removes the run directory.
"""

from __future__ import annotations

import random
import shlex
import shutil
import signal
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from workhive.client import Client, ClusterStatus, Unavailable, WorkhiveError
from workhive.coordinator.cli import exit_codes
from workhive.coordinator.cli.interrupts import Interrupts
from workhive.coordinator.etcd import EtcdClient, Keyspace
from workhive.coordinator.etcd.history import history
from workhive.coordinator.local_cluster.audit import AuditReport, audit
from workhive.coordinator.local_cluster.demo import demo_project
from workhive.coordinator.local_cluster.etcd_server import EtcdServer
from workhive.coordinator.local_cluster.ports import free_port
from workhive.coordinator.local_cluster.processes import LocalCluster, Proc
from workhive.coordinator.local_cluster.summary import Summary, lower_bound
from workhive.coordinator.model import ProjectSpec
from workhive.coordinator.project_files import ProjectError, load_project

err = Console(stderr=True)

# The demo work: sleep for payload["sleep"] seconds (0.1 s without one), in
# sh and coreutils' sleep: a Python interpreter start per task (~30 ms on a
# busy machine) would be most of the gap between the demo and its simulation.
_SLEEP_SH = r'p=${WORKHIVE_PAYLOAD#*\"sleep\":}; p=${p# }; p=${p%%[!0-9.]*}; exec sleep "${p:-0.1}"'
SLEEP_CMD = f"sh -c {shlex.quote(_SLEEP_SH)}"


def _with_sleep_payloads(spec: ProjectSpec) -> ProjectSpec:
    """For the demo work command: put each task's duration into its payload."""
    tasks = tuple(
        t
        if isinstance(t.payload, dict) and "sleep" in t.payload
        else replace(
            t,
            payload={"sleep": t.duration or t.estimate or 0.1, "payload": t.payload},
        )
        for t in spec.tasks
    )
    return replace(spec, tasks=tasks)


def _agent_plan(spec: ProjectSpec, agents: int | None) -> list[tuple[int, frozenset[str]]]:
    """(slots, capabilities) per agent: from the file's ``agents`` unless --agents."""
    needed = frozenset().union(*(t.requires for t in spec.tasks))
    if agents is None and spec.agents:
        return [(g.slots, g.capabilities) for g in spec.agents for _ in range(g.count)]
    n = agents or 6
    plan = [(1, frozenset[str]()) for _ in range(n)]
    if needed:  # one agent can run everything, so no task waits forever
        plan[-1] = (1, needed)
    return plan


class _Chaos:
    """Kills the leader, kills an agent and pauses a coordinator past its lease."""

    def __init__(self, cluster: LocalCluster, rng: random.Random, expected: float) -> None:
        self.cluster = cluster
        self.events: list[str] = []
        span = max(expected, 6.0)
        self.plan = sorted(
            [
                (rng.uniform(0.15, 0.35) * span, "kill-leader"),
                (rng.uniform(0.3, 0.6) * span, "kill-agent"),
                (rng.uniform(0.5, 0.8) * span, "pause-leader"),
            ]
        )
        self.rng = rng
        self.pending: list[tuple[float, Proc, str]] = []

    def _victim(self, what: str, leader_id: str) -> Proc | None:
        if what == "kill-agent":
            alive = [a for a in self.cluster.agents if a.alive]
            return self.rng.choice(alive) if alive else None
        return next((c for c in self.cluster.coordinators if c.name == leader_id), None)

    def tick(self, elapsed: float, leader_id: str) -> None:
        """Apply the faults and recoveries that are due at ``elapsed``."""
        for when, proc, action in list(self.pending):
            if elapsed >= when:
                self.pending.remove((when, proc, action))
                if action == "restart":
                    proc.start()
                else:
                    proc.signal(signal.SIGCONT)
                self.events.append(f"{elapsed:.1f}s {action} {proc.name}")
        while self.plan and elapsed >= self.plan[0][0]:
            _, what = self.plan.pop(0)
            victim = self._victim(what, leader_id)
            if victim is None:
                continue
            if what == "pause-leader":
                victim.signal(signal.SIGSTOP)
                self.pending.append((elapsed + 8.0, victim, "resume"))
            else:
                victim.kill()
                self.pending.append((elapsed + 2.0, victim, "restart"))
            self.events.append(f"{elapsed:.1f}s {what} {victim.name}")


def _view(
    status: ClusterStatus, project: str, total: int, elapsed: float, chaos: list[str]
) -> Group:
    p = status.project(project)
    counts = dict(p.counts) if p else {}
    done = counts.get("succeeded", 0)
    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}")
    )
    info = " ".join(f"{k}={counts.get(k, 0)}" for k in ("running", "assigned", "ready", "failed"))
    bar.add_task(f"{project} {done}/{total}", total=total, completed=done, info=info)
    agents = Table("agent", "load", "running", "queued", box=None)
    for a in sorted(status.agents, key=lambda a: a.agent_id):
        width = min(30, int(a.load_seconds * 4))
        agents.add_row(
            a.agent_id, "█" * width + f" {a.load_seconds:.1f}s", str(a.running), str(a.queued)
        )
    m = status.metrics
    head = (
        f"leader [bold]{status.leader.leader_id or '-'}[/bold] (term {status.leader.term})  "
        f"steals {int(m.get('total_steals', 0))}  "
        f"leader changes {int(m.get('leader_changes', 0))}  elapsed {elapsed:.1f}s"
    )
    return Group(head, bar, agents, *(f"[yellow]chaos[/yellow] {e}" for e in chaos[-4:]))


def up(
    project: Path | None = typer.Argument(None, help="Project file (default: built-in demo)."),
    agents: int | None = typer.Option(None, "--agents", "-n", min=1, help="Agent processes (6)."),
    coordinators: int = typer.Option(3, "--coordinators", min=1, max=9),
    chaos: bool = typer.Option(
        False, "--chaos", help="Kill/pause the leader and an agent mid-run."
    ),
    exec_cmd: str | None = typer.Option(
        None, "--exec", help="Task command (default: sleep the task's duration)."
    ),
    seed: int = typer.Option(7, help="Seed of the demo project and the chaos timing."),
    timeout: float = typer.Option(
        600.0, min=0.1, help="Give up after this many seconds from the submit (exit 69)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    keep: bool = typer.Option(
        False,
        "--keep",
        help="After the project, keep the cluster up for browsing until Ctrl-C/SIGTERM; "
        "keep the run directory (logs).",
    ),
    dashboard: bool = typer.Option(
        True, "--dashboard/--no-dashboard", help="Serve the web dashboard on every coordinator."
    ),
    pull: bool = typer.Option(
        False, "--pull", help="Agents in pull mode: each asks for its next task."
    ),
) -> None:
    """Run a project on a local cluster: embedded etcd, coordinators, agents."""
    try:
        spec = load_project(project) if project else demo_project(seed)
    except ProjectError as exc:
        err.print(f"[red]invalid project:[/red] {escape(str(exc))}")
        raise typer.Exit(exit_codes.FAILED) from None
    if exec_cmd is None:
        spec = _with_sleep_payloads(spec)
    plan = _agent_plan(spec, agents)
    interrupts = Interrupts()
    interrupts.install()  # Ctrl-C, SIGTERM, SIGHUP: the cluster is always torn down
    run_dir = Path(tempfile.mkdtemp(prefix="workhive-up-"))
    etcd = EtcdServer(data_dir=run_dir / "etcd", log_path=run_dir / "etcd.log")
    cluster = LocalCluster(etcd.url, run_dir)
    code = exit_codes.FAILED
    try:
        etcd.start()
        ports = [free_port() for _ in range(coordinators)] if dashboard else []
        urls = [f"http://127.0.0.1:{p}/" for p in ports]
        for i in range(coordinators):
            extra = []
            if dashboard:  # every replica serves it; a page moves to a peer if its replica dies
                peers = ",".join(u for j, u in enumerate(urls) if j != i)
                extra = ["--dashboard-port", str(ports[i]), "--dashboard-peers", peers]
            cluster.add_coordinator(extra)
        cluster.wait_coordinators()
        if urls:
            also = f" (every replica serves it: {', '.join(urls[1:])})" if urls[1:] else ""
            err.print(f"dashboard: [bold]{urls[0]}[/bold]{also}")
        for slots, caps in plan:
            cluster.add_agent(
                exec_cmd or SLEEP_CMD,
                slots=slots,
                capabilities=tuple(sorted(caps)),
                extra=["--pull"] if pull else None,
            )
        with Client(
            cluster.coordinator_addresses, timeout=min(30.0, timeout), call_deadline=5.0
        ) as client:  # closed on every path, a stop signal included
            summary = _run(spec, cluster, plan, chaos, seed, timeout, json_out, interrupts, client)
        if json_out:
            typer.echo(summary.to_json())
        else:
            _print_summary(summary)
        code = exit_codes.OK if summary.ok else exit_codes.FAILED
        if keep:
            _stay_up(urls)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted: stopping the local cluster[/yellow]")
        code = exit_codes.INTERRUPTED
    except (WorkhiveError, TimeoutError, RuntimeError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        code = exit_codes.UNAVAILABLE
    finally:
        cluster.stop()
        etcd.stop()
        if keep:
            err.print(f"logs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    raise typer.Exit(code)


AGENTS_WAIT = 60.0  # seconds the agents may take to connect before the submit


def _wait_agents(client: Client, n: int, until: float, interrupts: Interrupts) -> None:
    """Submit only once the ``n`` agents are connected: the makespan then
    measures the schedule, not the agents' interpreter start-up."""
    err.print(f"waiting for {n} agents to connect")
    seen = 0
    while time.monotonic() < until:
        try:
            with interrupts.calls():
                seen = len(client.status(until=min(until, time.monotonic() + 5.0)).agents)
        except Unavailable:
            seen = 0
        if seen >= n:
            return
        time.sleep(0.1)
    raise TimeoutError(f"only {seen} of {n} agents connected in time: see the agent logs")


def _stay_up(urls: list[str]) -> None:
    """``--keep``: leave the cluster running until Ctrl-C or SIGTERM."""
    where = f": {urls[0]}" if urls else ""
    err.print(f"cluster kept up for browsing{where} (Ctrl-C or SIGTERM stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        err.print("stopping the local cluster")


def _run(
    spec: ProjectSpec,
    cluster: LocalCluster,
    plan: list[tuple[int, frozenset[str]]],
    chaos: bool,
    seed: int,
    timeout: float,
    json_out: bool,
    interrupts: Interrupts,
    client: Client,
) -> Summary:
    """Submit, follow the project to its end, audit: every gRPC call inside
    ``interrupts.calls()`` (a stop signal waits for the call to return)."""
    bound = lower_bound(spec, sum(s for s, _ in plan))
    give_up = time.monotonic() + timeout
    _wait_agents(client, len(plan), min(give_up, time.monotonic() + AGENTS_WAIT), interrupts)
    with interrupts.calls():
        client.submit(spec)
    start = time.monotonic()  # the makespan counts from the submit's return
    chaos_driver = _Chaos(cluster, random.Random(seed), bound) if chaos else None
    leaders: set[tuple[str, int]] = set()
    live = Live(console=err, refresh_per_second=4, transient=False) if err.is_terminal else None
    last_print = 0.0
    try:
        if live:
            live.start()
        while True:
            elapsed = time.monotonic() - start
            if time.monotonic() >= give_up:
                raise TimeoutError(f"project did not finish within {timeout:g}s")
            try:
                with interrupts.calls():
                    status = client.status(spec.id, until=min(give_up, time.monotonic() + 5.0))
            except Unavailable:
                time.sleep(0.2)
                continue
            if status.leader.leader_id:
                leaders.add((status.leader.leader_id, status.leader.term))
            proj = status.project(spec.id)
            events = chaos_driver.events if chaos_driver else []
            if live:
                live.update(_view(status, spec.id, len(spec.tasks), elapsed, events))
            elif not json_out and elapsed - last_print >= 5:
                last_print = elapsed
                counts = dict(proj.counts) if proj else {}
                err.print(f"{elapsed:5.1f}s {counts} leader={status.leader.leader_id}")
            if proj is not None and proj.finished:
                break
            if chaos_driver:
                chaos_driver.tick(elapsed, status.leader.leader_id)
            time.sleep(0.25)
    finally:
        if live:
            live.stop()
    makespan = time.monotonic() - start
    with interrupts.calls():
        final = client.status(spec.id, tasks=True)
    proj = final.project(spec.id)
    if proj is None:  # deleted by a retention setting between two calls
        raise RuntimeError(f"project {spec.id} was deleted before its summary")
    counts = dict(proj.counts)
    with interrupts.calls():
        report = _audit(cluster)
    return Summary(
        project=spec.id,
        tasks=len(spec.tasks),
        succeeded=counts.get("succeeded", 0),
        failed=counts.get("failed", 0),
        cancelled=counts.get("cancelled", 0),
        lost=len(report.lost),
        committed_twice=len(report.committed_twice),
        executed_twice=len(report.executed_twice),
        executions=report.executions,
        makespan_seconds=round(makespan, 2),
        lower_bound_seconds=round(bound, 2),
        ratio=round(makespan / bound, 3) if bound else 0.0,
        steals=report.stolen,
        leader_changes=max(0, len(leaders) - 1),
        requeued=report.requeued,
        agents=len(plan),
        coordinators=len(cluster.coordinators),
        chaos_events=chaos_driver.events if chaos_driver else [],
        violations=report.violations,
    )


def _audit(cluster: LocalCluster) -> AuditReport:
    """Check the run against etcd's full history and the agents' exec log."""
    client = EtcdClient([cluster.etcd_url], timeout=10.0)
    try:
        events = history(client, Keyspace(cluster.prefix))
    finally:
        client.close()
    return audit(events, Keyspace(cluster.prefix), cluster.exec_log)


def _print_summary(s: Summary) -> None:
    table = Table(title=f"workhive up: {s.project}", show_header=False)
    rows = [
        ("tasks", f"{s.succeeded}/{s.tasks} succeeded, {s.failed} failed, {s.cancelled} cancelled"),
        (
            "makespan",
            f"{s.makespan_seconds:.1f}s (lower bound {s.lower_bound_seconds:.1f}s, x{s.ratio})",
        ),
        ("agents / coordinators", f"{s.agents} / {s.coordinators}"),
        ("steals", str(s.steals)),
        ("leader changes", str(s.leader_changes)),
        ("requeued tasks", str(s.requeued)),
        ("lost tasks", f"[{'green' if s.lost == 0 else 'red'}]{s.lost}[/]"),
        (
            "committed twice",
            f"[{'green' if s.committed_twice == 0 else 'red'}]{s.committed_twice}[/]",
        ),
        (
            "executed twice",
            f"[{'green' if s.executed_twice == 0 else 'red'}]{s.executed_twice}[/]"
            f" ({s.executions} executions)",
        ),
    ]
    for k, v in rows:
        table.add_row(k, v)
    for e in s.chaos_events:
        table.add_row("chaos", e)
    for kind, items in s.violations.items():
        table.add_row(f"[red]{kind}[/red]", "; ".join(items[:5]))
    err.print(table)


def register(app: typer.Typer) -> None:
    app.command()(up)
