"""The one task schema: the fields of a task, their defaults, limits and checks.

Every reader and writer of a task goes through this table: the project-file
loader (``project_files``), the AddTasks path (``scheduling.growth``), the etcd
codec (``etcd.codec``: :func:`task_to_dict` / :func:`task_from_stored`) and
the gRPC converter (``service.convert``, which maps wire names onto
:data:`TASK_FIELDS`). A field added here is validated, stored and decoded
everywhere at once.

Contract of :func:`task_from_dict`: either a valid ``TaskSpec`` comes back or
one ``ProjectError`` is raised naming the source, the task and the field at
fault (wrong type, value out of range, oversize or too-deep payload, unknown
field); nothing partial is returned and nothing is changed. Stored records
(:func:`task_from_stored`) are trusted: they were validated on the way in, and
decoding only fills defaults for fields an older writer did not know.
Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workhive.coordinator.model import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PRIORITY,
    MAX_PAYLOAD_BYTES,
    MAX_PRIORITY,
    RetryBackoff,
    TaskSpec,
)

__all__ = [
    "DEFAULT_FIELDS",
    "FIELD_NAMES",
    "MAX_ATTEMPTS",
    "MAX_BACKOFF_SECONDS",
    "MAX_LABEL_CHARS",
    "MAX_PAYLOAD_DEPTH",
    "MAX_REQUIRES",
    "MAX_TIMEOUT_SECONDS",
    "TASK_FIELDS",
    "ProjectError",
    "TaskField",
    "compact",
    "ident",
    "integer",
    "labels",
    "no_unknown",
    "shown",
    "task_from_dict",
    "task_from_stored",
    "task_to_dict",
]

MAX_LABEL_CHARS = 256  # kind, branch, each capability
MAX_REQUIRES = 32  # capabilities one task may require
MAX_PAYLOAD_DEPTH = 32  # JSON nesting of a payload
MAX_ATTEMPTS = 100
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0  # a task's timeout: at most a week of running
MAX_BACKOFF_SECONDS = 24 * 3600.0  # retry_backoff base and cap: at most a day
_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:@+-]{0,199}$")


class ProjectError(ValueError):
    """A project file, wire spec or task was rejected.

    Attributes:
        file: the source (path or wire label) of the spec.
        task: the task id at fault, or ``None`` for project-level errors.
        field: the field at fault, or ``None``.
        reason: the bare reason without location.
    """

    def __init__(
        self, reason: str, *, file: str, task: str | None = None, field: str | None = None
    ) -> None:
        self.file = file
        self.task = task
        self.field = field
        self.reason = reason
        where = file or "<project>"
        if task is not None:
            where += f": task {task!r}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {reason}")


# -- checks (each: value, source, task, field -> validated value) -------------


def no_unknown(
    d: Mapping[Any, Any],
    allowed: frozenset[str],
    src: str,
    task: str | None,
    prefix: str = "",
) -> None:
    """Refuse a key of ``d`` outside ``allowed``, listing the allowed ones."""
    for k in d:
        if k not in allowed:
            raise ProjectError(
                f"unknown field (allowed: {', '.join(sorted(allowed))})",
                file=src,
                task=task,
                field=f"{prefix}{k}",
            )


def ident(v: Any, src: str, task: str | None, field: str) -> str:
    """A project or task id: letters, digits, '._:@+-', at most 200 chars."""
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ProjectError(
            f"must be a string, got {type(v).__name__}", file=src, task=task, field=field
        )
    s = str(v)
    if not _ID_RE.match(s):
        raise ProjectError(
            f"invalid id {shown(s)} (letters, digits, '._:@+-', at most 200 chars)",
            file=src,
            task=task,
            field=field,
        )
    return s


def shown(s: str, limit: int = 60) -> str:
    """``s`` quoted for an error message, cut to ``limit`` characters."""
    return repr(s) if len(s) <= limit else f"{s[:limit]!r}... ({len(s)} chars)"


def integer(v: Any, src: str, task: str | None, field: str, lo: int, hi: int | None) -> int:
    """An integer (not a bool) in ``lo..hi`` (``hi`` ``None``: unbounded)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProjectError(
            f"must be an integer, got {type(v).__name__}", file=src, task=task, field=field
        )
    if v < lo or (hi is not None and v > hi):
        rng = f"{lo}-{hi}" if hi is not None else f">= {lo}"
        raise ProjectError(f"{v} outside {rng}", file=src, task=task, field=field)
    return v


def _seconds(v: Any, src: str, task: str | None, field: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ProjectError(
            f"must be a number of seconds, got {type(v).__name__}", file=src, task=task, field=field
        )
    f = float(v)
    if not math.isfinite(f) or f < 0:
        raise ProjectError(f"{v} must be finite and >= 0", file=src, task=task, field=field)
    return f


def _label(v: Any, src: str, task: str | None, field: str) -> str:
    if not isinstance(v, str):
        raise ProjectError(
            f"must be a string, got {type(v).__name__}", file=src, task=task, field=field
        )
    if len(v) > MAX_LABEL_CHARS:
        raise ProjectError(
            f"{len(v)} characters, limit {MAX_LABEL_CHARS}", file=src, task=task, field=field
        )
    return v


def labels(v: Any, src: str, task: str | None, field: str) -> frozenset[str]:
    """A list of at most MAX_REQUIRES labels (``None``: empty)."""
    if v is None:
        return frozenset()
    if isinstance(v, str) or not isinstance(v, list | tuple):
        raise ProjectError(
            f"must be a list of strings, got {type(v).__name__}", file=src, task=task, field=field
        )
    if len(v) > MAX_REQUIRES:
        raise ProjectError(
            f"{len(v)} entries, limit {MAX_REQUIRES}", file=src, task=task, field=field
        )
    for x in v:
        if not isinstance(x, str):
            raise ProjectError(
                f"must be a list of strings, found {type(x).__name__}",
                file=src,
                task=task,
                field=field,
            )
        _label(x, src, task, field)
    return frozenset(v)


def _depends_on(v: Any, src: str, task: str | None, field: str) -> tuple[str, ...]:
    v = v or []
    if isinstance(v, str | int) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, list | tuple):
        raise ProjectError(
            f"must be a list of task ids, got {type(v).__name__}",
            file=src,
            task=task,
            field=field,
        )
    return tuple(dict.fromkeys(ident(d, src, task, field) for d in v))


def _depth(value: Any, limit: int, src: str, task: str | None, field: str) -> None:
    """Refuse JSON nested deeper than ``limit`` (iterative: no RecursionError)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list | tuple):
            if d > limit:
                raise ProjectError(
                    f"nested more than {limit} levels deep", file=src, task=task, field=field
                )
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))


def _payload(v: Any, src: str, task: str | None, field: str) -> Any:
    _depth(v, MAX_PAYLOAD_DEPTH, src, task, field)
    try:
        size = len(json.dumps(v, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:
        raise ProjectError(
            f"not JSON-serialisable: {exc}", file=src, task=task, field=field
        ) from exc
    if size > MAX_PAYLOAD_BYTES:
        raise ProjectError(
            f"payload is {size} bytes of JSON, limit {MAX_PAYLOAD_BYTES}",
            file=src,
            task=task,
            field=field,
        )
    return v


def _priority(v: Any, src: str, task: str | None, field: str) -> int:
    return integer(v, src, task, field, 0, MAX_PRIORITY)


def _attempts(v: Any, src: str, task: str | None, field: str) -> int:
    return integer(v, src, task, field, 1, MAX_ATTEMPTS)


def _bounded(v: Any, src: str, task: str | None, field: str, limit: float) -> float:
    f = _seconds(v, src, task, field)
    if f > limit:
        raise ProjectError(f"{v} seconds, limit {limit:g}", file=src, task=task, field=field)
    return f


def _timeout(v: Any, src: str, task: str | None, field: str) -> float:
    f = _bounded(v, src, task, field, MAX_TIMEOUT_SECONDS)
    if f == 0:
        raise ProjectError(
            "must be > 0 seconds (omit it for no timeout)", file=src, task=task, field=field
        )
    return f


_BACKOFF_KEYS = frozenset({"base", "cap"})


def _backoff(v: Any, src: str, task: str | None, field: str) -> RetryBackoff:
    """``{base, cap}`` seconds, both present, ``0 <= base <= cap <= MAX_BACKOFF_SECONDS``."""
    if not isinstance(v, Mapping):
        raise ProjectError(
            f"must be a mapping {{base, cap}} of seconds, got {type(v).__name__}",
            file=src,
            task=task,
            field=field,
        )
    no_unknown(v, _BACKOFF_KEYS, src, task, prefix=f"{field}.")
    for k in ("base", "cap"):
        if v.get(k) is None:
            raise ProjectError("missing (seconds)", file=src, task=task, field=f"{field}.{k}")
    base = _bounded(v["base"], src, task, f"{field}.base", MAX_BACKOFF_SECONDS)
    cap = _bounded(v["cap"], src, task, f"{field}.cap", MAX_BACKOFF_SECONDS)
    if cap < base:
        raise ProjectError(f"cap {cap:g} is below base {base:g}", file=src, task=task, field=field)
    return RetryBackoff(base=base, cap=cap)


def _backoff_stored(b: RetryBackoff) -> dict[str, float]:
    return {"base": b.base, "cap": b.cap}


def _backoff_loaded(d: Mapping[str, Any]) -> RetryBackoff:
    return RetryBackoff(base=float(d["base"]), cap=float(d["cap"]))


def _same(v: Any) -> Any:
    return v


# -- the table -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskField:
    """One field of a task.

    ``check`` validates a present (non-``None``) input value; an absent or
    ``None`` value takes ``default``. ``in_defaults``: may be set for every task
    under a project file's ``defaults``. ``always_stored``: written to etcd even
    when equal to the default (otherwise omitted). ``store``/``load`` convert
    between the ``TaskSpec`` value and its JSON form.
    """

    name: str
    default: Any
    check: Callable[[Any, str, str | None, str], Any]
    in_defaults: bool = False
    always_stored: bool = False
    store: Callable[[Any], Any] = _same
    load: Callable[[Any], Any] = _same


TASK_FIELDS: tuple[TaskField, ...] = (
    TaskField("depends_on", (), _depends_on, store=list, load=tuple),
    TaskField("priority", DEFAULT_PRIORITY, _priority, True, True, load=int),
    TaskField("estimate", None, _seconds, True),
    TaskField("kind", "", _label, True),
    TaskField("branch", "", _label, True),
    TaskField("requires", frozenset(), labels, True, store=sorted, load=frozenset),
    TaskField("payload", None, _payload),
    TaskField("max_attempts", DEFAULT_MAX_ATTEMPTS, _attempts, True, True, load=int),
    TaskField("duration", None, _seconds),
    TaskField("timeout", None, _timeout, True),
    TaskField("retry_backoff", None, _backoff, True, store=_backoff_stored, load=_backoff_loaded),
)
FIELD_NAMES = frozenset({"id", *(f.name for f in TASK_FIELDS)})
DEFAULT_FIELDS = frozenset(f.name for f in TASK_FIELDS if f.in_defaults)


def task_from_dict(
    raw: Any, index: int, source: str, defaults: Mapping[str, Any] | None = None
) -> TaskSpec:
    """Validate one task (a file's, a wire spec's or an added one). ``defaults``
    are the project file's ``defaults`` (already checked for unknown keys).
    Dependencies are not resolved here: that is the project's check (the
    loader) or the running graph's (``scheduling.growth.check_addition``)."""
    if not isinstance(raw, Mapping):
        raise ProjectError(
            f"task #{index + 1} must be a mapping, got {type(raw).__name__}",
            file=source,
            field="tasks",
        )
    if "id" not in raw:
        raise ProjectError(f"task #{index + 1} has no id", file=source, field="id")
    tid = ident(raw["id"], source, None, "id")
    no_unknown(raw, FIELD_NAMES, source, tid)
    values: dict[str, Any] = {}
    for f in TASK_FIELDS:
        if f.name in raw:
            v = raw[f.name]
        else:
            v = defaults.get(f.name) if f.in_defaults and defaults else None
        values[f.name] = f.default if v is None else f.check(v, source, tid, f.name)
    return TaskSpec(id=tid, **values)


def task_to_dict(spec: TaskSpec) -> dict[str, Any]:
    """The JSON form of a task (etcd): ``id`` first, then each field that is
    not its default (``always_stored`` fields always)."""
    d: dict[str, Any] = {"id": spec.id}
    for f in TASK_FIELDS:
        v = getattr(spec, f.name)
        if f.always_stored or v != f.default:
            d[f.name] = f.store(v)
    return d


def task_from_stored(d: Mapping[str, Any]) -> TaskSpec:
    """Decode :func:`task_to_dict`'s form; missing fields take defaults,
    unknown ones are ignored (a newer writer does not break an older reader)."""
    return TaskSpec(
        id=d["id"], **{f.name: f.load(d[f.name]) if f.name in d else f.default for f in TASK_FIELDS}
    )


def compact(d: Mapping[str, Any]) -> dict[str, Any]:
    """``d`` without its unset entries (``None``, ``""``, empty lists): a wire
    message's zero values become absent, so the schema's defaults apply."""
    return {k: v for k, v in d.items() if v is not None and v != "" and v != []}
