"""``workhive agent`` (registered on a local Typer app until the root wires it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import typer
from typer.testing import CliRunner

from tests.harness.scripted_coordinator import ScriptedCoordinator
from workhive.coordinator.cli.agent import register

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command configures structlog for the process, writing to CliRunner's
    (soon closed) stderr: put the defaults back for the tests that follow."""
    yield
    structlog.reset_defaults()


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """test root"""

    register(app)
    return app


def test_help_lists_flags() -> None:
    result = CliRunner().invoke(make_app(), ["agent", "--help"])
    assert result.exit_code == 0
    for flag in ("--coordinator", "--exec", "--id", "--capabilities", "--slots", "--prefetch"):
        assert flag in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["agent", "--exec", "true"],  # no coordinator
        ["agent", "-c", "127.0.0.1:1"],  # no --exec
        ["agent", "-c", "127.0.0.1:1", "--exec", "true", "--slots", "0"],
        ["agent", "-c", "127.0.0.1:1", "--exec", "'unbalanced"],
        ["agent", "-c", " , ", "--exec", "true"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(make_app(), args, env={"WORKHIVE_COORDINATOR": None})
    assert result.exit_code == 2, result.output


def test_unreachable_exits_69() -> None:
    result = CliRunner().invoke(
        make_app(),
        ["agent", "--exec", "true", "--unreachable-timeout", "0.3"],
        env={"WORKHIVE_COORDINATOR": "127.0.0.1:1"},
    )
    assert result.exit_code == 69, result.output


def test_sigterm_drains_and_exits_0(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import typer
        from workhive.coordinator.cli.agent import register
        app = typer.Typer()
        @app.callback()
        def root() -> None: pass
        register(app)
        app()
        """
    )
    with ScriptedCoordinator() as coord:
        env = dict(os.environ, WORKHIVE_SLOTS="2", WORKHIVE_EXEC_LOG=str(tmp_path / "x.jsonl"))
        cmd = 'echo "$WORKHIVE_TASK_ID $WORKHIVE_PAYLOAD"; exit ${CODE:-0}'
        proc = subprocess.Popen(
            [sys.executable, "-c", script, "agent", "-c", coord.address, "--exec", cmd,
             "--shell", "--id", "cli-1", "--capabilities", "a,b", "--json-logs"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            hello = coord.wait_kind("hello", timeout=15)[0].msg.hello
            assert (hello.agent_id, list(hello.capabilities), hello.slots) == (
                "cli-1",
                ["a", "b"],
                2,
            )
            coord.assign("t1", fence=3, started=True, payload_json='{"k": 1}')
            done = coord.wait_kind("completed")[0].msg.completed
            assert done.output_tail == 't1 {"k": 1}\n'
            proc.send_signal(signal.SIGTERM)
            coord.wait_kind("drain")
            _out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert '"event": "draining"' in err or '"event":"draining"' in err
    assert (tmp_path / "x.jsonl").read_text().count('"event":"finish"') == 1


AGENT_SCRIPT = textwrap.dedent(
    """
    import typer
    from workhive.coordinator.cli.agent import register
    app = typer.Typer()
    @app.callback()
    def root() -> None: pass
    register(app)
    app()
    """
)


def test_refused_credentials_stop_the_agent_with_exit_77() -> None:
    with ScriptedCoordinator() as coord:
        coord.mode = "unauthenticated"
        proc = subprocess.run(
            [sys.executable, "-c", AGENT_SCRIPT, "agent", "-c", coord.address,
             "--exec", "true", "--token", "wrong-token-0123456789"],
            cwd=ROOT, capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    assert proc.returncode == 77, proc.stderr
    assert "refused this agent's credentials" in proc.stderr
    assert "UNAUTHENTICATED" in proc.stderr


def _task_processes(marker: str) -> list[int]:
    """The ``sleep`` processes running ``marker``: the task itself, once the
    ``setpriv`` wrapper has set its parent-death signal and exec'd it (the
    wrapper's own brief life, before that, does not count)."""
    import psutil

    return [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "sleep" and marker in " ".join(p.info["cmdline"] or ())
    ]


def test_a_killed_agent_takes_its_task_process_with_it() -> None:
    marker = "47.125"  # a sleep nothing else on the machine runs
    with ScriptedCoordinator() as coord:
        proc = subprocess.Popen(
            [sys.executable, "-c", AGENT_SCRIPT, "agent", "-c", coord.address,
             "--exec", f"sleep {marker}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            coord.wait_kind("hello", timeout=15)
            coord.assign("t1", fence=3, started=True)
            deadline = time.monotonic() + 10
            while not _task_processes(marker):
                assert time.monotonic() < deadline, "the task never started"
                time.sleep(0.05)
            proc.kill()
            proc.wait(10)
            deadline = time.monotonic() + 5
            while _task_processes(marker):
                assert time.monotonic() < deadline, "the task outlived its agent"
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
            for pid in _task_processes(marker):
                os.kill(pid, signal.SIGKILL)
