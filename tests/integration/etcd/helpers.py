"""Small builders shared by the etcd integration tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from workhive.coordinator.etcd import EtcdClient, Keyspace, Store, TaskRecord, submit_project
from workhive.coordinator.model import ProjectSpec, TaskKey, TaskSpec


def make_project(pid: str, n: int, *, max_attempts: int = 3, chain: bool = False) -> ProjectSpec:
    tasks = []
    for i in range(n):
        deps = (f"t{i - 1}",) if chain and i else ()
        tasks.append(
            TaskSpec(id=f"t{i}", depends_on=deps, max_attempts=max_attempts, payload={"i": i})
        )
    return ProjectSpec(id=pid, tasks=tuple(tasks))


def submit_ready(
    client: EtcdClient, ks: Keyspace, pid: str, n: int, **kw: int
) -> dict[TaskKey, TaskRecord]:
    """Submit ``n`` independent tasks and return their READY records."""
    submit_project(client, ks, make_project(pid, n, **kw))
    recs = Store(client, ks).tasks(pid)
    assert recs is not None
    return {r.key: r for r in recs}


def wait_for(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> float:
    """Poll ``pred`` until true; return the seconds it took (AssertionError on timeout)."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - t0


class RecordingClient(EtcdClient):
    """A real client that notes the failure branch's length of every txn it
    sends (``failures``) and the most txns it had in flight at once (``most``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures: list[int] = []
        self.most = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    def txn_raw(
        self,
        compare: Sequence[Any],
        success: Sequence[Any],
        failure: Sequence[Any] = (),
        *,
        retry: bool = False,
        timeout: float | None = None,
    ) -> Any:
        with self._lock:
            self.failures.append(len(failure))
            self._in_flight += 1
            self.most = max(self.most, self._in_flight)
        try:
            return super().txn_raw(compare, success, failure, retry=retry, timeout=timeout)
        finally:
            with self._lock:
                self._in_flight -= 1
