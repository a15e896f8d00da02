"""``ExecHandler``: run a program per task, in its own process group."""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO

import structlog

from ._files import RunFiles
from ._results import Result
from ._types import OUTPUT_TAIL_BYTES, Task, TaskFailure, TaskKey

_log = structlog.get_logger("workhive.agent")


@functools.cache
def _die_with_parent() -> tuple[str, ...]:
    """A prefix that makes the task's process get SIGKILL when the agent dies
    (even by SIGKILL): util-linux ``setpriv --pdeathsig``, which sets the
    parent-death signal and execs the command (no fork, no Python
    ``preexec_fn``, which can hang a process with busy threads). Empty where
    ``setpriv`` is missing: then a task outlives an agent killed by SIGKILL,
    as the agent logs once."""
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        try:
            probe = subprocess.run(
                [setpriv, "--pdeathsig", "KILL", "--", "true"], capture_output=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            return (setpriv, "--pdeathsig", "KILL", "--")
    _log.warning("setpriv --pdeathsig unavailable: tasks may outlive a killed agent")
    return ()


class ExecHandler:
    """A handler that runs ``cmd`` as a subprocess for every task.

    The command is split with :func:`shlex.split` and run with ``shell=False``
    (no shell unless you ask: pass ``shell=True`` to run it as ``sh -c CMD``,
    which lets you use pipes and ``$WORKHIVE_TASK_ID``). The child gets the
    agent's environment plus ``env`` plus:

    - ``WORKHIVE_TASK_ID``, ``WORKHIVE_PROJECT_ID``, ``WORKHIVE_ATTEMPT``,
      ``WORKHIVE_FENCE``, ``WORKHIVE_TASK_KIND``, ``WORKHIVE_PRIORITY``;
    - ``WORKHIVE_PAYLOAD``: the payload as JSON text (``null`` when empty);
    - ``WORKHIVE_INPUTS``: a JSON file, ``{parent id: result}`` (the results
      of the task's parents);
    - ``WORKHIVE_RESULT``: where the program may write its JSON result (at
      most 64 KiB; not JSON or larger fails the task for good).

    The two files live in a fresh directory per run, removed afterwards.

    Exit code 0 means success. stdout and stderr are merged; the last
    ``tail_bytes`` (4 KiB) travel with the result. A non-zero exit, a timeout
    or a failure to start raises :class:`TaskFailure` with ``retryable=True``
    (the coordinator may use the remaining attempts). Every child runs in a
    new session (its own process group); on timeout, ``cancel`` and
    ``terminate`` the whole group gets SIGTERM, then SIGKILL after
    ``kill_grace`` seconds. Running tasks as subprocesses is what keeps task
    code from ever starving the agent's heartbeat thread (docs/design.md, rule 7).
    """

    def __init__(
        self,
        cmd: str | Sequence[str],
        *,
        shell: bool = False,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        tail_bytes: int = OUTPUT_TAIL_BYTES,
        kill_grace: float = 3.0,
    ) -> None:
        if isinstance(cmd, str):
            argv = ["sh", "-c", cmd] if shell else shlex.split(cmd)
        else:
            argv = list(cmd)
            if shell:
                argv = ["sh", "-c", shlex.join(argv)]
        if not argv:
            raise ValueError("empty command")
        self.argv: tuple[str, ...] = tuple(argv)
        self.timeout = timeout
        self.env = dict(env or {})
        self.cwd = cwd
        self.tail_bytes = tail_bytes
        self.kill_grace = kill_grace
        self._lock = threading.Lock()
        self._procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._closed = False

    def task_env(self, task: Task, files: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment a task's process gets (``files``: the per-run file
        variables, see :func:`_files.prepare`)."""
        env = dict(os.environ)
        env.update(self.env)
        env.update(
            WORKHIVE_TASK_ID=task.task_id,
            WORKHIVE_PROJECT_ID=task.project_id,
            WORKHIVE_ATTEMPT=str(task.attempt),
            WORKHIVE_FENCE=str(task.fence),
            WORKHIVE_TASK_KIND=task.kind,
            WORKHIVE_PRIORITY=str(task.priority),
            WORKHIVE_PAYLOAD=task.payload_json or "null",
        )
        env.update(files or {})
        return env

    def __call__(self, task: Task) -> str | Result:
        with RunFiles(task) as files:
            output = self._run(task, files.env)
            return files.result(output)

    def _run(self, task: Task, files: Mapping[str, str]) -> str:
        with self._lock:
            if self._closed:
                raise TaskFailure("agent stopping", retryable=True)
            env = self.task_env(task, files)
            if shutil.which(self.argv[0], path=env.get("PATH")) is None:
                raise TaskFailure(
                    f"cannot start {self.argv[0]!r}: not found or not executable",
                    retryable=True,
                    exit_code=127,
                )
            try:
                proc = subprocess.Popen(
                    [*_die_with_parent(), *self.argv],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise TaskFailure(
                    f"cannot start {self.argv[0]!r}: {exc}", retryable=True, exit_code=127
                ) from exc
            self._procs[(task.project_id, task.task_id)] = proc
        assert proc.stdout is not None
        buf = bytearray()
        reader = threading.Thread(
            target=self._read, args=(proc.stdout, buf), name="exec-output", daemon=True
        )
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._kill(proc)
        finally:
            with self._lock:
                self._procs.pop((task.project_id, task.task_id), None)
        reader.join(timeout=2.0)  # a background grandchild may hold the pipe
        output = bytes(buf[-self.tail_bytes :]).decode("utf-8", "replace")
        code = proc.returncode
        if timed_out:
            raise TaskFailure(
                f"timed out after {self.timeout}s", retryable=True, exit_code=code, output=output
            )
        if code != 0:
            reason = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
            raise TaskFailure(reason, retryable=True, exit_code=code, output=output)
        return output

    def _read(self, stream: IO[bytes], buf: bytearray) -> None:
        keep = self.tail_bytes
        try:
            while chunk := os.read(stream.fileno(), 65536):
                buf.extend(chunk)
                if len(buf) > 2 * keep:
                    del buf[:-keep]
        except (OSError, ValueError):
            pass
        finally:
            stream.close()

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process group, SIGKILL it after ``kill_grace``."""
        for sig, wait in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                # the leader is gone; make sure nothing of its group survives
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return
            except subprocess.TimeoutExpired:
                continue

    def cancel(self, key: TaskKey) -> None:
        """Kill the process running ``key``'s task, if any (e.g. on Revoke)."""
        with self._lock:
            proc = self._procs.get(key.id)
        if proc is not None and proc.poll() is None:
            threading.Thread(target=self._kill, args=(proc,), daemon=True).start()

    def terminate(self) -> None:
        """Kill every running process group and refuse new tasks (idempotent)."""
        with self._lock:
            self._closed = True
            procs = list(self._procs.values())
        killers = [threading.Thread(target=self._kill, args=(p,), daemon=True) for p in procs]
        for t in killers:
            t.start()
        deadline = time.monotonic() + self.kill_grace + 5.0
        for t in killers:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
