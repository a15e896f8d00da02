"""The list of sub-commands ``workhive`` offers (only those that exist)."""

from __future__ import annotations

from collections.abc import Callable

import typer

from workhive.coordinator.cli import agent, coordinator, living, projects, simulate, up

REGISTRARS: list[Callable[[typer.Typer], None]] = [
    up.register,
    coordinator.register,
    agent.register,
    projects.register,
    living.register,
    simulate.register,
]
