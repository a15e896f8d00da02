"""Frames: paced, and incremental frames equal a full recomputation."""

from __future__ import annotations

import asyncio

from tests.dashboard._fakes import FakeNode, chain_state, claim, run_async, succeed
from workhive.coordinator.dashboard.model import Model
from workhive.coordinator.dashboard.views import project_states, task_row
from workhive.coordinator.model import TaskKey


def test_a_frame_is_reused_within_the_interval() -> None:
    async def main() -> None:
        model = Model(FakeNode(chain_state()), min_interval=60.0)  # type: ignore[arg-type]
        try:
            assert await model.frame() is await model.frame()
        finally:
            model.close()

    run_async(main)


def test_rows_kept_across_frames_equal_rows_made_afresh() -> None:
    async def main() -> None:
        node = FakeNode(chain_state(n=5))
        model = Model(node, min_interval=0.0)  # type: ignore[arg-type]
        try:
            first = await model.frame()
            await model.run(lambda: model.rows_of(first, "p"))  # start keeping rows
            succeed(node.cs, TaskKey("p", "t0"))
            claim(node.cs, TaskKey("p", "t1"), "a2", started=True)
            await asyncio.sleep(10 * first.cost + 0.05)  # the first frame is due again
            last = await model.frame()
            assert last.touched is not None  # incremental
            assert last.states == project_states(last.snap)
            rows = await model.run(lambda: dict(model.rows_of(last, "p")))
            lay = model.layout_of(last, "p")
            fresh = {
                t: task_row(last.snap, TaskKey("p", t), s, model.tracker, lay)
                for t, s in last.states["p"].items()
            }
            assert rows == fresh
            assert rows["t1"]["agent"] == "a2" and rows["t2"]["state"] == "pending"
        finally:
            model.close()

    run_async(main)
