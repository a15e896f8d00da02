"""The typed inputs of the MCP tools (their JSON schemas come from these)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from workhive.client import Task


class TaskInput(BaseModel):
    """One task of ``create_project``, ``add_tasks`` or ``complete(new_tasks=...)``."""

    id: str = Field(description="Task id, unique in the project (no '/').")
    depends_on: list[str] = Field(default_factory=list, description="Ids this task waits for.")
    blocks: list[str] = Field(
        default_factory=list,
        description="Existing unstarted tasks that must now also wait for this one.",
    )
    priority: int = Field(5, description="0-10; 8 and above are never moved between agents.")
    estimate: float | None = Field(None, description="Expected seconds (learned when absent).")
    kind: str = ""
    branch: str = Field("", description="Affinity group: one agent tends to keep a branch.")
    requires: list[str] = Field(
        default_factory=list, description="Capabilities an agent needs to claim it."
    )
    payload: Any = Field(None, description="Any JSON: what the task is about.")
    max_attempts: int = 3

    def to_task(self, default_branch: str = "") -> Task:
        return Task(
            id=self.id,
            depends_on=tuple(self.depends_on),
            priority=self.priority,
            estimate=self.estimate,
            kind=self.kind,
            branch=self.branch or default_branch,
            requires=frozenset(self.requires),
            payload=self.payload,
            max_attempts=self.max_attempts,
            blocks=tuple(self.blocks),
        )
