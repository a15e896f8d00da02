"""The coordinator's GC policy (``coordinator/gc_pauses.py``): what survives a
full collection is frozen, so the next one walks only newer objects; a thaw
every ``thaw_every`` lets a full collection reclaim frozen cycles."""

from __future__ import annotations

import gc
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
    gc.unfreeze()
    yield
    gc.unfreeze()


def _cycle() -> list[object]:
    a: list[object] = []
    a.append(a)
    return a


def test_the_survivors_of_a_full_collection_are_frozen_at_the_next_step(unfrozen: None) -> None:
    policy = FreezeAfterFull(clock=Clock())
    gc.callbacks.append(policy._on_gc)
    try:
        policy.step()
        assert gc.get_freeze_count() == 0  # no full collection yet: nothing to freeze
        gc.collect()
        policy.step()
        assert policy.freezes == 1
        assert gc.get_freeze_count() > 0
    finally:
        gc.callbacks.remove(policy._on_gc)


def test_a_young_collection_freezes_nothing(unfrozen: None) -> None:
    policy = FreezeAfterFull(clock=Clock())
    gc.callbacks.append(policy._on_gc)
    try:
        gc.collect(0)
        gc.collect(1)
        policy.step()
        assert (policy.freezes, gc.get_freeze_count()) == (0, 0)
    finally:
        gc.callbacks.remove(policy._on_gc)


def test_a_thaw_after_the_interval_lets_a_full_collection_reclaim_frozen_cycles(
    unfrozen: None,
) -> None:
    clock = Clock()
    policy = FreezeAfterFull(thaw_every=600.0, clock=clock)
    gc.callbacks.append(policy._on_gc)
    try:
        cycle = _cycle()
        gc.collect()
        policy.step()
        del cycle  # garbage now, but frozen: a collection does not see it
        assert gc.collect() == 0
        clock.now = 599.0
        policy.step()
        assert policy.thaws == 0
        clock.now = 600.0
        policy.step()
        assert policy.thaws == 1
        assert gc.get_freeze_count() == 0
        assert gc.collect() >= 1
    finally:
        gc.callbacks.remove(policy._on_gc)


def test_every_collection_is_observed_by_generation(unfrozen: None) -> None:
    metrics = Metrics(CollectorRegistry())
    policy = FreezeAfterFull(metrics.gc_pauses, clock=Clock())
    gc.callbacks.append(policy._on_gc)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(policy._on_gc)
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
    policy = FreezeAfterFull(metrics.gc_pauses, freeze=False, clock=Clock())
    gc.callbacks.append(policy._on_gc)
    try:
        gc.collect()
        policy.step()
    finally:
        gc.callbacks.remove(policy._on_gc)
    assert (policy.freezes, gc.get_freeze_count()) == (0, 0)
    assert metrics.registry.get_sample_value("workhive_gc_pause_seconds_count", {"generation": "2"})
