"""ExecHandler: env, exit codes, output tail, timeout, kill."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from workhive.agent import ExecHandler, Result, Task, TaskFailure, TaskKey

pytestmark = pytest.mark.timeout(30)


def task(**kw: object) -> Task:
    base: dict[str, object] = dict(
        project_id="proj",
        task_id="build-api",
        attempt=2,
        payload={"ticket": 42},
        priority=9,
        kind="compile",
        fence=1234,
        payload_json='{"ticket": 42}',
    )
    base.update(kw)
    return Task(**base)  # type: ignore[arg-type]


def test_env_vars_reach_the_command() -> None:
    script = (
        "import json, os; print(json.dumps({k: v for k, v in os.environ.items()"
        " if k.startswith('WORKHIVE_') or k == 'EXTRA'}))"
    )
    h = ExecHandler([sys.executable, "-c", script], env={"EXTRA": "x"})
    env = json.loads(h(task()))
    inherited = {k for k in os.environ if k.startswith("WORKHIVE_")}  # e.g. CI's settings
    env = {k: v for k, v in env.items() if k not in inherited or k == "WORKHIVE_PAYLOAD"}
    files = {k: env.pop(k) for k in ("WORKHIVE_INPUTS", "WORKHIVE_RESULT", "WORKHIVE_NEW_TASKS")}
    assert all(os.path.isabs(f) for f in files.values())
    assert env == {
        "WORKHIVE_TASK_ID": "build-api",
        "WORKHIVE_PROJECT_ID": "proj",
        "WORKHIVE_ATTEMPT": "2",
        "WORKHIVE_FENCE": "1234",
        "WORKHIVE_TASK_KIND": "compile",
        "WORKHIVE_PRIORITY": "9",
        "WORKHIVE_PAYLOAD": '{"ticket": 42}',
        "EXTRA": "x",
    }
    assert json.loads(env["WORKHIVE_PAYLOAD"]) == {"ticket": 42}


def test_the_command_reads_its_inputs_and_writes_its_result_through_files() -> None:
    script = (
        "import json, os; i = json.load(open(os.environ['WORKHIVE_INPUTS']));"
        " json.dump({'got': i}, open(os.environ['WORKHIVE_RESULT'], 'w'))"
    )
    out = ExecHandler([sys.executable, "-c", script])(task(inputs={"a": [1]}))
    assert isinstance(out, Result) and out.value == {"got": {"a": [1]}}


def test_a_result_file_that_is_not_json_fails_the_task_for_good() -> None:
    script = "import os; open(os.environ['WORKHIVE_RESULT'], 'w').write('{nope')"
    with pytest.raises(TaskFailure, match="WORKHIVE_RESULT is not JSON") as exc:
        ExecHandler([sys.executable, "-c", script])(task())
    assert not exc.value.retryable


def test_string_command_is_shlex_split_without_shell() -> None:
    h = ExecHandler("echo 'a b' $WORKHIVE_TASK_ID")
    assert h.argv == ("echo", "a b", "$WORKHIVE_TASK_ID")
    assert h(task()).strip() == "a b $WORKHIVE_TASK_ID"


def test_shell_mode_expands_variables() -> None:
    h = ExecHandler('echo "$WORKHIVE_TASK_ID" 1>&2; echo out', shell=True)
    assert h.argv[:2] == ("sh", "-c")
    assert h(task()).split() == ["build-api", "out"]


def test_empty_payload_is_json_null() -> None:
    h = ExecHandler('printf %s "$WORKHIVE_PAYLOAD"', shell=True)
    assert h(task(payload=None, payload_json="")) == "null"


def test_nonzero_exit_is_retryable_failure_with_tail() -> None:
    h = ExecHandler("echo failing; exit 3", shell=True)
    with pytest.raises(TaskFailure) as info:
        h(task())
    assert info.value.exit_code == 3
    assert info.value.retryable
    assert info.value.reason == "exit code 3"
    assert info.value.output == "failing\n"


def test_output_tail_keeps_the_last_4_kib() -> None:
    script = "import sys; sys.stdout.write('a' * 100000 + 'END')"
    out = ExecHandler([sys.executable, "-c", script])(task())
    assert len(out) == 4096
    assert out.endswith("aEND")


def test_missing_program_fails_with_127() -> None:
    with pytest.raises(TaskFailure) as info:
        ExecHandler("/nonexistent/prog")(task())
    assert info.value.exit_code == 127


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child-alive"
    # the grandchild would write the marker after 1 s if it survived
    cmd = f"(sleep 1; touch {marker}) & sleep 30"
    h = ExecHandler(cmd, shell=True, timeout=0.3, kill_grace=0.5)
    t0 = time.monotonic()
    with pytest.raises(TaskFailure) as info:
        h(task())
    assert "timed out" in info.value.reason
    assert time.monotonic() - t0 < 5
    time.sleep(1.3)
    assert not marker.exists(), "grandchild survived the group kill"


def test_terminate_kills_running_tasks_and_refuses_new_ones() -> None:
    h = ExecHandler("sleep 30", kill_grace=0.5)
    errors: list[TaskFailure] = []

    def run() -> None:
        try:
            h(task())
        except TaskFailure as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    h.terminate()
    t.join(5)
    assert not t.is_alive()
    assert errors and "signal" in errors[0].reason
    with pytest.raises(TaskFailure):
        h(task())


def test_cancel_kills_one_task() -> None:
    h = ExecHandler("sleep 30", kill_grace=0.5)
    errors: list[TaskFailure] = []
    t = threading.Thread(target=lambda: errors.append(_fail(h)))
    t.start()
    time.sleep(0.3)
    h.cancel(TaskKey("proj", "build-api", 1234))
    t.join(5)
    assert not t.is_alive()
    assert errors[0].exit_code < 0


def _fail(h: ExecHandler) -> TaskFailure:
    try:
        h(task())
    except TaskFailure as exc:
        return exc
    raise AssertionError("expected a failure")
