"""Runtime dependencies import together (the environment facts of docs/design.md)."""

from __future__ import annotations

import importlib.metadata as md


def test_etcd3_imports_with_current_protobuf() -> None:
    import etcd3
    import google.protobuf

    assert int(google.protobuf.__version__.split(".")[0]) >= 4
    assert hasattr(etcd3, "client")


def test_etcd3_comes_from_the_maintained_fork_only() -> None:
    names = {d.metadata["Name"].lower() for d in md.distributions()}
    assert "python3-etcd3" in names
    assert "etcd3" not in names, "PyPI etcd3 0.12 must never be installed beside python3-etcd3"


def test_top_level_import_names_do_not_collide() -> None:
    import workhive

    # The wheel's own file list: tests/unit/test_packaging.py.
    assert md.distribution("workhive").read_text("top_level.txt") == "workhive\n"
    assert workhive.__version__
