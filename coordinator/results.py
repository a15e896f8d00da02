"""Task results: the JSON a task may complete with (docs/etcd-layer.md, "Results").

Contract: a result is one JSON value of at most ``MAX_RESULT_BYTES`` (64 KiB)
once encoded compactly; ``check_result`` returns that compact text or raises
``ResultError`` with a message naming the limit or the JSON problem. A
result is stored with the completion, in the same fenced transaction, in the
task's ``results/<pid>/<tid>`` record; a JSON ``null`` is no result.
Children receive their parents' results as ``{parent id: result}``
(``inputs_json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import orjson

MAX_RESULT_BYTES = 64 * 1024


class ResultError(ValueError):
    """A result that cannot be stored (too large, or not JSON)."""


def check_result(text: str, task_id: str = "") -> str:
    """The compact JSON text of a result given as JSON text ("" for none)."""
    if not text:
        return ""
    where = f"task {task_id!r}: " if task_id else ""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ResultError(f"{where}result is not JSON: {exc}") from None
    if value is None:
        return ""
    compact = orjson.dumps(value)
    if len(compact) > MAX_RESULT_BYTES:
        raise ResultError(
            f"{where}result is {len(compact)} bytes, limit {MAX_RESULT_BYTES} (nothing committed)"
        )
    return compact.decode()


def inputs_json(inputs: Mapping[str, str]) -> str:
    """``{parent id: result}`` as one JSON object, from each result's JSON text."""
    if not inputs:
        return ""
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in sorted(inputs.items())) + "}"
