"""Coordinator and agent processes of a local cluster.

Every process runs ``python -m workhive.coordinator.cli ...`` in its own
session (so signals reach only it), logs to a file in the run directory, and
is reaped by ``LocalCluster.stop()``: SIGTERM, then SIGKILL after a grace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from workhive.coordinator.local_cluster.ports import free_port, wait_for_port

CLI = [sys.executable, "-m", "workhive.coordinator.cli"]


PARENT_ENV = "WORKHIVE_DIE_WITH_PARENT"

if sys.platform.startswith("linux"):
    import ctypes

    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, never in a forked child
else:  # pragma: no cover - Linux only
    _prctl = None


def die_with_parent() -> None:
    """The calling process gets SIGTERM when its parent dies, however it dies
    (Linux ``PR_SET_PDEATHSIG``), so no cluster process outlives its owner.

    Used as ``preexec_fn`` only for etcd (a Go binary, started before the
    owner runs gRPC threads): a fork of a process with busy gRPC threads may
    crash or hang in the child, so Python children call
    :func:`adopt_parent_death` themselves instead and are spawned without one.
    """
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def adopt_parent_death() -> None:
    """In a child started by :class:`Proc`: die with the parent named in
    ``WORKHIVE_DIE_WITH_PARENT`` (exit now if it is already gone)."""
    parent = os.environ.pop(PARENT_ENV, "")
    if not parent:
        return
    die_with_parent()
    if os.getppid() != int(parent):
        os._exit(1)


@dataclass
class Proc:
    """One child process and what it is."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str]
    port: int = 0
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    paused: bool = False
    host: str = "127.0.0.1"
    # argv run before ``args``, e.g. ``["ip", "netns", "exec", NS]`` (it must exec
    # ``args`` in place, so the child's pid is the process's)
    command_prefix: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.popen = subprocess.Popen(
            [*self.command_prefix, *self.args],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**self.env, PARENT_ENV: str(os.getpid())},
            start_new_session=True,  # no preexec_fn: the child adopts the death signal
        )
        log.close()
        self.paused = False
        return self

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.popen is not None
            os.kill(self.popen.pid, sig)
        self.paused = sig == signal.SIGSTOP or (self.paused and sig != signal.SIGCONT)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=10)

    def terminate(self, grace: float = 8.0) -> None:
        if not self.alive:
            return
        assert self.popen is not None
        if self.paused:
            self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()


class LocalCluster:
    """N coordinators and M agents against one etcd, all on 127.0.0.1."""

    def __init__(
        self,
        etcd_url: str,
        run_dir: Path,
        *,
        prefix: str = "/workhive/",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.etcd_url = etcd_url
        self.run_dir = run_dir
        self.prefix = prefix
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        self.coordinators: list[Proc] = []
        self.agents: list[Proc] = []
        self.exec_log = run_dir / "exec.jsonl"

    @property
    def coordinator_addresses(self) -> list[str]:
        return [c.address for c in self.coordinators]

    def add_coordinator(
        self,
        extra: list[str] | None = None,
        *,
        host: str = "127.0.0.1",
        command_prefix: list[str] | None = None,
    ) -> Proc:
        """One more coordinator; ``host`` is the address it listens on and
        advertises (in its network namespace when ``command_prefix`` enters one)."""
        n = len(self.coordinators)
        port = free_port()
        name = f"coordinator-{n}"
        proc = Proc(
            name=name,
            port=port,
            host=host,
            command_prefix=list(command_prefix or []),
            log_path=self.run_dir / f"{name}.log",
            env={**self.env, "WORKHIVE_LOG_FORMAT": "json"},
            args=[
                *CLI,
                "coordinator",
                "--etcd",
                self.etcd_url,
                "--listen",
                f"{host}:{port}",
                "--advertise",
                f"{host}:{port}",
                "--id",
                name,
                "--prefix",
                self.prefix,
                *(extra or []),
            ],
        )
        self.coordinators.append(proc.start())
        return proc

    def restart_coordinator(self, proc: Proc) -> None:
        proc.terminate()
        proc.start()

    def add_agent(
        self,
        exec_cmd: str,
        *,
        slots: int = 1,
        capabilities: tuple[str, ...] = (),
        agent_id: str | None = None,
        coordinators: list[str] | None = None,
        extra: list[str] | None = None,
        command_prefix: list[str] | None = None,
    ) -> Proc:
        name = agent_id or f"agent-{len(self.agents)}"
        args = [
            *CLI,
            "agent",
            "--coordinator",
            ",".join(coordinators or self.coordinator_addresses),
            "--exec",
            exec_cmd,
            "--id",
            name,
            "--slots",
            str(slots),
        ]
        if capabilities:
            args += ["--capabilities", ",".join(capabilities)]
        args += extra or []
        proc = Proc(
            name=name,
            command_prefix=list(command_prefix or []),
            log_path=self.run_dir / f"{name}.log",
            env={
                **self.env,
                "WORKHIVE_EXEC_LOG": str(self.exec_log),
                "WORKHIVE_LOG_FORMAT": "json",
            },
            args=args,
        )
        self.agents.append(proc.start())
        return proc

    def wait_coordinators(self, timeout: float = 60.0) -> None:
        for c in self.coordinators:
            wait_for_port(c.port, timeout, c.host)

    def stop(self) -> None:
        """SIGTERM every child (agents first), SIGKILL stragglers; idempotent."""
        for proc in [*self.agents, *self.coordinators]:
            if proc.paused:
                proc.signal(signal.SIGCONT)
        deadline = time.monotonic() + 10
        for group in (self.agents, self.coordinators):
            for proc in group:
                if proc.alive:
                    proc.signal(signal.SIGTERM)
            for proc in group:
                if proc.popen is not None:
                    try:
                        proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        proc.kill()
