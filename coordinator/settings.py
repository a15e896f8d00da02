"""Typed settings for coordinators and the CLI.

Precedence, highest first: command-line flags > environment (``WORKHIVE_*``,
plus the seed's ``WORK_STEALING_ENABLED``, ``WORK_STEALING_THRESHOLD`` and
``WORK_STEALING_INTERVAL`` in milliseconds) > a settings file (YAML or JSON,
``--config`` or ``WORKHIVE_CONFIG``) > defaults.

Every value is parsed and checked here; an invalid one raises
``SettingsError`` naming the setting and where it came from. Nothing else in
the codebase reads the environment for configuration.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

ENV_PREFIX = "WORKHIVE_"
# The seed (claude-flow) names, kept for users migrating from it.
SEED_ENV = {
    "WORK_STEALING_ENABLED": "stealing_enabled",
    "WORK_STEALING_THRESHOLD": "steal_threshold",
    "WORK_STEALING_INTERVAL": "steal_interval_ms",
}


class SettingsError(ValueError):
    """An invalid setting; the message names it and its source."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a coordinator (and the CLI around it) can be told.

    Durations are in seconds unless the name says ``_ms``.
    """

    etcd: tuple[str, ...] = ("http://127.0.0.1:2379",)
    prefix: str = "/workhive/"
    listen: str = "127.0.0.1:50051"
    advertise: str = ""
    coordinator_id: str = ""
    metrics_port: int = 0  # 0 = no metrics endpoint
    dashboard_port: int = 0  # 0 = no web dashboard (docs/dashboard.md)
    dashboard_listen: str = "127.0.0.1"  # address the dashboard binds
    dashboard_peers: tuple[str, ...] = ()  # other replicas' dashboard URLs (page failover)
    election_ttl: int = 5
    agent_lease_ttl: int = 6
    heartbeat_interval_ms: int = 1000
    fast_failover: bool = True
    warm_standby: bool = True  # followers keep the cluster mirror current for a fast takeover
    agent_grace: float = 1.5  # seconds a broken stream may stay away before its lease is revoked
    stealing_enabled: bool = True
    steal_threshold: int = 3
    steal_interval_ms: int = 5000
    max_steal_batch: int = 5
    priority_threshold: int = 8
    predictive_stealing: bool = False
    max_predictive_load_ms: int = 10000
    policy: str = "default"
    start_ahead: float = 0.05  # seconds: short tasks started ahead (docs/scheduling.md; 0: off)
    agent_speeds: bool = True  # learn each agent's speed; a free slot of a faster one first
    chain_ahead: int = 4  # short tasks chained per agent after work running there (0: off)
    plan_time_box: float = 2.0
    etcd_timeout: float = 5.0
    shutdown_grace: float = 5.0
    gc_freeze: bool = (
        True  # freeze what survives a full GC: short pauses (coordinator/gc_pauses.py)
    )
    retention_seconds: float = 0.0  # delete projects this long after they finished (0: keep)
    log_format: str = "auto"  # auto | console | json
    log_level: str = "info"
    # gRPC TLS (files, PEM). ``tls_ca`` set: clients must present a certificate
    # signed by it (mTLS) unless ``tls_client_auth`` is false.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    tls_client_auth: bool = True
    tls_server_name: str = ""  # name checked in a peer's certificate (fast failover)
    auth_tokens_file: str = ""  # bearer tokens of agents and clients (docs/security.md)
    # Without auth_tokens_file the gRPC APIs are open: listening on a non-loopback
    # address then needs this explicit opt-in.
    insecure_listen_anywhere: bool = False
    health_listen: str = ""  # plaintext grpc.health.v1-only address, for kubelet probes
    # etcd: TLS (https:// endpoints) and authentication. Secrets also from files.
    etcd_cacert: str = ""
    etcd_cert: str = ""
    etcd_key: str = ""
    etcd_user: str = ""
    etcd_password: str = field(default="", repr=False)
    etcd_password_file: str = ""

    @property
    def steal_interval(self) -> float:
        return self.steal_interval_ms / 1000.0


SECRET_SETTINGS = frozenset({"etcd_password"})

POLICIES = ("default", "greedy", "critical-path", "balanced", "affinity")
LOG_FORMATS = ("auto", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _tuple(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _parser(name: str) -> Callable[[str], Any]:
    default = getattr(Settings(), name)
    if isinstance(default, bool):
        return _bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, tuple):
        return _tuple
    return str


def _coerce(name: str, value: Any, source: str) -> Any:
    if name not in _FIELD_NAMES:
        raise SettingsError(f"unknown setting {name!r} (from {source})")
    default = getattr(Settings(), name)
    try:
        if isinstance(value, str):
            return _parser(name)(value)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"expected a boolean, got {value!r}")
            return value
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected an integer, got {value!r}")
            return value
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"expected a number, got {value!r}")
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError(f"expected a list of strings, got {value!r}")
        raise ValueError(f"expected a string, got {value!r}")
    except ValueError as exc:
        raise SettingsError(f"invalid setting {name!r} (from {source}): {exc}") from None


_FIELD_NAMES = frozenset(f.name for f in fields(Settings))


def _validate(s: Settings) -> Settings:
    def bad(name: str, why: str) -> SettingsError:
        got = "***" if name in SECRET_SETTINGS else repr(getattr(s, name))
        return SettingsError(f"invalid setting {name!r}: {why} (got {got})")

    if not s.etcd:
        raise bad("etcd", "at least one endpoint is required")
    if not s.prefix.startswith("/") or not s.prefix.endswith("/"):
        raise bad("prefix", "must start and end with '/'")
    for name in ("election_ttl", "agent_lease_ttl"):
        if getattr(s, name) < 2:
            raise bad(name, "etcd leases last at least 2 seconds")
    if s.heartbeat_interval_ms * 3 > s.agent_lease_ttl * 1000:
        raise bad("heartbeat_interval_ms", "must be at most a third of agent_lease_ttl")
    for name in (
        "steal_threshold",
        "max_steal_batch",
        "steal_interval_ms",
        "heartbeat_interval_ms",
    ):
        if getattr(s, name) < 1:
            raise bad(name, "must be at least 1")
    if not 0 <= s.priority_threshold <= 10:
        raise bad("priority_threshold", "must be within 0..10")
    for name in ("metrics_port", "dashboard_port"):
        if not 0 <= getattr(s, name) <= 65535:
            raise bad(name, "must be a TCP port (0 disables)")
    if not s.dashboard_listen:
        raise bad("dashboard_listen", "expected a host or address to bind")
    for url in s.dashboard_peers:
        u = urlparse(url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise bad("dashboard_peers", f"expected http(s)://host:port/ URLs, got {url!r}")
    if s.retention_seconds < 0:
        raise bad("retention_seconds", "must be >= 0 (0 keeps finished projects)")
    if s.start_ahead < 0:
        raise bad("start_ahead", "must be >= 0 seconds (0 starts nothing ahead)")
    if s.chain_ahead < 0:
        raise bad("chain_ahead", "must be >= 0 tasks (0 chains nothing)")
    if s.agent_grace < 0 or s.plan_time_box < 0 or s.etcd_timeout <= 0:
        raise bad("agent_grace", "durations must be positive")
    if s.policy not in POLICIES:
        raise bad("policy", f"must be one of {', '.join(POLICIES)}")
    if s.log_format not in LOG_FORMATS:
        raise bad("log_format", f"must be one of {', '.join(LOG_FORMATS)}")
    if s.log_level not in LOG_LEVELS:
        raise bad("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    _validate_security(s, bad)
    return s


def _validate_security(s: Settings, bad: Callable[[str, str], SettingsError]) -> None:
    if bool(s.tls_cert) != bool(s.tls_key):
        raise bad("tls_key" if s.tls_cert else "tls_cert", "tls_cert and tls_key go together")
    if s.tls_ca and not s.tls_cert:
        raise bad("tls_ca", "a client CA needs tls_cert and tls_key (TLS on)")
    for name in ("tls_cert", "tls_key", "tls_ca", "auth_tokens_file", "etcd_cacert"):
        if getattr(s, name) and not Path(getattr(s, name)).is_file():
            raise bad(name, "no such file")
    for name in ("etcd_cert", "etcd_key", "etcd_password_file"):
        if getattr(s, name) and not Path(getattr(s, name)).is_file():
            raise bad(name, "no such file")
    if bool(s.etcd_cert) != bool(s.etcd_key):
        raise bad("etcd_key" if s.etcd_cert else "etcd_cert", "etcd_cert and etcd_key go together")
    for name in ("listen", "advertise", "health_listen"):
        value = getattr(s, name)
        if value and split_host_port(value) is None:
            raise bad(name, "expected host:port with a port within 0..65535")
    if s.health_listen and s.health_listen == s.listen:
        raise bad("health_listen", "must differ from listen")
    host = (split_host_port(s.listen) or ("", 0))[0]
    if not s.auth_tokens_file and not s.insecure_listen_anywhere and not is_loopback(host):
        raise bad(
            "listen",
            "other hosts can reach this address and no client authentication is set: "
            "set auth_tokens_file (docs/security.md), listen on 127.0.0.1, or opt in "
            "with --insecure-listen-anywhere",
        )
    if s.etcd_password and s.etcd_password_file:
        raise bad("etcd_password_file", "give etcd_password or etcd_password_file, not both")
    if (s.etcd_password or s.etcd_password_file) and not s.etcd_user:
        raise bad("etcd_user", "an etcd password needs an etcd user")
    tls_etcd = any(urlparse(e).scheme == "https" for e in s.etcd if "://" in e)
    if (s.etcd_cacert or s.etcd_cert) and not tls_etcd:
        raise bad("etcd", "etcd TLS files are set: use https:// endpoints")


def split_host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` (``[v6]:port`` too), or ``None`` if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def etcd_password(s: Settings) -> str:
    """The etcd password, from ``etcd_password`` or the first line of ``etcd_password_file``."""
    if s.etcd_password_file:
        try:
            text = Path(s.etcd_password_file).read_text()
        except OSError as exc:
            raise SettingsError(
                f"invalid setting 'etcd_password_file': cannot read it ({exc.strerror})"
            ) from None
        return text.splitlines()[0] if text else ""
    return s.etcd_password


def from_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON settings file (a flat mapping of setting names)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SettingsError(f"settings file {path} is not valid YAML/JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must hold a mapping of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def from_env(env: Mapping[str, str]) -> dict[str, str]:
    """Settings named in the environment (``WORKHIVE_<NAME>`` and seed names)."""
    out: dict[str, str] = {}
    for key, value in env.items():
        if key in SEED_ENV:
            out[SEED_ENV[key]] = value
        elif key.startswith(ENV_PREFIX) and key != "WORKHIVE_CONFIG":
            name = key[len(ENV_PREFIX) :].lower()
            if name in _FIELD_NAMES:
                out[name] = value
    return out


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge defaults < file < env < flags and validate the result.

    ``flags`` holds only the options the user actually gave (``None`` values are
    ignored). ``env`` defaults to ``os.environ``; the file defaults to
    ``WORKHIVE_CONFIG`` when set.
    """
    env = os.environ if env is None else env
    if config_file is None and env.get("WORKHIVE_CONFIG"):
        config_file = Path(env["WORKHIVE_CONFIG"])
    settings = Settings()
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if config_file is not None:
        layers.append((f"file {config_file}", from_file(config_file)))
    layers.append(("environment", from_env(env)))
    layers.append(("flags", {k: v for k, v in (flags or {}).items() if v is not None}))
    for source, values in layers:
        updates = {name: _coerce(name, value, source) for name, value in values.items()}
        settings = replace(settings, **updates)
    return _validate(settings)


__all__ = [
    "Settings",
    "SettingsError",
    "etcd_password",
    "from_env",
    "from_file",
    "load_settings",
]
