"""The curated public API of the etcd layer (lesson 4): no accidental exports."""

from __future__ import annotations

import types

import workhive.coordinator.etcd as layer


def test_exported_members() -> None:
    # Submodules become attributes once anything imports them; they are not exports.
    public = {
        n
        for n in dir(layer)
        if not n.startswith("_") and not isinstance(getattr(layer, n), types.ModuleType)
    }
    assert public == set(layer.__all__)
    for name in layer.__all__:
        if name == "DEFAULT_PREFIX":
            continue
        assert getattr(layer, name).__module__.startswith("workhive.coordinator.etcd"), name
