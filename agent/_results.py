"""What a handler returns, turned into an :class:`Outcome` (docs/agent.md, "Results").

Contract: a handler returns ``None`` or output text (success, as always), a
:class:`Result` (output text and/or a JSON ``value``), or any other JSON
value (a dict, a list, a number...), which is the task's result. A result is
at most ``MAX_RESULT_BYTES`` (64 KiB) of compact JSON; a larger one, or one
that is not JSON, fails the task for good with a reason naming the problem,
and nothing of it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from ._types import Outcome, TaskKey, tail

MAX_RESULT_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Result:
    """A handler's success: ``output`` (its tail travels as the output tail)
    and ``value``, the task's JSON result, handed to its children as
    ``task.inputs[this task's id]`` (``None``: no result)."""

    output: str = ""
    value: Any = None
    new_tasks: Sequence[Any] = ()  # child tasks (dicts or task objects), added with the completion


def encode_value(value: Any) -> str:
    """Compact JSON text of a result ("" for ``None``); ``ValueError`` if it
    is not JSON or over the limit."""
    if value is None:
        return ""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"result is not JSON: {exc}") from None
    size = len(text.encode())
    if size > MAX_RESULT_BYTES:
        raise ValueError(f"result is {size} bytes, limit {MAX_RESULT_BYTES}")
    return text


def _task_dict(t: Any) -> dict[str, Any]:
    d = asdict(t) if is_dataclass(t) and not isinstance(t, type) else dict(t)
    out: dict[str, Any] = {}
    for k, v in d.items():
        if v is None or v == () or v == [] or v == frozenset() or v == "":
            continue
        out[k] = (
            sorted(v) if isinstance(v, frozenset | set) else list(v) if isinstance(v, tuple) else v
        )
    return out


def encode_new_tasks(tasks: Sequence[Any]) -> str:
    """Child tasks as the JSON list ``TaskCompleted.new_tasks_json`` carries."""
    if not tasks:
        return ""
    try:
        return json.dumps([_task_dict(t) for t in tasks], separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"new_tasks: {exc}") from None


def success(key: TaskKey, returned: Any, duration: float) -> Outcome:
    """The outcome of a handler that returned ``returned``."""
    if returned is None or isinstance(returned, str):
        return Outcome(key, True, duration, output_tail=tail(returned or ""))
    result = returned if isinstance(returned, Result) else Result(value=returned)
    try:
        text = encode_value(result.value)
        children = encode_new_tasks(result.new_tasks)
    except ValueError as exc:
        return Outcome(key, False, duration, tail(result.output), str(exc), retryable=False)
    return Outcome(
        key,
        True,
        duration,
        output_tail=tail(result.output),
        result_json=text,
        new_tasks_json=children,
    )
