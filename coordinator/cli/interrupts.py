"""Stop signals that never land inside a gRPC call.

A ``KeyboardInterrupt`` raised while a blocking gRPC call is in flight can
leave the channel unable to close: the process then hangs at exit
(grpc/grpc#19973, seen as ``workhive up`` ignoring a Ctrl-C now and then).
``Interrupts`` turns SIGINT, SIGTERM and SIGHUP into ``KeyboardInterrupt``
at once everywhere except inside ``calls()``: there the signal is noted and
raised when the call returns. Keep the calls inside short (bounded
deadlines), so a stop still takes effect within one call.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupts:
    """The process's stop-signal handler (install once, from the main thread)."""

    def __init__(self) -> None:
        self._deferring = 0
        self._pending = False

    def install(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        for sig in signals:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._deferring:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def calls(self) -> Iterator[None]:
        """A region of gRPC calls: a stop signal arriving inside it is raised
        as ``KeyboardInterrupt`` when the region ends."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if self._pending and not self._deferring:
            self._pending = False
            raise KeyboardInterrupt
