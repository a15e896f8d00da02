"""Where the Standard Task Graph set lives: beside the repository, not in it
(``../shared/data/stg``). Tests that read it skip, naming the path, when a
checkout has no such sibling."""

from __future__ import annotations

from pathlib import Path

import pytest

STG = Path(__file__).resolve().parents[3] / "shared" / "data" / "stg"

needs_stg = pytest.mark.skipif(
    not STG.is_dir(), reason=f"the STG data set is not beside the repository (no {STG})"
)
