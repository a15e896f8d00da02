"""Blocking etcd v3 client: several endpoints with failover, deadlines, safe retries.

Built on python3-etcd3's generated ``etcdrpc`` messages and stubs, but it owns
its gRPC channels instead of using ``etcd3.MultiEndpointEtcd3Client``: that
wrapper marks an endpoint failed for 300 s after one error ("Trying to use a
failed node") and hides the response header's revision, both fatal for a
leader that must snapshot at revision R and survive an etcd restart.

Contract:
- every RPC carries a deadline (``timeout``, default 5 s);
- ``UNAVAILABLE`` switches to the next endpoint (a fresh channel) before any
  retry, so a dead member is skipped and a restarted one is used again;
- reads and idempotent writes (``retry=True``) are retried with tenacity until
  ``retry_time`` is spent; anything else that fails after it may have been sent
  raises :class:`AmbiguousResult` and is never retried here: the caller reads
  back (see ``batch.py``);
- raw protobuf replies (``*_raw`` methods) are for this package's modules only;
  the public helpers return frozen dataclasses (:class:`KeyValue`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlparse

import grpc
import tenacity
from etcd3 import etcdrpc

from workhive.coordinator.etcd.credentials import EtcdAuth, EtcdTLS, TokenInterceptor
from workhive.coordinator.etcd.errors import (
    AmbiguousResult,
    Compacted,
    EtcdError,
    EtcdUnavailable,
    InvalidArgument,
)
from workhive.coordinator.etcd.types import KeyValue

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRY_TIME = 15.0
MIN_LEASE_TTL = 2

_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


def parse_endpoint(url: str) -> str:
    """``http(s)://host:port`` or ``host:port`` to a gRPC target ``host:port``."""
    if "://" in url:
        u = urlparse(url)
        if u.scheme not in ("http", "https", ""):
            raise InvalidArgument(f"etcd endpoints must be http:// or https:// URLs: {url}")
        return f"{u.hostname}:{u.port or 2379}"
    return url


def _is_tls(url: str) -> bool:
    return "://" in url and urlparse(url).scheme == "https"


def kv_from_pb(kv: Any) -> KeyValue:
    return KeyValue(
        key=bytes(kv.key),
        value=bytes(kv.value),
        create_revision=int(kv.create_revision),
        mod_revision=int(kv.mod_revision),
        version=int(kv.version),
        lease=int(kv.lease),
    )


def _bad_token(err: grpc.RpcError) -> bool:
    """etcd's "invalid auth token" (expired or from before a restart)."""
    details = (err.details() or "").lower()
    return err.code() == grpc.StatusCode.UNAUTHENTICATED or "invalid auth token" in details


class _Transient(Exception):
    """Internal marker: a retryable failure of one attempt."""

    def __init__(self, err: grpc.RpcError) -> None:
        super().__init__(str(err))
        self.err = err


class EtcdClient:
    """Thread-safe etcd client over several endpoints.

    Args:
        endpoints: ``http://127.0.0.1:2379`` style URLs (or ``host:port``).
        timeout: deadline of every unary RPC, seconds.
        retry_time: total time a retryable call may spend retrying.
        sleep: injected sleep (tests), used between retries.
        tls: CA and client certificate for ``https://`` endpoints.
        auth: etcd user and password; the token etcd returns goes with every
            call (streams included) and is renewed when etcd calls it invalid.
        revision_key: a key the user may read, for :meth:`revision` (with
            etcd auth, a role limited to the workhive prefix cannot read ``\\0``).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_time: float = DEFAULT_RETRY_TIME,
        sleep: Callable[[float], None] = time.sleep,
        tls: EtcdTLS | None = None,
        auth: EtcdAuth | None = None,
        revision_key: bytes = b"\0",
    ) -> None:
        if not endpoints:
            raise InvalidArgument("at least one etcd endpoint is required")
        self.targets = [parse_endpoint(e) for e in endpoints]
        self._tls_targets = {parse_endpoint(e) for e in endpoints if _is_tls(e)}
        if tls is not None and not self._tls_targets:
            raise InvalidArgument("etcd TLS settings need https:// endpoints")
        self._tls = tls or EtcdTLS()
        self._auth = auth
        self._token = ""
        self._auth_lock = threading.Lock()
        self.revision_key = revision_key
        self.timeout = timeout
        self.retry_time = retry_time
        self._sleep = sleep
        self._lock = threading.Lock()
        self._index = 0
        self._generation = 0
        self._closed = False
        self._channel: grpc.Channel = self._new_channel()
        self._stubs: dict[str, Any] = {}

    # -- channels -----------------------------------------------------------

    def _raw_channel(self, target: str | None = None, private: bool = False) -> grpc.Channel:
        target = target or self.targets[self._index]
        # gRPC shares one connection among channels with the same target and
        # options unless told to keep a subchannel pool of its own
        options = [*_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)] if private else []
        if target in self._tls_targets:
            return grpc.secure_channel(
                target, self._tls.credentials(), options=options or _CHANNEL_OPTIONS
            )
        return grpc.insecure_channel(target, options=options or _CHANNEL_OPTIONS)

    def _new_channel(self, target: str | None = None, private: bool = False) -> grpc.Channel:
        channel = self._raw_channel(target, private)
        if self._auth is None:
            return channel
        return grpc.intercept_channel(channel, TokenInterceptor(self._stream_token))

    def private_channel(self, offset: int = 0) -> grpc.Channel:
        """A new channel on a TCP connection of its own to the endpoint
        ``offset`` places after the current one; the caller closes it. For a
        stream whose few bytes must not queue behind other calls' (the lease
        keepalives: on a slow link, a shared connection's send buffer holds
        them back for seconds behind transactions)."""
        with self._lock:
            target = self.targets[(self._index + offset) % len(self.targets)]
        return self._new_channel(target, private=True)

    # -- etcd authentication ---------------------------------------------------

    def _auth_token(self) -> str:
        """The current auth token, authenticating first if there is none."""
        with self._auth_lock:
            if not self._token:
                self._token = self._authenticate()
            return self._token

    def _stream_token(self) -> str:
        # Called inside gRPC's interceptor: never raise there. Without a token
        # the call fails with etcd's own error, which its caller handles.
        try:
            return self._auth_token()
        except EtcdError:
            return ""

    def _authenticate(self) -> str:
        assert self._auth is not None
        req = etcdrpc.AuthenticateRequest(name=self._auth.user, password=self._auth.password)
        channel = self._raw_channel()
        try:
            reply = etcdrpc.AuthStub(channel).Authenticate(req, timeout=self.timeout)
        except grpc.RpcError as err:
            if err.code() in _RETRYABLE:
                raise EtcdUnavailable(f"etcd Authenticate: {err.code().name}") from None
            raise EtcdError(
                f"etcd authentication as {self._auth.user!r} failed: "
                f"{err.code().name}: {err.details()}"
            ) from None
        finally:
            channel.close()
        return str(reply.token)

    def _invalidate_token(self, token: str) -> None:
        with self._auth_lock:
            if self._token == token:
                self._token = ""

    @property
    def endpoint(self) -> str:
        """The ``host:port`` currently in use."""
        return self.targets[self._index]

    @property
    def generation(self) -> int:
        """Bumped on every failover; long-lived streams reopen when it changes."""
        return self._generation

    def channel(self) -> grpc.Channel:
        """The current gRPC channel (for streams: watch, lease keepalive)."""
        return self._channel

    def stub(self, name: str) -> Any:
        """``KV``/``Lease``/``Watch``/``Maintenance``/``Cluster`` stub on the current channel."""
        with self._lock:
            s = self._stubs.get(name)
            if s is None:
                s = getattr(etcdrpc, f"{name}Stub")(self._channel)
                self._stubs[name] = s
            return s

    def failover(self, generation: int | None = None) -> None:
        """Switch to the next endpoint with a fresh channel.

        ``generation`` (as read before the failed call) makes concurrent
        failures rotate once, not once per thread.
        """
        with self._lock:
            if self._closed or (generation is not None and generation != self._generation):
                return
            old = self._channel
            self._index = (self._index + 1) % len(self.targets)
            self._generation += 1
            self._channel = self._new_channel()
            self._stubs = {}
        old.close()

    def close(self) -> None:
        """Close the channel (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._channel.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until some endpoint answers a status call (or raise EtcdUnavailable)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.status()
                return
            except EtcdUnavailable:
                if time.monotonic() > deadline:
                    raise EtcdUnavailable(
                        f"etcd at {', '.join(self.targets)} is unreachable"
                        f" (no answer within {timeout:g}s)"
                    ) from None
                self._sleep(0.05)

    # -- core call machinery ------------------------------------------------

    def call(
        self, stub: str, method: str, request: Any, *, retry: bool, timeout: float | None = None
    ) -> Any:
        """One unary RPC with deadline, failover and (if ``retry``) tenacity retries."""
        deadline = self.timeout if timeout is None else timeout

        def attempt() -> Any:
            gen = self._generation
            token = ""
            if self._auth is not None:
                try:
                    token = self._auth_token()
                except EtcdUnavailable as exc:
                    self.failover(gen)
                    raise _Transient(grpc.RpcError(str(exc))) from exc
            try:
                try:
                    return getattr(self.stub(stub), method)(request, timeout=deadline)
                except grpc.RpcError as err:
                    if self._auth is None or not _bad_token(err):
                        raise
                    # etcd refused the token before doing anything: renew, once.
                    self._invalidate_token(token)
                    return getattr(self.stub(stub), method)(request, timeout=deadline)
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.CANCELLED and "Channel closed" in (err.details() or ""):
                    # another thread's failover closed the channel under this call:
                    # transient (a write may or may not have applied: ambiguous)
                    raise _Transient(err) from err
                if code == grpc.StatusCode.UNAVAILABLE or (
                    code == grpc.StatusCode.DEADLINE_EXCEEDED and len(self.targets) > 1
                ):
                    self.failover(gen)
                if code in _RETRYABLE:
                    raise _Transient(err) from err
                raise self._translate(err) from err
            except ValueError as err:  # channel closed under us during failover
                self.failover(gen)
                raise _Transient(grpc.RpcError(str(err))) from err

        if not retry:
            try:
                return attempt()
            except _Transient as t:
                raise AmbiguousResult(f"{stub}.{method}: {t}") from t
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_delay(self.retry_time),
            wait=tenacity.wait_exponential(multiplier=0.05, max=1.0),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Transient as t:
            raise EtcdUnavailable(f"{stub}.{method} on {self.targets}: {t}") from t

    @staticmethod
    def _translate(err: grpc.RpcError) -> EtcdError:
        code = err.code()
        details = err.details() or ""
        if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
            return Compacted(0)
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            return InvalidArgument(details)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # a request over etcd's size limit
            return InvalidArgument(f"etcd refused the request as too large: {details}")
        if code == grpc.StatusCode.NOT_FOUND:
            return InvalidArgument(details)
        return EtcdError(f"{code.name}: {details}")

    # -- raw requests (package-internal) -------------------------------------

    def range_raw(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        max_create_revision: int = 0,
        sort_target: int = 0,
        sort_order: int = 0,
        serializable: bool = False,
        timeout: float | None = None,
    ) -> Any:
        req = etcdrpc.RangeRequest(
            key=key,
            range_end=range_end,
            revision=revision,
            limit=limit,
            keys_only=keys_only,
            count_only=count_only,
            max_create_revision=max_create_revision,
            sort_target=sort_target,
            sort_order=sort_order,
            serializable=serializable,
        )
        return self.call("KV", "Range", req, retry=True, timeout=timeout)

    def txn_raw(
        self,
        compare: Sequence[Any],
        success: Sequence[Any],
        failure: Sequence[Any] = (),
        *,
        retry: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """A raw txn. ``retry=True`` only for idempotent ones (e.g. read-only)."""
        req = etcdrpc.TxnRequest(compare=compare, success=success, failure=failure)
        return self.call("KV", "Txn", req, retry=retry, timeout=timeout)

    # -- typed helpers ------------------------------------------------------

    def get(self, key: bytes) -> KeyValue | None:
        """Linearizable read of one key."""
        r = self.range_raw(key)
        return kv_from_pb(r.kvs[0]) if r.kvs else None

    def get_prefix(self, prefix: bytes, *, revision: int = 0) -> tuple[int, list[KeyValue]]:
        """All keys under ``prefix`` at one revision: ``(header revision, kvs)``."""
        r = self.range_raw(prefix, prefix_end(prefix), revision=revision)
        return int(r.header.revision), [kv_from_pb(kv) for kv in r.kvs]

    def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Unconditional put (idempotent: retried). Returns the revision."""
        r = self.call(
            "KV", "Put", etcdrpc.PutRequest(key=key, value=value, lease=lease), retry=True
        )
        return int(r.header.revision)

    def delete(self, key: bytes, *, prefix: bool = False) -> int:
        """Delete a key (or a prefix). Idempotent: retried. Returns the count deleted."""
        req = etcdrpc.DeleteRangeRequest(key=key, range_end=prefix_end(key) if prefix else b"")
        return int(self.call("KV", "DeleteRange", req, retry=True).deleted)

    def revision(self) -> int:
        """The current store revision (linearizable)."""
        return int(self.range_raw(self.revision_key, count_only=True).header.revision)

    def lease_grant(self, ttl: int) -> tuple[int, int]:
        """Grant a lease: ``(id, ttl granted)``. Not retried (would leak leases)."""
        if ttl < MIN_LEASE_TTL:
            raise InvalidArgument(f"lease TTL {ttl}s is below etcd's minimum of {MIN_LEASE_TTL}s")
        r = self.call("Lease", "LeaseGrant", etcdrpc.LeaseGrantRequest(TTL=ttl), retry=False)
        if r.error:
            raise EtcdError(r.error)
        return int(r.ID), int(r.TTL)

    def lease_revoke(self, lease_id: int) -> bool:
        """Revoke (idempotent: retried). False if the lease was already gone."""
        try:
            self.call("Lease", "LeaseRevoke", etcdrpc.LeaseRevokeRequest(ID=lease_id), retry=True)
        except InvalidArgument:
            return False
        return True

    def lease_ttl(self, lease_id: int) -> int:
        """Remaining TTL in seconds; <= 0 when the lease no longer exists."""
        return self.lease_life(lease_id)[0]

    def lease_life(self, lease_id: int) -> tuple[int, int]:
        """(whole seconds left, seconds granted); left <= 0 when the lease no
        longer exists."""
        r = self.call(
            "Lease", "LeaseTimeToLive", etcdrpc.LeaseTimeToLiveRequest(ID=lease_id), retry=True
        )
        return int(r.TTL), int(r.grantedTTL)

    def compact(self, revision: int, *, physical: bool = True) -> None:
        """Compact history up to ``revision`` (tests and maintenance)."""
        req = etcdrpc.CompactionRequest(revision=revision, physical=physical)
        self.call("KV", "Compact", req, retry=True, timeout=max(self.timeout, 10.0))

    def ping(self, timeout: float = 1.0) -> None:
        """One status call to the current endpoint, no retry: raises
        ``EtcdUnavailable`` unless etcd answers within ``timeout`` seconds."""
        try:
            self.call(
                "Maintenance", "Status", etcdrpc.StatusRequest(), retry=False, timeout=timeout
            )
        except AmbiguousResult as exc:
            raise EtcdUnavailable(f"etcd at {', '.join(self.targets)} is unreachable") from exc

    def status(self) -> int:
        """Status of the current endpoint; returns its revision."""
        r = self.call("Maintenance", "Status", etcdrpc.StatusRequest(), retry=True, timeout=2.0)
        return int(r.header.revision)
