"""The single ``workhive`` command line.

Each sub-command lives in its own module exporting ``register(app)``; this
module only assembles them. Rich output (progress, tables, errors) goes to
stderr; stdout is for data (``--json``). Exit codes: see ``exit_codes``.
"""

from __future__ import annotations

import sys

import typer

from workhive import __version__

app = typer.Typer(
    name="workhive",
    help="Run a dependency graph of tasks across many worker agents, coordinated through etcd.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"workhive {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """workhive: leader-elected, crash-safe task-graph coordination on etcd."""


def _register_all() -> None:
    from workhive.coordinator.cli import commands

    for register in commands.REGISTRARS:
        register(app)


def main() -> None:
    """Console-script entry point."""
    from workhive.coordinator.local_cluster.processes import adopt_parent_death

    adopt_parent_death()
    _register_all()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
