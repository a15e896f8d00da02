"""Read the full change history of the keyspace (for audits and tests).

Works while etcd still holds every revision (no compaction since 1), which
is the case for the embedded etcd of ``workhive up`` and for test clusters.
To know where "now" ends, the reader writes one marker key under the prefix
(``<prefix>audit-marker``) and reads until it sees it.
"""

from __future__ import annotations

import time

from workhive.coordinator.etcd.client import EtcdClient
from workhive.coordinator.etcd.keys import Keyspace
from workhive.coordinator.etcd.watch import Watcher, WatchEvent


def history(client: EtcdClient, keyspace: Keyspace, timeout: float = 60.0) -> list[WatchEvent]:
    """Every change under the prefix from revision 1 to now, in order.

    Raises ``Compacted`` when etcd no longer holds the early revisions.
    """
    marker = keyspace.root + b"audit-marker"
    until = client.put(marker, str(time.time()).encode())
    events: list[WatchEvent] = []
    watcher = Watcher(client, keyspace.root, start_revision=1, prefix=True, prev_kv=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"history read did not reach revision {until}")
            batch = watcher.get(timeout=0.5)
            if batch is None:
                continue
            events.extend(e for e in batch.events if e.key != marker)
            if any(e.key == marker and e.revision >= until for e in batch.events):
                break
    finally:
        watcher.cancel()
    return [e for e in events if e.revision < until]
