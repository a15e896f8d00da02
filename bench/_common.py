"""Shared pieces of the benchmarks: clusters, in-process agents, DAGs, stats.

Everything binds to 127.0.0.1. Every helper that starts a process stops it in
``close()``/``__exit__`` so a benchmark can wrap its body in ``with``/``try``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import structlog

from workhive.agent import Agent, Task
from workhive.client import Client, WorkhiveError
from workhive.coordinator.local_cluster.etcd_server import EtcdServer
from workhive.coordinator.local_cluster.ports import free_port
from workhive.coordinator.local_cluster.processes import LocalCluster, Proc
from workhive.coordinator.model import ProjectSpec, TaskSpec


def quiet_logs() -> None:
    """Agents in the bench process log warnings only (stdout stays JSON)."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def parse_args(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer trials")
    if extra:
        extra(p)
    quiet_logs()
    return p.parse_args()


def emit(result: dict[str, Any], as_json: bool) -> None:
    """One JSON object on stdout (pretty unless ``--json``)."""
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(json.dumps(result, indent=2, sort_keys=True))
    sys.stdout.flush()


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- statistics


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds of durations given in seconds."""
    if not values_s:
        return {"n": 0}
    return {
        "n": len(values_s),
        "p50_ms": round(pct(values_s, 50) * 1000, 2),
        "p90_ms": round(pct(values_s, 90) * 1000, 2),
        "p99_ms": round(pct(values_s, 99) * 1000, 2),
        "max_ms": round(max(values_s) * 1000, 2),
        "mean_ms": round(statistics.fmean(values_s) * 1000, 2),
    }


# ---------------------------------------------------------------- CPU


def _role(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    if "etcd" in text and "--data-dir" in text:
        return "etcd"
    if "coordinator" in text and "workhive.coordinator.cli" in text:
        return "coordinator"
    if "bench._agent_host" in text or "bench._swarm" in text:
        return "agents"
    if "distributed" in text or "multiprocessing" in text or "spawn_main" in text:
        return "dask_workers"
    if "ray::" in text or "raylet" in text or "gcs_server" in text or "/ray/" in text:
        return "ray_processes"
    return "bench_process"


def tree_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of this process, every descendant,
    and Ray's daemons (which re-parent themselves away from the tree)."""
    import psutil

    me = psutil.Process()
    out: dict[int, tuple[str, float]] = {}
    procs = [me, *me.children(recursive=True)]
    seen = {p.pid for p in procs}
    for p in psutil.process_iter():  # Ray's daemons leave the tree (re-parented)
        with contextlib.suppress(psutil.Error):
            mine = p.pid not in seen and p.uids().real == me.uids().real
            if mine and _role(p.cmdline()) == "ray_processes":
                procs.append(p)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            role = "bench_process" if p.pid == me.pid else _role(p.cmdline())
            out[p.pid] = (role, t.user + t.system)
    return out


def cpu_ms_per_task(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], tasks: int
) -> dict[str, float]:
    """CPU milliseconds per task by role between two :func:`tree_cpu` samples."""
    by_role: dict[str, float] = {}
    for pid, (role, cpu) in after.items():
        by_role[role] = by_role.get(role, 0.0) + cpu - before.get(pid, (role, 0.0))[1]
    out = {r: round(v * 1000 / max(1, tasks), 3) for r, v in sorted(by_role.items())}
    out["total"] = round(sum(by_role.values()) * 1000 / max(1, tasks), 3)
    return out


# ---------------------------------------------------------------- DAGs


def mixed_dag(
    n: int, seed: int = 1, width: int = 200, chain: int = 20
) -> list[tuple[str, list[str]]]:
    """``n`` tasks in topological order: wide layers and chains, mixed.

    Alternates a wide layer (``width`` tasks, each depending on up to two
    random tasks of the previous layer) and a bundle of chains (``width //
    chain`` chains of ``chain`` tasks each, hanging off random tasks of the
    previous layer). Returns ``[(task_id, deps)]``.
    """
    rng = random.Random(seed)
    out: list[tuple[str, list[str]]] = []
    prev: list[str] = []
    block = 0
    while len(out) < n:
        layer: list[str] = []
        if block % 2 == 0:
            for i in range(min(width, n - len(out))):
                tid = f"w{block}-{i}"
                deps = sorted(set(rng.sample(prev, min(2, len(prev))))) if prev else []
                out.append((tid, deps))
                layer.append(tid)
        else:
            for c in range(max(1, width // chain)):
                last = rng.choice(prev) if prev else None
                for j in range(chain):
                    if len(out) >= n:
                        break
                    tid = f"c{block}-{c}-{j}"
                    out.append((tid, [last] if last else []))
                    last = tid
                if last:
                    layer.append(last)
        prev = layer or prev
        block += 1
    return out


def chain_dag(n: int) -> list[tuple[str, list[str]]]:
    return [(f"s{i}", [f"s{i - 1}"] if i else []) for i in range(n)]


def to_spec(pid: str, dag: Sequence[tuple[str, Sequence[str]]], **kw: Any) -> ProjectSpec:
    return ProjectSpec(
        id=pid,
        tasks=tuple(TaskSpec(id=t, depends_on=tuple(d), estimate=0.001, **kw) for t, d in dag),
    )


# ---------------------------------------------------------------- cluster


class Bench:
    """An embedded etcd plus coordinator processes, all on loopback."""

    def __init__(
        self,
        coordinators: int = 1,
        coordinator_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        metrics: bool = False,
    ) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="workhive-bench-"))
        self.etcd = EtcdServer(log_path=self.run_dir / "etcd.log")
        self.cluster: LocalCluster | None = None
        self.n = coordinators
        self.args = list(coordinator_args)
        # WORKHIVE_BENCH_LOG_LEVEL=info (with WORKHIVE_BENCH_KEEP=1) to read the logs after
        level = os.environ.get("WORKHIVE_BENCH_LOG_LEVEL", "warning")
        self.env = {"WORKHIVE_LOG_LEVEL": level, **(env or {})}
        self.metrics = metrics
        self.metrics_ports: dict[str, int] = {}
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.client: Client | None = None

    def __enter__(self) -> Bench:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.etcd.start()
        self.cluster = LocalCluster(self.etcd.url, self.run_dir, extra_env=self.env)
        for _ in range(self.n):
            self.add_coordinator()
        self.cluster.wait_coordinators()
        self.client = Client(self.addresses, timeout=60.0, call_deadline=30.0)
        self.wait_leader()

    def add_coordinator(self) -> Proc:
        assert self.cluster is not None
        extra = list(self.args)
        if self.metrics:
            port = free_port()
            extra += ["--metrics-port", str(port)]
        proc = self.cluster.add_coordinator(extra)
        if self.metrics:
            self.metrics_ports[proc.name] = port
        return proc

    @property
    def addresses(self) -> list[str]:
        assert self.cluster is not None
        return self.cluster.coordinator_addresses

    def leader_samples(self) -> dict[str, float]:
        """The leader's /metrics samples (``name{labels}`` -> value); needs
        ``metrics=True``."""
        import urllib.request

        port = self.metrics_ports[self.leader().name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def wait_leader(self, timeout: float = 30.0) -> str:
        assert self.client is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(WorkhiveError):
                st = self.client.status()
                if st.leader.leader_id:
                    return st.leader.leader_id
            time.sleep(0.05)
        raise TimeoutError("no leader")

    def leader(self) -> Proc:
        lid = self.wait_leader()
        assert self.cluster is not None
        return next(c for c in self.cluster.coordinators if c.name == lid)

    def submit(self, spec: ProjectSpec) -> float:
        assert self.client is not None
        t0 = time.monotonic()
        self.client.submit(spec)
        return time.monotonic() - t0

    def wait_finished(self, pid: str, timeout: float, poll: float = 0.05) -> float:
        """Block until ``pid`` finished; returns monotonic time it was seen finished."""
        assert self.client is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                st = self.client.status(pid)
                proj = next((p for p in st.projects if p.project_id == pid), None)
                if proj is not None and proj.finished:
                    return time.monotonic()
            except WorkhiveError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"project {pid} did not finish within {timeout:.0f}s")
            time.sleep(poll)

    def last_end(self, pid: str) -> float | None:
        """Wall time of the last handler return of ``pid`` in the helper processes."""
        last: float | None = None
        for path in self.run_dir.glob("agents-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("END ") and f" {pid} " in line:
                    t = float(line.split()[1])
                    last = t if last is None or t > last else last
        return last

    def counts(self, pid: str) -> dict[str, int]:
        assert self.client is not None
        st = self.client.status(pid)
        proj = next((p for p in st.projects if p.project_id == pid), None)
        return dict(proj.counts) if proj else {}

    def spawn_agents(
        self,
        count: int,
        *,
        slots: int = 1,
        prefix: str = "h",
        mode: str = "noop",
        prefetch: int = 1,
        processes: int = 1,
        swarm: bool = False,
    ) -> list[subprocess.Popen[bytes]]:
        """Agents inside ``processes`` helper processes: SDK agents as threads,
        or with ``swarm`` light protocol-level agents as coroutines
        (``bench._swarm``: no-op tasks, one slot, no prefetch)."""
        procs = []
        per = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
        for i, n in enumerate(per):
            if n == 0:
                continue
            logf = open(self.run_dir / f"agents-{prefix}{i}.log", "ab")  # noqa: SIM115
            common = ["--coordinators", ",".join(self.addresses), "--count", str(n)]
            common += ["--prefix", f"{prefix}{i}-"]
            if swarm:
                argv = ["bench._swarm", *common]
            else:
                argv = ["bench._agent_host", *common, "--slots", str(slots)]
                argv += ["--prefetch", str(prefetch), "--mode", mode]
            p = subprocess.Popen(
                [sys.executable, "-m", *argv],
                stdout=logf,
                stderr=logf,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
            logf.close()
            procs.append(p)
            self.helpers.append(p)
        return procs

    def wait_agents(self, n: int, timeout: float = 60.0) -> None:
        assert self.client is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(WorkhiveError):
                if len(self.client.status().agents) >= n:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"fewer than {n} agents registered in {timeout:.0f}s")

    def close(self) -> None:
        """Kill helpers, stop coordinators and etcd; each step runs even if one fails."""
        for p in self.helpers:
            with contextlib.suppress(BaseException):
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
        for p in self.helpers:
            with contextlib.suppress(BaseException):
                p.wait(timeout=10)
        self.helpers.clear()
        if self.client is not None:
            with contextlib.suppress(BaseException):
                self.client.close()
            self.client = None
        if self.cluster is not None:
            try:
                self.cluster.stop()
            except BaseException:
                for proc in self.cluster.coordinators:
                    with contextlib.suppress(BaseException):
                        proc.kill()
            self.cluster = None
        try:
            self.etcd.stop()
        finally:
            if os.environ.get("WORKHIVE_BENCH_KEEP"):
                print(f"run directory kept: {self.run_dir}", file=sys.stderr)
            else:
                shutil.rmtree(self.run_dir, ignore_errors=True)


# ---------------------------------------------------------------- agents in this process


class StartLog:
    """Thread-safe record of handler starts: (monotonic time, project, task, agent, term)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: list[tuple[float, str, str, str, int]] = []
        self.event = threading.Event()

    def record(self, task: Task, agent_id: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.starts.append((now, task.project_id, task.task_id, agent_id, task.term))
        self.event.set()

    def first_after(self, t: float) -> float | None:
        with self.lock:
            later = [s[0] for s in self.starts if s[0] >= t]
        return min(later) if later else None


class AgentPool:
    """Agent threads in the calling process, so handler-start times share our clock."""

    def __init__(
        self,
        addresses: Sequence[str],
        count: int,
        *,
        slots: int = 1,
        prefetch: int = 1,
        prefix: str = "a",
        work: Callable[[Task], None] | None = None,
        exec_log: str | None = None,
    ) -> None:
        self.log = StartLog()
        self.agents: list[Agent] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        for i in range(count):
            aid = f"{prefix}{i:04d}"
            agent = Agent(
                list(addresses), agent_id=aid, slots=slots, prefetch=prefetch, exec_log=exec_log
            )
            self.agents.append(agent)

            def handler(task: Task, aid: str = aid) -> None:
                self.log.record(task, aid)
                if work is not None:
                    work(task)

            t = threading.Thread(target=self._run, args=(agent, handler), daemon=True)
            self.threads.append(t)

    def _run(self, agent: Agent, handler: Callable[[Task], None]) -> None:
        try:
            agent.run(handler)
        except BaseException as exc:
            self.errors.append(exc)

    def start(self) -> AgentPool:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        for a in self.agents:
            a.stop()
        for t in self.threads:
            t.join(timeout=5)

    def __enter__(self) -> AgentPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    t0 = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - t0)
