"""The workhive client: submit, inspect, wait for, watch and cancel projects.

    from workhive.client import Client, Project, Task

    with Client("127.0.0.1:50051") as c:
        c.submit(Project("demo", (Task("a"), Task("b", depends_on=("a",)))))
        print(c.wait("demo", timeout=60).counts)

Domain types in and out (frozen dataclasses, never protobuf); the client
follows the leader by itself. Guide: docs/client.md.
"""

from workhive.client._client import Client, error_reason
from workhive.client._errors import (
    AccessDenied,
    InvalidProject,
    ProjectExists,
    ProjectRunning,
    Unavailable,
    UnknownProject,
    WaitTimeout,
    WorkhiveError,
)
from workhive.client._security import CredentialsError, channel_credentials, read_token_file
from workhive.client._types import (
    AgentStatus,
    ClusterStatus,
    Leader,
    Project,
    ProjectEvent,
    ProjectLike,
    ProjectStatus,
    RetryBackoff,
    Submitted,
    Task,
    TaskLike,
    TasksAdded,
    TaskState,
    TaskStatus,
)

__all__ = [
    "AccessDenied",
    "AgentStatus",
    "Client",
    "ClusterStatus",
    "CredentialsError",
    "InvalidProject",
    "Leader",
    "Project",
    "ProjectEvent",
    "ProjectExists",
    "ProjectLike",
    "ProjectRunning",
    "ProjectStatus",
    "RetryBackoff",
    "Submitted",
    "Task",
    "TaskLike",
    "TaskState",
    "TaskStatus",
    "TasksAdded",
    "Unavailable",
    "UnknownProject",
    "WaitTimeout",
    "WorkhiveError",
    "channel_credentials",
    "error_reason",
    "read_token_file",
]
