"""structlog configuration: console for people, JSON in production.

``configure_logging("auto")`` renders for humans when stderr is a terminal and
JSON lines otherwise. Logs go to stderr so stdout stays for data (``--json``).
Values of keys that look like secrets are redacted before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = ("token", "password", "secret", "authorization", "private_key", "credential")
REDACTED = "***"


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace the value of any secret-looking key."""
    for key in list(event):
        if any(s in key.lower() for s in SECRET_KEYS):
            event[key] = REDACTED
    return event


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog once for this process (idempotent)."""
    json_out = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    if json_out:
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
