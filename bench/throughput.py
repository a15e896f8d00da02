"""Throughput: a no-op DAG (wide layers and chains) on 8 workers, workhive vs
dask.distributed vs Ray, alternating in one run.

``python -m bench.throughput [--json] [--quick] [--tasks N] [--coordinators K]
[--rounds R] [--agent-threads] [--systems workhive,dask,ray]``

workhive: K coordinator processes (LocalCluster) on an embedded etcd; 8 SDK
agents, one per process as users deploy them (``--agent-threads``: 8 threads
in one helper process instead), no-op Python handler, slots=1. Every
assignment is a claim in etcd (durable) before the agent runs it.
dask.distributed: LocalCluster(processes=True, n_workers=8,
threads_per_worker=1), the same graph as a dask graph dict via ``client.get``.
Ray: ``ray.init(num_cpus=8)``, one remote function per task, its parents'
ObjectRefs as arguments, ``ray.get`` of every task.
Also a pure chain (time per step) on all three, and the CPU each spends per
task of the DAG (every process of the run, by role): on 2 shared cores the
total bounds the rate. ``--rounds`` runs the three R times, alternating, and
reports each round and the best. For workhive, the leader's counts per DAG
task too (``per_task``: agent session messages and stream writes each way,
etcd transactions), from its /metrics. ``--systems`` runs a subset.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from bench._common import (
    Bench,
    chain_dag,
    cpu_ms_per_task,
    emit,
    log,
    mixed_dag,
    parse_args,
    to_spec,
    tree_cpu,
)
from bench._profile import sampled, top

AGENTS = 8


def _noop(*_: Any) -> int:
    return 0


def run_dask(dag: list[tuple[str, list[str]]], chain: int) -> dict[str, Any]:
    import dask
    from distributed import Client, LocalCluster

    out: dict[str, Any] = {}
    with (
        dask.config.set({"distributed.worker.daemon": False, "logging.distributed": "error"}),
        LocalCluster(
            processes=True,
            n_workers=AGENTS,
            threads_per_worker=1,
            dashboard_address=None,
            host="127.0.0.1",
            silence_logs=40,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(AGENTS)
        # warm up: ship the function once to every worker
        client.get({f"warm{i}": (_noop,) for i in range(32)}, [f"warm{i}" for i in range(32)])
        dsk = {t: (_noop, *deps) for t, deps in dag}
        keys = [t for t, _ in dag]
        cpu0 = tree_cpu()
        t0 = time.monotonic()
        client.get(dsk, keys)
        wall = time.monotonic() - t0
        out["cpu_ms_per_task"] = cpu_ms_per_task(cpu0, tree_cpu(), len(dag))
        out["dag_seconds"] = round(wall, 3)
        out["tasks_per_s"] = round(len(dag) / wall, 1)
        cdsk = {t: (_noop, *deps) for t, deps in chain_dag(chain)}
        t0 = time.monotonic()
        client.get(cdsk, [f"s{chain - 1}"])
        wall = time.monotonic() - t0
        out["chain_seconds"] = round(wall, 3)
        out["chain_step_ms"] = round(wall / chain * 1000, 2)
    return out


def run_ray(dag: list[tuple[str, list[str]]], chain: int) -> dict[str, Any]:
    import ray

    ray.init(
        num_cpus=AGENTS,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    out: dict[str, Any] = {}
    try:
        noop = ray.remote(_noop)
        ray.get([noop.remote() for _ in range(64)])  # warm up the worker pool
        cpu0 = tree_cpu()
        t0 = time.monotonic()
        refs: dict[str, Any] = {}
        for t, deps in dag:
            refs[t] = noop.remote(*(refs[d] for d in deps))
        ray.get(list(refs.values()))
        wall = time.monotonic() - t0
        out["cpu_ms_per_task"] = cpu_ms_per_task(cpu0, tree_cpu(), len(dag))
        out["dag_seconds"] = round(wall, 3)
        out["tasks_per_s"] = round(len(dag) / wall, 1)
        t0 = time.monotonic()
        ref = noop.remote()
        for _ in range(chain - 1):
            ref = noop.remote(ref)
        ray.get(ref)
        wall = time.monotonic() - t0
        out["chain_seconds"] = round(wall, 3)
        out["chain_step_ms"] = round(wall / chain * 1000, 2)
    finally:
        ray.shutdown()
    return out


PER_TASK = {
    "agent_messages_in": 'workhive_agent_messages_total{direction="in"}',
    "agent_messages_out": 'workhive_agent_messages_total{direction="out"}',
    "stream_writes_in": 'workhive_agent_stream_writes_total{direction="in"}',
    "stream_writes_out": 'workhive_agent_stream_writes_total{direction="out"}',
    "etcd_txns": "workhive_etcd_txn_latency_seconds_count",
}
"""What the leader's /metrics counts, reported per DAG task."""


def _per_task(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    return {
        name: round((after[key] - before.get(key, 0.0)) / n, 2)
        for name, key in PER_TASK.items()
        if key in after
    }


def run_workhive(
    dag: list[tuple[str, list[str]]],
    chain: int,
    coordinators: int,
    stealing: bool = True,
    agent_threads: bool = False,
    profile: Path | None = None,
) -> dict[str, Any]:
    env = {} if stealing else {"WORK_STEALING_ENABLED": "false"}
    out: dict[str, Any] = {
        "coordinators": coordinators,
        "agent_shape": "threads in one process" if agent_threads else "one process each",
    }
    with Bench(coordinators=coordinators, env=env, metrics=True) as b:
        agents = b.spawn_agents(AGENTS, mode="noop", processes=1 if agent_threads else AGENTS)
        b.wait_agents(AGENTS)
        # warm up
        b.submit(to_spec("warm", [(f"w{i}", []) for i in range(32)]))
        b.wait_finished("warm", 60)
        # GetStatus costs O(all tasks) on the leader: poll slowly, take the end
        # time from the last handler return (wall clock, same machine).
        spec = to_spec("dag", dag)
        cpu0 = tree_cpu()
        m0 = b.leader_samples()
        w0 = time.time()
        leader = b.leader().popen
        assert leader is not None
        pids = {"coordinator": leader.pid, "agent": agents[0].pid}
        with sampled(pids, profile) if profile else contextlib.nullcontext():
            out["submit_seconds"] = round(b.submit(spec), 3)
            b.wait_finished("dag", 600, poll=0.5)
        out["cpu_ms_per_task"] = cpu_ms_per_task(cpu0, tree_cpu(), len(dag))
        out["per_task"] = _per_task(m0, b.leader_samples(), len(dag))
        wall = (b.last_end("dag") or time.time()) - w0
        out["dag_seconds"] = round(wall, 3)
        out["tasks_per_s"] = round(len(dag) / wall, 1)
        out["tasks_per_s_after_submit"] = round(len(dag) / (wall - out["submit_seconds"]), 1)
        counts = b.counts("dag")
        out["succeeded"] = counts.get("succeeded", 0)
        cspec = to_spec("chain", chain_dag(chain))
        w0 = time.time()
        b.submit(cspec)
        b.wait_finished("chain", 300, poll=0.5)
        cwall = (b.last_end("chain") or time.time()) - w0
        out["chain_seconds"] = round(cwall, 3)
        out["chain_step_ms"] = round(cwall / chain * 1000, 2)
    if profile:
        out["profile"] = {name: top(profile / f"{name}.txt") for name in pids}
        out["profile_dir"] = str(profile)
    return out


SYSTEMS = ("workhive", "dask", "ray")


def _guarded(name: str, fn: Any) -> dict[str, Any]:
    log(f"throughput: {name}")
    try:
        out: dict[str, Any] = fn()
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    log(f"throughput: {name} {out}")
    return out


def _best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rounds if "tasks_per_s" in r]
    if not ok:
        return rounds[-1] if rounds else {}
    best = dict(max(ok, key=lambda r: r["tasks_per_s"]))
    best["chain_step_ms"] = min(r["chain_step_ms"] for r in ok)
    best["tasks_per_s_rounds"] = [r["tasks_per_s"] for r in ok]
    return best


def run(
    quick: bool,
    tasks: int | None = None,
    coordinators: int = 1,
    rounds: int = 1,
    agent_threads: bool = False,
    systems: tuple[str, ...] = (),
    profile: Path | None = None,
) -> dict[str, Any]:
    systems = systems or SYSTEMS
    n = tasks or (2000 if quick else 10_000)
    chain = 100 if quick else 500
    dag = mixed_dag(n)
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SYSTEMS}
    arms = {
        "workhive": lambda: run_workhive(
            dag, chain, coordinators, agent_threads=agent_threads, profile=profile
        ),
        "dask": lambda: run_dask(dag, chain),
        "ray": lambda: run_ray(dag, chain),
    }
    for r in range(rounds):
        order = systems if r % 2 == 0 else tuple(reversed(systems))
        for name in order:
            runs[name].append(_guarded(f"{name} round {r + 1} ({n} tasks)", arms[name]))
    best = {name: _best(rs) for name, rs in runs.items()}
    wh, dk, ry = best["workhive"], best["dask"], best["ray"]
    res: dict[str, Any] = {
        "benchmark": "throughput",
        "tasks": n,
        "agents": AGENTS,
        "chain_length": chain,
        "rounds": rounds,
        "workhive": wh,
        "dask": dk,
        "ray": ry,
    }
    with contextlib.suppress(KeyError, ZeroDivisionError):
        res["ratio_tasks_per_s"] = round(wh["tasks_per_s"] / dk["tasks_per_s"], 2)
        res["ratio_chain_step"] = round(wh["chain_step_ms"] / dk["chain_step_ms"], 2)
        res["target_3x_dask"] = res["ratio_tasks_per_s"] >= 3.0
    with contextlib.suppress(KeyError, ZeroDivisionError):
        res["ratio_tasks_per_s_vs_ray"] = round(wh["tasks_per_s"] / ry["tasks_per_s"], 2)
        res["ratio_chain_step_vs_ray"] = round(wh["chain_step_ms"] / ry["chain_step_ms"], 2)
        res["target_1x_ray"] = res["ratio_tasks_per_s_vs_ray"] >= 1.0
        res["target_chain_no_worse_than_ray"] = res["ratio_chain_step_vs_ray"] <= 1.0
    return res


def _extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--coordinators", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds of the three")
    p.add_argument(
        "--agent-threads", action="store_true", help="8 agents as threads in one process"
    )
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of workhive,dask,ray (default: all three)",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the leader and one agent during the DAG: flame graphs into this directory",
    )


def main() -> None:
    a = parse_args(__doc__ or "", _extra)
    systems = tuple(x for x in a.systems.split(",") if x)
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"--systems: unknown {sorted(unknown)}; choose from {list(SYSTEMS)}")
    result = run(a.quick, a.tasks, a.coordinators, a.rounds, a.agent_threads, systems, a.profile)
    emit(result, a.json)


if __name__ == "__main__":
    main()
