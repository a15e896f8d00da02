"""Regenerate the committed Python code for proto/workhive/v1/*.proto.

Usage: ``python tools/gen_protos.py [--out DIR]`` (default: ``proto/``, in place).
``tests/unit/test_protos_fresh.py`` generates into a temp dir and fails when
the committed files differ. grpcio-tools and mypy-protobuf are pinned in
pyproject.toml so the output is reproducible.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
SOURCES = sorted((PROTO_ROOT / "workhive" / "v1").glob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Run protoc (grpcio-tools) with the mypy-protobuf plugins into ``out``."""
    from grpc_tools import protoc  # dev dependency, imported lazily

    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("protoc-gen-mypy_grpc") is None:
        raise SystemExit("protoc-gen-mypy_grpc not found: install the dev extra (mypy-protobuf)")
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *[str(p.relative_to(PROTO_ROOT)) for p in SOURCES],
    ]
    cwd = os.getcwd()
    os.chdir(PROTO_ROOT)
    try:
        code = protoc.main(args)
    finally:
        os.chdir(cwd)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    return sorted((out / "workhive" / "v1").glob("*_pb2*.py*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    ns = parser.parse_args()
    for path in generate(ns.out.resolve()):
        print(path.relative_to(ns.out.resolve()))


if __name__ == "__main__":
    main()
