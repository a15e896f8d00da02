"""Render the kustomize overlays and turn a rendered container into a local process.

What the kubelet would do with a container spec, done on 127.0.0.1:
- the environment: ``envFrom`` ConfigMaps/Secrets first, then ``env`` in order,
  downward-API ``fieldRef`` values filled in, ``$(VAR)`` expanded against the
  variables defined so far (Kubernetes semantics: unknown references stay
  literal, ``$$`` escapes);
- ``command``/``args`` expanded against the full environment; with no
  ``command`` the image's ENTRYPOINT (from ``deploy/Dockerfile``) is used;
- container ports are remapped to free loopback ports, in env, args and probes
  alike, so several "pods" can run side by side.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
OVERLAYS = {
    "base": DEPLOY / "base",
    "dev": DEPLOY / "overlays" / "dev",
    "prod": DEPLOY / "overlays" / "prod",
}
KUBECTL = shutil.which("kubectl")

Obj = dict[str, Any]


@cache
def render(overlay: str) -> tuple[Obj, ...]:
    """``kubectl kustomize`` of one overlay, as a tuple of objects."""
    if KUBECTL is None:  # pragma: no cover - checked by the tests
        raise RuntimeError("kubectl not found")
    out = subprocess.run(
        [KUBECTL, "kustomize", str(OVERLAYS[overlay])],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def find(objs: Iterable[Obj], kind: str, name: str) -> Obj:
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise LookupError(f"no {kind}/{name} in the rendered manifests")


def workloads(objs: Iterable[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]


def container(workload: Obj, name: str) -> Obj:
    for c in workload["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return dict(c)
    raise LookupError(f"no container {name} in {workload['metadata']['name']}")


# ---------------------------------------------------------------- Dockerfile


def dockerfile_final_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuations joined."""
    text = DOCKERFILE.read_text()
    text = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instr, rest.strip()))
    return stages[-1]


def image_entrypoint() -> list[str]:
    for instr, rest in reversed(dockerfile_final_stage()):
        if instr == "ENTRYPOINT":
            return list(json.loads(rest))
    raise LookupError("no ENTRYPOINT in deploy/Dockerfile")


def image_env() -> dict[str, str]:
    """ENV of the final stage (``KEY=VALUE`` pairs)."""
    env: dict[str, str] = {}
    for instr, rest in dockerfile_final_stage():
        if instr == "ENV":
            for pair in shlex.split(rest):
                k, _, v = pair.partition("=")
                env[k] = v
    return env


# ----------------------------------------------------------- pod -> process

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` -> ``$``, unknown refs kept as is."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _REF.sub(sub, text)


def unresolved(text: str) -> list[str]:
    return [m.group(1) for m in _REF.finditer(text) if m.group(1)]


@dataclass
class Pod:
    """The pod fields the downward API may hand a container."""

    name: str
    namespace: str
    ip: str = "127.0.0.1"
    node: str = "localhost"
    labels: dict[str, str] = field(default_factory=dict)

    def field(self, path: str) -> str:
        values = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "status.podIP": self.ip,
            "status.podIPs": self.ip,
            "status.hostIP": self.ip,
            "spec.nodeName": self.node,
            "spec.serviceAccountName": "default",
        }
        m = re.fullmatch(r"metadata\.labels\['(.+)'\]", path)
        if m:
            return self.labels.get(m.group(1), "")
        if path not in values:
            raise KeyError(f"downward API field {path!r} is not simulated")
        return values[path]


def _data(objs: Iterable[Obj], kind: str, name: str) -> dict[str, str]:
    import base64

    o = find(objs, kind, name)
    if kind == "Secret":
        out = {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
        out.update(o.get("stringData") or {})
        return out
    return {k: str(v) for k, v in (o.get("data") or {}).items()}


def container_env(objs: Iterable[Obj], c: Obj, pod: Pod) -> dict[str, str]:
    """The environment the kubelet would give container ``c``."""
    objs = list(objs)
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        prefix = src.get("prefix", "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in src:
                try:
                    data = _data(objs, kind, src[key]["name"])
                except LookupError:
                    if src[key].get("optional"):
                        continue
                    raise
                env.update({prefix + k: v for k, v in data.items()})
    for item in c.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
        elif "valueFrom" in item:
            vf = item["valueFrom"]
            if "fieldRef" in vf:
                env[name] = pod.field(vf["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
                kind, ref = (
                    ("ConfigMap", vf["configMapKeyRef"])
                    if "configMapKeyRef" in vf
                    else ("Secret", vf["secretKeyRef"])
                )
                try:
                    env[name] = _data(objs, kind, ref["name"])[ref["key"]]
                except (LookupError, KeyError):
                    if not ref.get("optional"):
                        raise
            else:
                raise KeyError(f"env {name}: valueFrom {sorted(vf)} is not simulated")
        else:
            env[name] = ""
    return env


def container_argv(c: Obj, env: Mapping[str, str]) -> list[str]:
    """command + args, ``$(VAR)``-expanded; ENTRYPOINT when command is unset."""
    command = c.get("command") or image_entrypoint()
    return [expand(str(a), env) for a in [*command, *c.get("args", [])]]


def port_remapper(ports: Mapping[int, int]) -> Callable[[str], str]:
    """A function replacing each container port number (as a whole number) by its local port."""
    if not ports:
        return lambda s: s
    pattern = re.compile(r"(?<!\d)(" + "|".join(str(p) for p in ports) + r")(?!\d)")

    def remap(text: str) -> str:
        return pattern.sub(lambda m: str(ports[int(m.group(1))]), text)

    return remap


def probe_port(probe: Obj, c: Obj) -> int:
    """The numeric port of an httpGet/grpc/tcpSocket probe (named ports resolved)."""
    for kind in ("grpc", "httpGet", "tcpSocket"):
        if kind in probe:
            port = probe[kind]["port"]
            if isinstance(port, int):
                return port
            for p in c.get("ports", []):
                if p.get("name") == port:
                    return int(p["containerPort"])
            raise LookupError(f"probe port {port!r} names no container port")
    raise LookupError(f"probe {probe} has no grpc/httpGet/tcpSocket handler")
