"""The curated public API of the etcd layer (lesson 4): no accidental exports."""

from __future__ import annotations

import workhive.coordinator.etcd as layer


def test_exported_members() -> None:
    public = {n for n in dir(layer) if not n.startswith("_")}
    # "snapshot" the function shadows snapshot the module, so it is not listed here.
    modules = set(
        [
            "claims",
            "client",
            "codec",
            "election",
            "errors",
            "keys",
            "session",
            "store",
            "submit",
            "txn",
            "types",
            "watch",
        ]
    )
    assert public - modules == set(layer.__all__)
    for name in layer.__all__:
        if name == "DEFAULT_PREFIX":
            continue
        assert getattr(layer, name).__module__.startswith("workhive.coordinator.etcd"), name
