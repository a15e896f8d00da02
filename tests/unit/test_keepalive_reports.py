"""The keepalive process's reports to the coordinator: renewing never waits
on a coordinator that reads nothing; what waits is coalesced per lease."""

from __future__ import annotations

import threading
import time

from workhive.coordinator.etcd.keepalive_process import Reports


class BlockedSocket:
    """A send that blocks (a full socket) until released."""

    def __init__(self) -> None:
        self.sent: list[dict[int, tuple[float, int]]] = []
        self.open = threading.Event()
        self.arrived = threading.Event()

    def send(self, batch: dict[int, tuple[float, int]]) -> None:
        self.arrived.set()
        assert self.open.wait(5.0)
        self.sent.append(batch)


def test_answers_added_while_a_send_is_blocked_wait_coalesced_to_the_newest() -> None:
    sock = BlockedSocket()
    reports = Reports(sock.send)
    try:
        reports.add(1.0, {7: 6})
        assert sock.arrived.wait(5.0)  # the first send now blocks
        for when in (2.0, 3.0, 4.0):  # the renewing thread is not held up
            reports.add(when, {7: 6, 8: 5})
        reports.add(5.0, {8: 0})
        sock.open.set()
        deadline = time.monotonic() + 5.0
        while len(sock.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sock.sent == [{7: (1.0, 6)}, {7: (4.0, 6), 8: (5.0, 0)}]
    finally:
        sock.open.set()
        reports.close()


def test_a_gone_coordinator_ends_the_sending_thread() -> None:
    def broken(batch: dict[int, tuple[float, int]]) -> None:
        raise BrokenPipeError

    reports = Reports(broken)
    reports.add(1.0, {7: 6})
    reports._thread.join(5.0)
    assert not reports._thread.is_alive()
