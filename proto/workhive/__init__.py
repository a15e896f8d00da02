"""workhive: a leader-elected, crash-safe task-graph coordinator on etcd.

Subpackages:

- ``workhive.v1`` -- generated protobuf/gRPC code of the wire contract
  (sources in ``proto/workhive/v1/*.proto``); used only at the gRPC edge.
- ``workhive.coordinator`` -- the server: pure scheduling core, etcd state
  layer, election, gRPC services, leader loops, metrics, and the CLI.
- ``workhive.agent`` -- the client SDK and the ``--exec`` runner.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("workhive")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = ["__version__"]
