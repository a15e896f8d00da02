"""The wheel is built from the folder-to-package map in ``pyproject.toml``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "proto/workhive": "workhive",
    "coordinator": "workhive/coordinator",
    "agent": "workhive/agent",
    "client": "workhive/client",
}
SHIPPED = {".py", ".pyi", ".typed", ".html", ".js", ".css", ".svg", ".json", ".png", ".ico"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (whl,) = out.glob("workhive-*.whl")
    with zipfile.ZipFile(whl) as z:
        return set(z.namelist())


def _tracked(folder: str) -> list[str]:
    r = subprocess.run(
        ["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return r.stdout.split()


def test_every_source_and_static_file_ships_under_its_package_name(wheel_files: set[str]) -> None:
    for folder, package in FOLDERS.items():
        for path in _tracked(folder):
            if Path(path).suffix in SHIPPED:
                assert package + path.removeprefix(folder) in wheel_files, path


def test_proto_sources_stay_out_of_the_wheel(wheel_files: set[str]) -> None:
    assert not [f for f in wheel_files if f.endswith(".proto")]
    assert "workhive/v1/client_pb2.pyi" in wheel_files


def test_the_only_top_level_name_is_workhive(wheel_files: set[str]) -> None:
    tops = {f.split("/")[0] for f in wheel_files}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"workhive"}
