"""Where a coordinator listens: a malformed address or port is a settings
error, and the open (token-less) APIs stay on loopback unless opted in."""

from __future__ import annotations

from pathlib import Path

import pytest

from workhive.coordinator.settings import SettingsError, load_settings


def _load(**flags: object) -> object:
    return load_settings(flags, config_file=None, env={})


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1", ":50051", "host:port"])
def test_a_malformed_listen_address_is_refused(listen: str) -> None:
    with pytest.raises(SettingsError, match="listen"):
        _load(listen=listen)


def test_listening_beyond_loopback_without_tokens_is_refused() -> None:
    with pytest.raises(SettingsError) as info:
        _load(listen="0.0.0.0:50051")
    assert "auth_tokens_file" in str(info.value)
    assert "--insecure-listen-anywhere" in str(info.value)


def test_listening_beyond_loopback_is_allowed_when_opted_in() -> None:
    s = _load(listen="0.0.0.0:50051", insecure_listen_anywhere=True)
    assert s.listen == "0.0.0.0:50051"  # type: ignore[attr-defined]


def test_listening_beyond_loopback_is_allowed_with_tokens(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("agent-1:aaaaaaaaaaaaaaaaaaaa\n")
    s = _load(listen="[::]:50051", auth_tokens_file=str(tokens))
    assert s.listen == "[::]:50051"  # type: ignore[attr-defined]


def test_loopback_needs_no_opt_in() -> None:
    for listen in ("127.0.0.1:0", "localhost:50051", "[::1]:50051"):
        _load(listen=listen)
