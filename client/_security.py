"""Channel credentials and bearer tokens from files (TLS, mutual TLS, tokens:
docs/security.md)."""

from __future__ import annotations

from pathlib import Path

import grpc

from workhive.client._errors import WorkhiveError


class CredentialsError(WorkhiveError):
    """A TLS or token file is missing, unreadable or empty, or options clash."""


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CredentialsError(f"{what}: cannot read {path}: {exc.strerror}") from None


def channel_credentials(
    ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
) -> grpc.ChannelCredentials:
    """TLS to the coordinators: ``ca`` verifies their certificate (the system
    roots when ``None``); ``cert`` and ``key`` (together) are this client's
    certificate for mutual TLS."""
    if bool(cert) != bool(key):
        raise CredentialsError("tls_cert and tls_key go together")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "tls_ca") if ca else None,
        private_key=_read(key, "tls_key") if key else None,
        certificate_chain=_read(cert, "tls_cert") if cert else None,
    )


def read_token_file(path: str | Path) -> str:
    """A bearer token from a file: its first line, whitespace stripped."""
    text = _read(path, "token_file").decode("utf-8", "replace").strip()
    token = text.splitlines()[0].strip() if text else ""
    if not token:
        raise CredentialsError(f"token_file: {path} is empty")
    return token
