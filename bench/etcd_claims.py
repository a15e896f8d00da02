"""Claims per second through the etcd layer: batched txns vs one txn per claim.

Usage::

    python bench/etcd_claims.py --start-etcd --json
    python bench/etcd_claims.py --etcd http://127.0.0.1:2379 --tasks 20000 --json

Every claim is the real fenced CAS of ``Claims.create`` (leader fence +
``Version(claim)==0`` + ``ModRevision(task)==seen``, claim on an agent lease).
"Batched" sends up to max-txn-ops per txn from ``--writers`` threads (the
coordinator's group-commit writer); "single" sends one claim per txn from one
thread. Prints one JSON object (``--json``) or a short summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from workhive.coordinator.etcd import (
    ClaimRequest,
    Claims,
    Election,
    EtcdClient,
    Keyspace,
    LeaseKeeper,
    Session,
    Store,
    TaskRecord,
    submit_project,
)
from workhive.coordinator.model import ProjectSpec, TaskSpec


def _records(client: EtcdClient, ks: Keyspace, pid: str, n: int) -> list[TaskRecord]:
    spec = ProjectSpec(id=pid, tasks=tuple(TaskSpec(id=f"t{i}") for i in range(n)))
    submit_project(client, ks, spec)
    recs = Store(client, ks).tasks(pid)
    assert recs is not None
    return recs


def run(endpoints: list[str], tasks: int, single: int, batch: int, writers: int) -> dict[str, Any]:
    prefix = f"/wh-bench-{uuid.uuid4().hex[:8]}/"
    ks = Keyspace(prefix)
    client = EtcdClient(endpoints, timeout=30)
    keeper = LeaseKeeper(client)
    session = Session(client, ttl=30, keeper=keeper)
    try:
        election = Election(client, session, ks, candidate_id="bench", address="-")
        election.campaign(timeout=10)
        fence = election.fence
        agents = [keeper.grant(60) for _ in range(8)]
        claims = Claims(client, ks)

        # batched
        recs = _records(client, ks, "batched", tasks)
        chunks = [recs[i : i + batch] for i in range(0, len(recs), batch)]
        ok = [0] * writers

        def writer(w: int) -> None:
            for j in range(w, len(chunks), writers):
                reqs = [
                    ClaimRequest(r, f"a{k % 8}", agents[k % 8]) for k, r in enumerate(chunks[j])
                ]
                ok[w] += sum(1 for o in claims.create(reqs, fence) if o.ok)

        txns0 = claims.txns_sent
        t0 = time.perf_counter()
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batched_s = time.perf_counter() - t0
        batched_ok = sum(ok)
        batched_txns = claims.txns_sent - txns0

        # one claim per txn
        recs1 = _records(client, ks, "single", single)
        t0 = time.perf_counter()
        single_ok = 0
        for k, r in enumerate(recs1):
            single_ok += sum(
                1
                for o in claims.create([ClaimRequest(r, f"a{k % 8}", agents[k % 8])], fence)
                if o.ok
            )
        single_s = time.perf_counter() - t0

        for lid in agents:
            keeper.revoke(lid)
        client.delete(ks.root, prefix=True)
        b_rate = batched_ok / batched_s
        s_rate = single_ok / single_s
        return {
            "bench": "etcd_claims",
            "endpoints": endpoints,
            "batched": {
                "claims": batched_ok,
                "seconds": round(batched_s, 3),
                "claims_per_s": round(b_rate),
                "txns": batched_txns,
                "claims_per_txn": round(batched_ok / max(1, batched_txns), 1),
                "writers": writers,
            },
            "single": {
                "claims": single_ok,
                "seconds": round(single_s, 3),
                "claims_per_s": round(s_rate),
            },
            "speedup": round(b_rate / s_rate, 1),
            "targets": {"batched_claims_per_s": 20000, "speedup": 10},
            "ok": b_rate >= 20000 and b_rate / s_rate >= 10,
        }
    finally:
        session.close()
        keeper.close()
        client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--etcd", default="", help="etcd endpoint URL(s), comma-separated")
    ap.add_argument("--start-etcd", action="store_true", help="launch a temporary etcd for the run")
    ap.add_argument("--tasks", type=int, default=20000, help="claims in the batched run")
    ap.add_argument("--single", type=int, default=1000, help="claims in the one-per-txn run")
    ap.add_argument(
        "--batch", type=int, default=630, help="claims handed to Claims.create per call"
    )
    ap.add_argument("--writers", type=int, default=3, help="threads sending batches concurrently")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    cluster = None
    if a.start_etcd:
        from tests.harness.etcd_process import EtcdCluster

        cluster = EtcdCluster(1).start()
        endpoints = cluster.endpoints
    elif a.etcd:
        endpoints = a.etcd.split(",")
    else:
        ap.error("give --etcd URL or --start-etcd")
    try:
        res = run(endpoints, a.tasks, a.single, a.batch, a.writers)
    finally:
        if cluster is not None:
            cluster.close()
    if a.json:
        print(json.dumps(res))
    else:
        b, s = res["batched"], res["single"]
        print(
            f"batched: {b['claims_per_s']} claims/s ({b['claims_per_txn']} per txn, "
            f"{b['writers']} writers); "
            f"single: {s['claims_per_s']} claims/s; speedup {res['speedup']}x; ok={res['ok']}"
        )
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
