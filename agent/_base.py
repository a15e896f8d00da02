"""Shared state of an :class:`~workhive.agent.Agent` and the helpers every part uses.

Contract: ``AgentBase.__init__`` validates the settings and creates all the
state the parts (``_held``, ``_connection``, ``_heartbeat``, ``_workers``,
``_agent``) share. Invariant: every field below that more than one thread
touches is read and written with ``_lock`` held (``_work`` is a condition on
the same lock); flags set from signal handlers (``_drain_requested``,
``_stop_requested``) are plain assignments polled by the supervisor.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import structlog

from ._backoff import Backoff
from ._execlog import ENV_VAR as EXEC_LOG_ENV
from ._execlog import ExecLog
from ._session import CHANNEL_OPTIONS, Session
from ._types import ConnectionState, Handler, Outcome, TaskKey

if TYPE_CHECKING:
    from ._held import Held

DEFAULT_HEARTBEAT_INTERVAL = 1.0
SILENT_DIAL = 5.0  # seconds a dial may go without a Welcome
SUSPECT_DIAL = 2.0  # seconds a dial to an address that recently went silent may go without one

_log = structlog.get_logger("workhive.agent")


@dataclass
class Counters:
    """What happened on this agent's sessions (read by tests and benchmarks)."""

    reconnects: int = 0
    redirects: int = 0
    relays: int = 0  # sessions asked of a follower because the leader was out of reach
    lease_losses: int = 0
    heartbeats_sent: int = 0
    fallback_heartbeats: int = 0
    renewed_elsewhere: int = 0  # leases renewed beside a session whose answers ran low
    completions_acked: int = 0
    completions_rejected: int = 0
    dropped: int = 0


class AgentBase:
    """Settings and shared state of an agent (see :class:`workhive.agent.Agent`)."""

    def __init__(
        self,
        coordinators: Sequence[str] | str,
        *,
        agent_id: str | None = None,
        capabilities: Iterable[str] = (),
        slots: int = 1,
        prefetch: int = 1,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        unreachable_timeout: float | None = None,
        drain_timeout: float = 10.0,
        exec_log: str | os.PathLike[str] | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(coordinators, str):
            coordinators = [coordinators]
        addresses = [a.strip() for c in coordinators for a in c.split(",") if a.strip()]
        if not addresses:
            raise ValueError("at least one coordinator address is required")
        if slots < 1:
            raise ValueError("slots must be >= 1")
        if prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        self.coordinators: tuple[str, ...] = tuple(addresses)
        self.agent_id = agent_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.capabilities: tuple[str, ...] = tuple(capabilities)
        self.slots = slots
        self.prefetch = prefetch
        self.unreachable_timeout = unreachable_timeout
        self.drain_timeout = drain_timeout
        self._credentials = credentials
        self._metadata: tuple[tuple[str, str], ...] = (("workhive-agent-id", self.agent_id),)
        if token:
            self._metadata += (("authorization", f"Bearer {token}"),)
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._stop_event = threading.Event()
        self._sleep = sleep or self._interruptible_sleep
        path = exec_log if exec_log is not None else os.environ.get(EXEC_LOG_ENV) or None
        self._exec_log = ExecLog(path, self.agent_id)
        self._log = _log.bind(agent_id=self.agent_id)

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._held: dict[tuple[str, str], Held] = {}
        self._unacked: dict[tuple[str, str], Outcome] = {}  # finished, awaiting an answer
        self._orphans: dict[tuple[str, str], Outcome] = {}  # succeeded, claim gone
        self._done_here: dict[tuple[str, str], str] = {}  # chained tasks may follow these
        self._seq = 0
        self._hb_seq = 0
        self._session: Session | None = None  # the welcomed session, if any
        self._attempt: Session | None = None  # the session being dialled or served
        self._silent_until: dict[str, float] = {}  # address -> avoid it until
        self._redial: str | None = None  # a session just abandoned for silence: dial it again
        # progress reports (Task.progress): when each running task last sent one,
        # and the latest report held back by PROGRESS_INTERVAL
        self._progress_sent: dict[tuple[str, str], float] = {}
        self._progress_held: dict[tuple[str, str], tuple[TaskKey, float, str]] = {}
        self._lease_id = 0
        self._ttl = 0
        # when each recent heartbeat went out, and how long the lease lasts at
        # least by the answers (``Heartbeats``: renew it elsewhere when low)
        self._hb_sent: dict[int, float] = {}
        self._lease_until = 0.0
        self._hb_interval = DEFAULT_HEARTBEAT_INTERVAL
        self._hb_wake = threading.Event()
        self._state = ConnectionState.CONNECTING
        self._address = ""
        self._disconnected_since: float | None = clock()
        self._drain_requested = False
        self._stop_requested = False
        self._draining = False
        self._idle_since: float | None = None
        self._finished = False  # no more work; the connection thread may end
        self._closed = False
        self._handler: Handler | None = None
        self._fatal: BaseException | None = None
        self._run_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._fallback_channels: dict[str, grpc.Channel] = {}
        self._fallback_index = 0
        self.counters = Counters()

    def _suspect(self, address: str) -> bool:
        """True while ``address`` recently went silent on us (see
        ``Heartbeats._check_silence``): the list's other addresses go first,
        and a dial to it must be welcomed within ``SUSPECT_DIAL``."""
        with self._lock:
            until = self._silent_until.get(address, 0.0)
        return self._clock() < until

    def _lease_renewed(self, seq: int, ttl: int) -> None:
        """An answer to heartbeat ``seq``: the lease had ``ttl`` seconds left
        when the coordinator answered, so it lasts at least until the
        heartbeat's send time plus ``ttl``. Called with the lock held."""
        sent = self._hb_sent.get(seq)
        if sent is not None and ttl > 0:
            self._lease_until = max(self._lease_until, sent + ttl)

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def lease_id(self) -> int:
        """The lease the coordinators granted (0 before the first Welcome)."""
        return self._lease_id

    @property
    def address(self) -> str:
        """The coordinator address of the current (or last) session."""
        return self._address

    def _done(self) -> bool:
        """Closed or finished (a method, so type narrowing never caches it)."""
        return self._closed or self._finished

    def _interruptible_sleep(self, seconds: float) -> None:
        self._stop_event.wait(seconds)

    def _make_channel(self, address: str) -> grpc.Channel:
        if self._credentials is not None:
            return grpc.secure_channel(address, self._credentials, options=CHANNEL_OPTIONS)
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)

    # Pull mode hooks (``_pull.PullCore``), called with the lock held.
    pull = False

    def _welcomed(self) -> None: ...
    def _claim_empty(self, seq: int) -> None: ...
    def _answered(self, key: TaskKey, committed: bool, message: str = "") -> None: ...
