"""A network link with delay and loss in user space: two TAP devices, one in
each of two network namespaces, and this process copying Ethernet frames
between them.

It stands in for ``tc qdisc ... netem`` on kernels built without
``CONFIG_NET_SCH_NETEM`` (the CI machine's). Run as

    python -m tests.harness.tap_relay NS_A IF_A NS_B IF_B

It creates ``IF_A`` in namespace ``NS_A`` and ``IF_B`` in ``NS_B`` (taps that
vanish with this process), prints ``ready`` and relays. Each line on stdin
``<delay a->b s> <delay b->a s> <loss 0..1>`` sets the link's shaping (like
netem on each side's egress); EOF on stdin ends the relay. Frames keep their
order in each direction.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import heapq
import os
import random
import select
import struct
import sys
import time

from workhive.coordinator.local_cluster.processes import adopt_parent_death

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_FRAME = 65536

_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(ns: str) -> None:
    """Move the calling thread into network namespace ``ns`` (``ip netns`` name)."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tap(name: str) -> int:
    """Create TAP device ``name`` in the current namespace; its file descriptor."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def relay(fd_a: int, fd_b: int) -> None:
    delay = {fd_a: 0.0, fd_b: 0.0}  # by source
    loss = 0.0
    peer = {fd_a: fd_b, fd_b: fd_a}
    last = {fd_a: 0.0, fd_b: 0.0}  # latest due time by source: no reordering
    due: list[tuple[float, int, int, bytes]] = []  # (when, seq, dest fd, frame)
    seq = 0
    stdin = sys.stdin.fileno()
    rng = random.Random(17)
    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else None
        ready, _, _ = select.select([fd_a, fd_b, stdin], [], [], timeout)
        for fd in ready:
            if fd == stdin:
                line = sys.stdin.readline()
                if not line:
                    return
                a_to_b, b_to_a, lost = (float(x) for x in line.split())
                delay[fd_a], delay[fd_b], loss = a_to_b, b_to_a, lost
                continue
            while True:
                try:
                    frame = os.read(fd, MAX_FRAME)
                except BlockingIOError:
                    break
                if loss and rng.random() < loss:
                    continue
                seq += 1
                last[fd] = max(last[fd], time.monotonic() + delay[fd])
                heapq.heappush(due, (last[fd], seq, peer[fd], frame))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, dest, frame = heapq.heappop(due)
            with contextlib.suppress(OSError):  # device down or queue full: a lost frame
                os.write(dest, frame)


def main(argv: list[str]) -> int:
    ns_a, if_a, ns_b, if_b = argv
    adopt_parent_death()
    enter_netns(ns_a)
    fd_a = open_tap(if_a)
    enter_netns(ns_b)
    fd_b = open_tap(if_b)
    print("ready", flush=True)
    relay(fd_a, fd_b)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
