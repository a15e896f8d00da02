"""Throughput: a no-op DAG (wide layers and chains) on 8 agents, workhive vs dask.

``python -m bench.throughput [--json] [--quick] [--tasks N] [--coordinators K]``

workhive: K coordinator processes (LocalCluster) on an embedded etcd; 8 SDK
agents as threads in one helper process, no-op Python handler. Every
assignment is a claim in etcd (durable) before the agent runs it.
dask.distributed: LocalCluster(processes=True, n_workers=8,
threads_per_worker=1), the same graph as a dask graph dict via ``client.get``.
Also a pure chain (time per step) on both, and the CPU each side spends per
task of the DAG (every process of the run, by role): on 2 shared cores the
total bounds the rate.
"""

from __future__ import annotations

import argparse
import contextlib
import time
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


def run_workhive(
    dag: list[tuple[str, list[str]]], chain: int, coordinators: int, stealing: bool = True
) -> dict[str, Any]:
    env = {} if stealing else {"WORK_STEALING_ENABLED": "false"}
    out: dict[str, Any] = {"coordinators": coordinators}
    with Bench(coordinators=coordinators, env=env) as b:
        b.spawn_agents(AGENTS, mode="noop")
        b.wait_agents(AGENTS)
        # warm up
        b.submit(to_spec("warm", [(f"w{i}", []) for i in range(32)]))
        b.wait_finished("warm", 60)
        # GetStatus costs O(all tasks) on the leader: poll slowly, take the end
        # time from the last handler return (wall clock, same machine).
        spec = to_spec("dag", dag)
        cpu0 = tree_cpu()
        w0 = time.time()
        out["submit_seconds"] = round(b.submit(spec), 3)
        b.wait_finished("dag", 600, poll=0.5)
        out["cpu_ms_per_task"] = cpu_ms_per_task(cpu0, tree_cpu(), len(dag))
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
    return out


def run(quick: bool, tasks: int | None = None, coordinators: int = 1) -> dict[str, Any]:
    n = tasks or (2000 if quick else 10_000)
    chain = 100 if quick else 200
    dag = mixed_dag(n)
    log(f"throughput: workhive {n} tasks, {coordinators} coordinator(s)")
    wh = run_workhive(dag, chain, coordinators)
    log(f"throughput: workhive {wh}")
    dk: dict[str, Any] = {}
    try:
        log("throughput: dask.distributed")
        dk = run_dask(dag, chain)
        log(f"throughput: dask {dk}")
    except Exception as exc:
        dk = {"error": f"{type(exc).__name__}: {exc}"}
    res: dict[str, Any] = {
        "benchmark": "throughput",
        "tasks": n,
        "agents": AGENTS,
        "chain_length": chain,
        "workhive": wh,
        "dask": dk,
    }
    with contextlib.suppress(KeyError, ZeroDivisionError):
        res["ratio_tasks_per_s"] = round(wh["tasks_per_s"] / dk["tasks_per_s"], 2)
        res["ratio_chain_step"] = round(wh["chain_step_ms"] / dk["chain_step_ms"], 2)
        res["target_2x_dask"] = res["ratio_tasks_per_s"] >= 2.0
        res["target_chain_no_worse"] = res["ratio_chain_step"] <= 1.0
    return res


def _extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--coordinators", type=int, default=1)


def main() -> None:
    a = parse_args(__doc__ or "", _extra)
    emit(run(a.quick, a.tasks, a.coordinators), a.json)


if __name__ == "__main__":
    main()
