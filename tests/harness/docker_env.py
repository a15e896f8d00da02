"""Whether Docker-based tests can run, and what to do when they cannot.

Docker tests skip with a clear reason when no daemon answers, unless
``WORKHIVE_REQUIRE_DOCKER=1`` (set by ``.ci/run``), in which case they fail.
"""

from __future__ import annotations

import os
import subprocess

import pytest

ETCD_IMAGE = os.environ.get("WORKHIVE_ETCD_IMAGE", "workhive-etcd:3.5")


def docker_problem() -> str | None:
    """None when the daemon answers and the etcd image exists, else why not."""
    try:
        r = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker CLI unusable: {exc}"
    if r.returncode != 0:
        return "no Docker daemon answers (start dockerd, see .ci/run)"
    r = subprocess.run(["docker", "image", "inspect", ETCD_IMAGE], capture_output=True, timeout=20)
    if r.returncode != 0:
        return f"image {ETCD_IMAGE} missing: run tools/build_etcd_image.sh"
    return None


def require_docker() -> None:
    """Skip (or fail under WORKHIVE_REQUIRE_DOCKER=1) when Docker is unusable."""
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("WORKHIVE_REQUIRE_DOCKER") == "1":
        pytest.fail(f"WORKHIVE_REQUIRE_DOCKER=1 but {problem}")
    pytest.skip(problem)
