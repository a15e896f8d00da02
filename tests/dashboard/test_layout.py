"""DAG layout: layers, order, critical path (pure)."""

from __future__ import annotations

from workhive.coordinator.dashboard.layout import layout
from workhive.coordinator.model import TaskSpec


def specs(*items: tuple[str, tuple[str, ...], float | None]) -> dict[str, TaskSpec]:
    return {t: TaskSpec(t, depends_on=d, estimate=e) for t, d, e in items}


def test_layer_is_the_longest_chain_above_a_task() -> None:
    lay = layout(specs(("a", (), 1), ("b", ("a",), 1), ("c", ("a", "b"), 1), ("d", (), 1)))
    assert lay.layer == {"a": 0, "d": 0, "b": 1, "c": 2}
    assert lay.layers == 3


def test_order_lists_every_task_layer_by_layer() -> None:
    lay = layout(specs(("a", (), 1), ("b", ("a",), 1), ("c", (), 1), ("d", ("c",), 1)))
    assert sorted(lay.order) == ["a", "b", "c", "d"]
    assert [lay.layer[t] for t in lay.order] == sorted(lay.layer[t] for t in lay.order)


def test_critical_path_follows_the_largest_sum_of_estimates() -> None:
    lay = layout(
        specs(("a", (), 1), ("slow", ("a",), 10), ("fast", ("a",), 1), ("end", ("slow", "fast"), 1))
    )
    assert lay.critical_path == ["a", "slow", "end"]
    assert lay.critical_seconds == 12


def test_a_task_without_estimate_counts_one_second() -> None:
    lay = layout(specs(("a", (), None), ("b", ("a",), None)))
    assert lay.critical_seconds == 2


def test_empty_project_has_no_layers() -> None:
    lay = layout({})
    assert lay.layers == 0 and lay.critical_path == []
