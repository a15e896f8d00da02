"""Exceptions of the etcd state layer. Nothing from grpc or etcd3 leaks out."""

from __future__ import annotations


class EtcdError(Exception):
    """Base class of every error raised by ``workhive.coordinator.etcd``."""


class EtcdUnavailable(EtcdError):
    """No endpoint answered within the deadline (after retries where allowed)."""


class AmbiguousResult(EtcdError):
    """A write may or may not have been applied (deadline hit after sending).

    Never retried blindly: callers resolve it by reading back.
    """


class FenceLost(EtcdError):
    """A fenced leader txn failed its term compare: this replica no longer leads."""


class LeaseLost(EtcdError):
    """The session's lease expired or was revoked."""


class Compacted(EtcdError):
    """A watch or read asked for a revision etcd has compacted away: re-list."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted (oldest available: {compact_revision})")
        self.compact_revision = compact_revision


class InvalidArgument(EtcdError):
    """A request etcd or this layer refused as malformed (e.g. TTL < 2 s)."""
