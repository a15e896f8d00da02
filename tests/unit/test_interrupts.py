"""Stop signals wait for the gRPC call in flight (``cli.interrupts``)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from workhive.coordinator.cli.interrupts import Interrupts


@pytest.fixture
def interrupts() -> Iterator[Interrupts]:
    saved = signal.getsignal(signal.SIGTERM)
    i = Interrupts()
    i.install((signal.SIGTERM,))
    try:
        yield i
    finally:
        signal.signal(signal.SIGTERM, saved)


def test_a_stop_signal_outside_a_call_interrupts_at_once(interrupts: Interrupts) -> None:
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises long before this ends


def test_a_stop_signal_inside_a_call_is_raised_when_the_call_returns(
    interrupts: Interrupts,
) -> None:
    reached_the_end_of_the_call = False
    with pytest.raises(KeyboardInterrupt), interrupts.calls():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        reached_the_end_of_the_call = True
    assert reached_the_end_of_the_call


def test_nested_calls_raise_once_the_outermost_ends(interrupts: Interrupts) -> None:
    inner_done = False
    with pytest.raises(KeyboardInterrupt), interrupts.calls():
        with interrupts.calls():
            os.kill(os.getpid(), signal.SIGTERM)
        inner_done = True
    assert inner_done
