"""Lease keepalives behind a busy GIL: the convoy that lets agent leases expire.

``python -m bench.keepalive_convoy [--json] [--quick] [--leases N] [--spinners N]``

One embedded etcd, N leases, and the coordinator's own ``LeaseKeeper``
(one shared keepalive stream). A batch of N keepalives is timed idle, then
while ``--spinners`` threads run pure-Python loops (a stand-in for the
leader's event loop decoding a 100k-task submit), at the interpreter's
default switch interval (5 ms) and at 0.5 ms. Every answer on the stream
needs the GIL, and a thread that waits for it gets it only when the
holder's switch interval runs out: with a busy thread, each acquisition
costs up to one interval, so a batch that takes ~0.1 s idle takes seconds,
and past the keepalive timeout (5 s) the leases' renewals are given up
(docs/benchmarks.md, "Agent leases during a 100k-task submit").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import emit, log, parse_args
from workhive.coordinator.etcd.client import EtcdClient
from workhive.coordinator.etcd.session import LeaseKeeper
from workhive.coordinator.local_cluster.etcd_server import EtcdServer

INTERVALS = (0.005, 0.0005)


def _spin(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(1000):
            x += i


def _batch_ms(keeper: LeaseKeeper, leases: list[int]) -> float:
    t = time.perf_counter()
    keeper.refresh_many(leases, timeout=120)
    return round((time.perf_counter() - t) * 1000, 1)


def run(n_leases: int, spinners: int, rounds: int) -> dict[str, Any]:
    res: dict[str, Any] = {"benchmark": "keepalive_convoy", "leases": n_leases}
    res["spinners"] = spinners
    default_interval = sys.getswitchinterval()
    with EtcdServer(log_path=Path(tempfile.mkdtemp(prefix="workhive-convoy-")) / "etcd.log") as srv:
        client = EtcdClient([srv.url])
        keeper = LeaseKeeper(client)
        try:
            leases = [keeper.grant(60) for _ in range(n_leases)]
            _batch_ms(keeper, leases)  # the stream is open
            for interval in INTERVALS:
                sys.setswitchinterval(interval)
                idle = min(_batch_ms(keeper, leases) for _ in range(rounds))
                stop = threading.Event()
                threads = [threading.Thread(target=_spin, args=(stop,)) for _ in range(spinners)]
                for th in threads:
                    th.start()
                try:
                    busy = [_batch_ms(keeper, leases) for _ in range(rounds)]
                finally:
                    stop.set()
                    for th in threads:
                        th.join()
                key = f"switch_{interval * 1000:g}ms"
                slowdown = round(min(busy) / idle, 1)
                res[key] = {"idle_ms": idle, "busy_ms": busy, "slowdown": slowdown}
                log(f"convoy: {key}: {res[key]}")
        finally:
            sys.setswitchinterval(default_interval)
            keeper.close()
            client.close()
    return res


def _extra(p: argparse.ArgumentParser) -> None:
    p.add_argument("--leases", type=int, default=1000)
    p.add_argument("--spinners", type=int, default=1)


def main() -> None:
    a = parse_args(__doc__ or "", _extra)
    emit(run(200 if a.quick else a.leases, a.spinners, 2 if a.quick else 3), a.json)


if __name__ == "__main__":
    main()
