"""Bearer tokens and who they belong to (``auth_tokens_file``, docs/security.md).

A token names one *identity*: an agent (its agent id) or a client with a
*role* and an optional *project prefix*:

- ``read``: ``GetStatus``, ``GetTask``, ``WatchProject``;
- ``submit``: ``read`` plus ``SubmitProject``;
- ``admin``: ``submit`` plus ``CancelProject`` (and every future write).

A client with a project prefix sees and touches only projects whose id starts
with it. The tokens file is a YAML/JSON mapping::

    agent-1: 9c1f...              # the agent with id agent-1
    agent-2: [old..., new...]     # a list: rotation
    "workhive-agent-*": ...       # an agent pool: any agent id with this prefix
    "*client*": 77ab...           # a client with role admin on every project
    clients:
      ci-bot: {token: ..., role: submit, projects: "ci-"}
      dashboard: {token: [..., ...], role: read}

or plain lines ``identity:token`` (``#`` starts a comment; ``*client*`` is the
admin client, any other identity an agent). Tokens are kept only as SHA-256
digests and never logged; every token is at least 16 characters, and one
token belongs to one identity.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import yaml

log = structlog.get_logger("workhive.security")

ADMIN_CLIENT = "*client*"
ROLES = ("read", "submit", "admin")
MIN_TOKEN = 16
MAX_TOKEN_FILE = 4 * 1024 * 1024
RELOAD_EVERY = 2.0  # seconds between checks of the tokens file's mtime


class SecurityError(ValueError):
    """A security setting or file is unusable (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token belongs to: an agent, or a client with a role and a prefix."""

    name: str
    agent: bool
    role: str = ""
    projects: str = ""  # clients: the project-id prefix they may use ("" = all)

    def may(self, role: str) -> bool:
        """True if this client's role includes ``role``."""
        return not self.agent and ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, project_id: str) -> bool:
        return project_id.startswith(self.projects)

    def is_agent(self, agent_id: str) -> bool:
        """True if this agent identity may act as ``agent_id`` (a name ending
        in ``*`` is a pool: every id with that prefix)."""
        if not self.agent:
            return False
        if self.name.endswith("*"):
            return agent_id.startswith(self.name[:-1]) and len(agent_id) > len(self.name) - 1
        return agent_id == self.name


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _tokens(value: Any, who: str, source: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    for token in items:
        if not isinstance(token, str):
            raise SecurityError(f"{source}: the token of {who!r} must be a string")
    return items


def _client(name: str, entry: Any, source: str) -> tuple[Identity, list[str]]:
    if not isinstance(entry, dict):
        raise SecurityError(f"{source}: clients.{name} must be a mapping (token, role, projects)")
    unknown = set(entry) - {"token", "role", "projects"}
    if unknown:
        raise SecurityError(f"{source}: clients.{name}: unknown field {sorted(unknown)[0]!r}")
    role = entry.get("role", "read")
    if role not in ROLES:
        raise SecurityError(f"{source}: clients.{name}.role must be one of {', '.join(ROLES)}")
    projects = entry.get("projects", "")
    if not isinstance(projects, str):
        raise SecurityError(f"{source}: clients.{name}.projects must be a project-id prefix")
    if "token" not in entry:
        raise SecurityError(f"{source}: clients.{name} has no token")
    return Identity(name, False, role, projects), _tokens(entry["token"], name, source)


def _named(name: str) -> Identity:
    return Identity(name, False, "admin") if name == ADMIN_CLIENT else Identity(name, True)


def parse_tokens(text: str, source: str = "auth_tokens_file") -> dict[bytes, Identity]:
    """Token digests to identities, from a tokens file's text (see module doc)."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    pairs: list[tuple[Identity, str]] = []
    if lines and all(":" in ln and " " not in ln and "\t" not in ln for ln in lines):
        for ln in lines:
            name, _, token = ln.partition(":")
            pairs.append((_named(name), token))
    else:
        try:
            data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError):
            raise SecurityError(f"{source}: neither YAML/JSON nor identity:token lines") from None
        if not isinstance(data, dict):
            raise SecurityError(f"{source}: expected a mapping of identity to token")
        for key, value in data.items():
            if key == "clients" and isinstance(value, dict):
                for name, entry in value.items():
                    client, tokens = _client(str(name), entry, source)
                    pairs += [(client, t) for t in tokens]
            else:
                pairs += [(_named(str(key)), t) for t in _tokens(value, str(key), source)]
    out: dict[bytes, Identity] = {}
    for ident, token in pairs:
        if not ident.name or len(token) < MIN_TOKEN:
            raise SecurityError(
                f"{source}: identity {ident.name!r}: tokens must be at least {MIN_TOKEN} characters"
            )
        d = _digest(token)
        if d in out and out[d] != ident:
            raise SecurityError(f"{source}: one token is given to two identities")
        out[d] = ident
    return out


def read_file(path: str, setting: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SecurityError(f"{setting}: cannot read {path} ({exc.strerror})") from None


class TokenStore:
    """The tokens of ``auth_tokens_file``, re-read when the file changes
    (a rotated Kubernetes Secret); a file that became unreadable or invalid
    keeps the previous tokens."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._mtime = 0.0
        self._checked = 0.0
        self._tokens: dict[bytes, Identity] = {}
        self._load(initial=True)

    def _load(self, *, initial: bool = False) -> None:
        try:
            st = os.stat(self.path)
            if st.st_size > MAX_TOKEN_FILE:
                raise SecurityError(f"auth_tokens_file: {self.path} is larger than 4 MiB")
            tokens = parse_tokens(read_file(self.path, "auth_tokens_file").decode("utf-8"))
        except (OSError, SecurityError, UnicodeDecodeError) as exc:
            if initial:
                raise SecurityError(str(exc)) from None
            log.warning("tokens file not reloaded: keeping the previous tokens", error=str(exc))
            return
        self._tokens, self._mtime = tokens, st.st_mtime
        if not initial:
            log.info("tokens file reloaded", identities=len(set(tokens.values())))

    def identity(self, token: str) -> Identity | None:
        """Who ``token`` belongs to (``None``: unknown)."""
        now = self._clock()
        with self._lock:
            if now - self._checked >= RELOAD_EVERY:
                self._checked = now
                try:
                    changed = os.stat(self.path).st_mtime != self._mtime
                except OSError:
                    changed = False
                if changed:
                    self._load()
            return self._tokens.get(_digest(token))
