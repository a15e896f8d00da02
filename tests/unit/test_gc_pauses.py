"""The coordinator's GC policy (``coordinator/gc_pauses.py``): what survives a
full collection is frozen, so the next one walks only newer objects; a thaw
every ``thaw_every`` lets a full collection reclaim frozen cycles."""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from workhive.coordinator.gc_pauses import FreezeAfterFull
from workhive.coordinator.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Nothing frozen before or after, and no automatic collection meanwhile
    (other threads' allocations must not run one between two steps)."""
    enabled = gc.isenabled()
    gc.disable()
    gc.unfreeze()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


@contextlib.contextmanager
def watching(policy: FreezeAfterFull) -> Iterator[FreezeAfterFull]:
    """The policy's collector callback, without its thread (tests call ``step``)."""
    gc.callbacks.append(policy._on_gc)
    try:
        yield policy
    finally:
        gc.callbacks.remove(policy._on_gc)


class _Node:
    me: _Node


def _cycle() -> _Node:
    n = _Node()
    n.me = n
    return n


def test_the_survivors_of_a_full_collection_are_frozen_at_the_next_step(unfrozen: None) -> None:
    with watching(FreezeAfterFull(clock=Clock())) as policy:
        policy.step()
        assert gc.get_freeze_count() == 0  # no full collection yet: nothing to freeze
        gc.collect()
        policy.step()
        assert policy.freezes == 1
        assert gc.get_freeze_count() > 0


def test_a_young_collection_freezes_nothing(unfrozen: None) -> None:
    with watching(FreezeAfterFull(clock=Clock())) as policy:
        gc.collect(0)
        gc.collect(1)
        policy.step()
        assert (policy.freezes, gc.get_freeze_count()) == (0, 0)


def test_a_thaw_after_the_interval_lets_a_full_collection_reclaim_frozen_cycles(
    unfrozen: None,
) -> None:
    clock = Clock()
    with watching(FreezeAfterFull(thaw_every=600.0, clock=clock)) as policy:
        cycle = _cycle()
        gc.collect()
        policy.step()
        alive = weakref.ref(cycle)
        del cycle  # garbage now, but frozen: a collection does not see it
        gc.collect()
        assert alive() is not None
        clock.now = 599.0
        policy.step()
        assert policy.thaws == 0
        clock.now = 600.0
        policy.step()
        assert policy.thaws == 1
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert alive() is None


def test_every_collection_is_observed_by_generation(unfrozen: None) -> None:
    metrics = Metrics(CollectorRegistry())
    with watching(FreezeAfterFull(metrics.gc_pauses, clock=Clock())):
        gc.collect()
    count = metrics.registry.get_sample_value(
        "workhive_gc_pause_seconds_count", {"generation": "2"}
    )
    assert count is not None and count >= 1


def test_install_then_uninstall_leaves_nothing_frozen_and_no_callback(unfrozen: None) -> None:
    policy = FreezeAfterFull()
    policy.install()
    gc.collect()
    policy.uninstall()
    assert policy._on_gc not in gc.callbacks
    assert gc.get_freeze_count() == 0


def test_with_freezing_off_collections_are_observed_and_nothing_is_frozen(unfrozen: None) -> None:
    metrics = Metrics(CollectorRegistry())
    with watching(FreezeAfterFull(metrics.gc_pauses, freeze=False, clock=Clock())) as policy:
        gc.collect()
        policy.step()
    assert (policy.freezes, gc.get_freeze_count()) == (0, 0)
    assert metrics.registry.get_sample_value("workhive_gc_pause_seconds_count", {"generation": "2"})


def test_install_freezes_what_the_process_made_before_serving(unfrozen: None) -> None:
    policy = FreezeAfterFull()
    policy.install()
    try:
        assert policy.freezes == 1
        assert gc.get_freeze_count() > 0  # the first full collection will not walk them
    finally:
        policy.uninstall()


def test_a_full_collection_runs_after_full_every_middle_collections(unfrozen: None) -> None:
    metrics = Metrics(CollectorRegistry())
    with watching(FreezeAfterFull(metrics.gc_pauses, full_every=3, clock=Clock())) as policy:
        gc.collect()
        policy.step()
        gc.collect(1)
        gc.collect(1)
        policy.step()
        assert policy.freezes == 1  # two middle collections: not yet
        gc.collect(1)
        policy.step()
        assert policy.freezes == 2
        assert gc.get_count()[2] == 0  # the full collection ran
    fulls = metrics.registry.get_sample_value(
        "workhive_gc_pause_seconds_count", {"generation": "2"}
    )
    assert fulls == 2
