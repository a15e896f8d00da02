"""The list of sub-commands ``workhive`` offers (only those that exist)."""

from __future__ import annotations

from collections.abc import Callable

import typer

REGISTRARS: list[Callable[[typer.Typer], None]] = []
