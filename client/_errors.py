"""Errors the client raises: one base class, a subclass per thing a caller
can act on. ``code`` is the gRPC status code name, ``reason`` the workhive
error reason (docs/client.md lists them)."""

from __future__ import annotations

import grpc


class WorkhiveError(RuntimeError):
    """A call failed for good (after the retries that are safe)."""

    def __init__(self, message: str, *, code: str = "UNKNOWN", reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        extra = self.code + (f", {self.reason}" if self.reason else "")
        return f"{self.args[0]} ({extra})"


class Unavailable(WorkhiveError):
    """No coordinator answered, no leader is elected, or the coordinator
    could not reach etcd: retrying later may succeed."""


class InvalidProject(WorkhiveError):
    """The project was rejected (a bad field, a cycle, too large); nothing was written."""


class ProjectExists(WorkhiveError):
    """A project with this id already exists."""


class UnknownProject(WorkhiveError):
    """No project with this id."""


class ProjectRunning(WorkhiveError):
    """The project still has unfinished tasks (a delete needs it finished)."""


class AccessDenied(WorkhiveError):
    """The credentials were refused (UNAUTHENTICATED) or lack the right (PERMISSION_DENIED)."""


class WaitTimeout(WorkhiveError, TimeoutError):
    """``wait`` gave up before the project finished."""


def from_rpc(err: grpc.RpcError, reason: str) -> WorkhiveError:
    """The client error for a failed call, by status code and reason."""
    code = err.code()
    details = err.details() or code.name.lower()
    kind: type[WorkhiveError] = WorkhiveError
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        kind = Unavailable
    elif code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        kind = AccessDenied
    elif code == grpc.StatusCode.ALREADY_EXISTS:
        kind = ProjectExists
    elif code == grpc.StatusCode.NOT_FOUND and reason == "UNKNOWN_PROJECT":
        kind = UnknownProject
    elif code == grpc.StatusCode.FAILED_PRECONDITION and reason == "PROJECT_RUNNING":
        kind = ProjectRunning
    elif code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
        kind = InvalidProject
    return kind(details, code=code.name, reason=reason)
