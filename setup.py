"""Packages of the wheel: every folder under the folders ``pyproject.toml``
maps (``[tool.setuptools.package-dir]``), so a new sub-package, or a folder of
package data such as ``static/`` (file types in ``[tool.setuptools.package-data]``),
ships without editing a list. Everything else about the build is in ``pyproject.toml``."""

import tomllib
from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).resolve().parent
PACKAGE_DIR: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
    "setuptools"
]["package-dir"]

setup(
    packages=[
        f"{name}.{sub}" if sub else name
        for name, folder in PACKAGE_DIR.items()
        for sub in ["", *find_namespace_packages(folder, exclude=["*__pycache__*"])]
        if not (sub and f"{name}.{sub}" in PACKAGE_DIR)
    ]
)
