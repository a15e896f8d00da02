"""Many protocol-level agents in one asyncio process (a scale-benchmark helper).

``python -m bench._swarm --coordinators A,B --count 500 --prefix s0-``

An SDK agent costs ~6 threads; a thousand of them starve a 2-core machine
before the coordinator is measured. Here each agent is one coroutine and
one ``AgentService.Session`` stream (grpc.aio, a channel per 50 agents):
Hello (slots 1, no prefetch, resuming its lease after a reconnect),
heartbeats on the stream at the Welcome's interval (unary ones between
sessions, like the SDK), a no-op "run" of every
started assignment answered with ``TaskCompleted`` (a queued one is asked
for with ``StartRequest`` first; a grant of a task already run is ignored),
``Redirect`` followed to the leader.
Prints ``START <wall time> <project> <task> <agent> <term>`` per run like
``bench._agent_host``. Runs until SIGTERM/SIGINT or SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import sys
import time

import grpc

from workhive.agent._session import CHANNEL_OPTIONS
from workhive.v1 import agent_pb2, agent_pb2_grpc, common_pb2

PER_CHANNEL = 50


class SwarmAgent:
    """One light agent: reconnects forever, keeps its lease across reconnects."""

    def __init__(self, agent_id: str, channels: dict[str, grpc.aio.Channel], addrs: list[str]):
        self.id = agent_id
        self.channels = channels
        self.addrs = addrs
        self.addr = random.choice(addrs)
        self.lease = 0
        self.terms: dict[tuple[str, str, int], int] = {}
        self._write = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        last_beat = 0.0
        while not stop.is_set():
            try:
                await self._session(stop)
            except grpc.aio.AioRpcError:
                self.addr = random.choice([a for a in self.addrs if a != self.addr] or self.addrs)
            if self.lease and time.monotonic() - last_beat >= 1.0:
                last_beat = time.monotonic()  # like the SDK: keep the lease alive between sessions
                await self._unary_beat()
            await asyncio.sleep(random.uniform(0.05, 0.3))

    async def _unary_beat(self) -> None:
        stub = agent_pb2_grpc.AgentServiceStub(self.channels[random.choice(self.addrs)])
        with contextlib.suppress(grpc.aio.AioRpcError):
            req = agent_pb2.HeartbeatRequest(agent_id=self.id, lease_id=self.lease)
            await stub.Heartbeat(req, timeout=1.0)

    async def _send(self, call: grpc.aio.StreamStreamCall, msg: agent_pb2.AgentMessage) -> None:
        async with self._write:
            await call.write(msg)

    async def _session(self, stop: asyncio.Event) -> None:
        stub = agent_pb2_grpc.AgentServiceStub(self.channels[self.addr])
        call = stub.Session()
        hello = agent_pb2.Hello(
            agent_id=self.id, slots=1, prefetch=0, resume_lease_id=self.lease, sdk_version="swarm"
        )
        await self._send(call, agent_pb2.AgentMessage(hello=hello))
        beats: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                kind = msg.WhichOneof("kind")
                if kind == "welcome":
                    self.lease = msg.welcome.lease_id
                    every = max(0.1, msg.welcome.heartbeat_interval_ms / 1000)
                    beats = asyncio.create_task(self._beat(call, every))
                elif kind == "redirect":
                    if msg.redirect.leader.address in self.channels:
                        self.addr = msg.redirect.leader.address
                    return
                elif kind == "assign":
                    ref = msg.assign.task
                    self.terms[(ref.project_id, ref.task_id, ref.fence)] = msg.assign.term
                    if msg.assign.started:
                        await self._run(call, ref)
                    else:
                        ask = agent_pb2.StartRequest(task=ref)
                        await self._send(call, agent_pb2.AgentMessage(start=ask))
                elif kind == "start_granted":
                    await self._run(call, msg.start_granted.task)
        finally:
            if beats is not None:
                beats.cancel()
            call.cancel()

    async def _run(self, call: grpc.aio.StreamStreamCall, ref: common_pb2.TaskRef) -> None:
        term = self.terms.pop((ref.project_id, ref.task_id, ref.fence), None)
        if term is None:
            # a second grant of a task already run: the leader re-sends a grant
            # when a StartRequest finds the claim started (the SDK's held
            # tasks ignore it the same way)
            return
        line = f"START {time.time():.6f} {ref.project_id} {ref.task_id} {self.id} {term}"
        sys.stdout.write(line + "\n")
        done = agent_pb2.TaskCompleted(task=ref, duration_seconds=0.0)
        await self._send(call, agent_pb2.AgentMessage(completed=done))

    async def _beat(self, call: grpc.aio.StreamStreamCall, every: float) -> None:
        seq = 0
        await asyncio.sleep(random.uniform(0, every))
        while True:
            seq += 1
            await self._send(call, agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(seq=seq)))
            await asyncio.sleep(every)


async def main_async(addrs: list[str], count: int, prefix: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    groups = [
        {a: grpc.aio.insecure_channel(a, options=CHANNEL_OPTIONS) for a in addrs}
        for _ in range((count + PER_CHANNEL - 1) // PER_CHANNEL)
    ]
    agents = [SwarmAgent(f"{prefix}{i:04d}", groups[i // PER_CHANNEL], addrs) for i in range(count)]
    tasks = []
    for a in agents:  # stagger the hellos a little, like a fleet coming up
        tasks.append(asyncio.create_task(a.run(stop)))
        await asyncio.sleep(0.002)
    flusher = asyncio.create_task(_flush_every(0.2))
    await stop.wait()
    for t in [*tasks, flusher]:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(BaseException):
            await t
    for g in groups:
        for ch in g.values():
            await ch.close()


async def _flush_every(period: float) -> None:
    while True:
        await asyncio.sleep(period)
        sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--coordinators", required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--prefix", default="s-")
    args = p.parse_args()
    asyncio.run(main_async(args.coordinators.split(","), args.count, args.prefix))


if __name__ == "__main__":
    main()
