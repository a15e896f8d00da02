"""The workhive keyspace (docs/design.md, "etcd keyspace"), under a configurable prefix.

Layout (``P`` = prefix, default ``/workhive/``)::

    P election/<lease hex>           candidate id + address, on its session lease
    P agents/<agent-id>              registration, on the agent's lease
    P projects/<pid>/meta            written last by a submit (visibility)
    P projects/<pid>/tasks/<tid>     spec + durable state
    P claims/<pid>/<tid>             owner, attempt, started; on the owner's lease
    P results/<pid>/<tid>            outcome; written with the claim's deletion
    P barrier                        the leader's last barrier (``etcd.barrier``)

Project and task ids must not contain ``/`` (the loader enforces ids).
"""

from __future__ import annotations

from dataclasses import dataclass

from workhive.coordinator.etcd.errors import InvalidArgument
from workhive.coordinator.model import TaskKey

DEFAULT_PREFIX = "/workhive/"


def _check_id(kind: str, value: str) -> str:
    if not value or "/" in value:
        raise InvalidArgument(f"bad {kind} id {value!r}: must be non-empty without '/'")
    return value


@dataclass(frozen=True, slots=True)
class Keyspace:
    """Builds and parses every key workhive uses. Pure; no I/O."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix.endswith("/"):
            raise InvalidArgument(f"key prefix must end with '/': {self.prefix!r}")

    def _k(self, rest: str) -> bytes:
        return (self.prefix + rest).encode()

    @property
    def root(self) -> bytes:
        return self.prefix.encode()

    # election
    @property
    def election_prefix(self) -> bytes:
        return self._k("election/")

    def election(self, lease_id: int) -> bytes:
        return self._k(f"election/{lease_id:x}")

    @property
    def barrier(self) -> bytes:
        return self._k("barrier")

    # agents
    @property
    def agents_prefix(self) -> bytes:
        return self._k("agents/")

    def agent(self, agent_id: str) -> bytes:
        return self._k(f"agents/{_check_id('agent', agent_id)}")

    # projects and tasks
    @property
    def projects_prefix(self) -> bytes:
        return self._k("projects/")

    def project_prefix(self, pid: str) -> bytes:
        return self._k(f"projects/{_check_id('project', pid)}/")

    def meta(self, pid: str) -> bytes:
        return self._k(f"projects/{_check_id('project', pid)}/meta")

    def tasks_prefix(self, pid: str) -> bytes:
        return self._k(f"projects/{_check_id('project', pid)}/tasks/")

    def task(self, key: TaskKey) -> bytes:
        return self._k(f"projects/{key.project}/tasks/{key.task}")

    # claims and results
    @property
    def claims_prefix(self) -> bytes:
        return self._k("claims/")

    def claim(self, key: TaskKey) -> bytes:
        return self._k(f"claims/{key.project}/{key.task}")

    @property
    def results_prefix(self) -> bytes:
        return self._k("results/")

    def result(self, key: TaskKey) -> bytes:
        return self._k(f"results/{key.project}/{key.task}")

    def results_project_prefix(self, pid: str) -> bytes:
        return self._k(f"results/{_check_id('project', pid)}/")

    # parsing
    def classify(self, key: bytes) -> tuple[str, tuple[str, ...]]:
        """``(kind, parts)`` of a key under the prefix.

        kinds: ``election`` (lease hex), ``agent`` (id), ``meta`` (pid),
        ``task``/``claim``/``result`` (pid, tid); ``other`` for anything else.
        """
        s = key.decode()
        if not s.startswith(self.prefix):
            return "other", ()
        parts = tuple(s[len(self.prefix) :].split("/"))
        head = parts[0]
        if head == "election" and len(parts) == 2:
            return "election", parts[1:]
        if head == "agents" and len(parts) == 2:
            return "agent", parts[1:]
        if head == "projects" and len(parts) == 3 and parts[2] == "meta":
            return "meta", (parts[1],)
        if head == "projects" and len(parts) == 4 and parts[2] == "tasks":
            return "task", (parts[1], parts[3])
        if head == "claims" and len(parts) == 3:
            return "claim", parts[1:]
        if head == "results" and len(parts) == 3:
            return "result", parts[1:]
        return "other", parts
