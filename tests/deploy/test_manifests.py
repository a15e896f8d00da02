"""Static checks of deploy/: every overlay renders, validates against the
Kubernetes schemas, and follows the policy the manifests promise.

The policy checks are our own (the Pod Security "restricted" profile plus
resources/probes/PDB rules): checkov cannot be installed next to this
project's dev tools (it pins packaging<24; pytest 9 needs >=24).
"""

from __future__ import annotations

import copy
import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import kubernetes_validate
import pytest

from tests.deploy._manifests import (
    DEPLOY,
    KUBECTL,
    OVERLAYS,
    ROOT,
    Obj,
    Pod,
    container,
    container_env,
    dockerfile_final_stage,
    find,
    image_entrypoint,
    probe_port,
    render,
    unresolved,
    workloads,
)

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is needed to render kustomize")

ALL = sorted(OVERLAYS)
# Oldest Kubernetes we support (native gRPC probes are GA in 1.27) and the
# newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.27", kubernetes_validate.latest_version())
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# Containers allowed to run without readiness/liveness probes, and why.
NO_PROBES = {"workhive-agent/agent": "an agent serves nothing; its liveness is its etcd lease"}

COORD = "workhive-coordinator"


def pod_spec(w: Obj) -> Obj:
    spec: Obj = w["spec"]["template"]["spec"]
    return spec


def coordinator_env(overlay: str) -> dict[str, str]:
    objs = render(overlay)
    c = container(find(objs, "Deployment", COORD), "coordinator")
    return container_env(objs, c, Pod(name=f"{COORD}-x", namespace="workhive"))


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# ------------------------------------------------------------- render + schema


@pytest.mark.parametrize("overlay", ALL)
def test_overlay_renders_and_is_schema_valid(overlay: str) -> None:
    objs = render(overlay)
    kinds = {o["kind"] for o in objs}
    assert {
        "Namespace",
        "StatefulSet",
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds
    errors = []
    for o in objs:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(o, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{o['kind']}/{o['metadata']['name']} (k8s {version}): {exc}")
    assert not errors, "\n".join(errors)


def test_schema_validation_catches_a_typo() -> None:
    """The validator is strict: a misspelt field fails (guards the test above)."""
    d = copy.deepcopy(find(render("base"), "Deployment", COORD))
    pod_spec(d)["containers"][0]["readinessProbe"]["grpc"]["servce"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(d, K8S_VERSIONS[-1], strict=True)


# ---------------------------------------------------------------------- policy


@pytest.mark.parametrize("overlay", ALL)
def test_pod_security_restricted_and_resources(overlay: str) -> None:
    problems: list[str] = []
    for w in workloads(render(overlay)):
        name = w["metadata"]["name"]
        spec = pod_spec(w)
        psc = spec.get("securityContext", {})
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(f"{name}: {flag}")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: service account token is mounted")
        if spec.get("serviceAccountName", "default") == "default":
            problems.append(f"{name}: runs as the default service account")
        for v in spec.get("volumes", []):
            kinds = set(v) - {"name"}
            if not kinds <= RESTRICTED_VOLUMES:
                problems.append(f"{name}: volume {v['name']} of type {kinds}")
        for c in spec["containers"] + spec.get("initContainers", []):
            where = f"{name}/{c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem is writable")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities not dropped")
            if sc.get("capabilities", {}).get("add"):
                problems.append(f"{where}: adds capabilities")
            if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
                problems.append(f"{where}: runAsNonRoot is not set")
            if sc.get("runAsUser", psc.get("runAsUser", 1)) == 0:
                problems.append(f"{where}: runs as uid 0")
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
            if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: no seccomp profile")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        problems.append(f"{where}: no {kind}.{r}")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts:
                problems.append(f"{where}: read-only root without a writable /tmp")
            image = c["image"]
            if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
                problems.append(f"{where}: image {image} has no tag")
            if overlay == "prod" and (image.endswith(":latest") or image.endswith(":dev")):
                problems.append(f"{where}: prod image {image} is not pinned")
            if where not in NO_PROBES:
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        problems.append(f"{where}: no {probe}")
    assert not problems, "\n".join(problems)


def test_namespace_enforces_restricted_pod_security() -> None:
    ns = find(render("prod"), "Namespace", "workhive")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", ALL)
def test_services_and_pdbs_select_their_pods(overlay: str) -> None:
    objs = render(overlay)
    pods = {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads(objs)
    }
    for o in objs:
        if o["kind"] == "Service":
            sel = o["spec"]["selector"]
            hits = [n for n, labels in pods.items() if matches(sel, labels)]
            assert len(hits) == 1, f"Service {o['metadata']['name']} selects {hits}"
            c = pod_spec(find(objs, "Deployment" if hits[0] != "etcd" else "StatefulSet", hits[0]))
            names = {p.get("name") for cc in c["containers"] for p in cc.get("ports", [])}
            for p in o["spec"]["ports"]:
                assert p["targetPort"] in names, f"{o['metadata']['name']}: {p['targetPort']}"
        if o["kind"] == "PodDisruptionBudget":
            assert o["spec"].get("maxUnavailable") == 1, o["metadata"]["name"]
            hits = [
                n
                for n, labels in pods.items()
                if matches(o["spec"]["selector"]["matchLabels"], labels)
            ]
            assert hits == [o["metadata"]["name"]], f"PDB {o['metadata']['name']} selects {hits}"


@pytest.mark.parametrize("overlay", ALL)
def test_only_coordinators_reach_etcd_client_port(overlay: str) -> None:
    objs = render(overlay)
    pods = {
        w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"] for w in workloads(objs)
    }
    np = find(objs, "NetworkPolicy", "etcd")
    assert np["spec"]["policyTypes"] == ["Ingress"]
    assert matches(np["spec"]["podSelector"]["matchLabels"], pods["etcd"])
    allowed: set[str] = set()
    for rule in np["spec"]["ingress"]:
        ports = {p["port"] for p in rule.get("ports", [])}
        if ports and 2379 not in ports:
            continue
        assert "from" in rule, "a rule opens the client port to everyone"
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, f"client port open to {peer}"
            allowed |= {
                n for n, lb in pods.items() if matches(peer["podSelector"]["matchLabels"], lb)
            }
    assert allowed == {COORD, "etcd"}


# ---------------------------------------------------------------- coordinators


@pytest.mark.parametrize("overlay", ALL)
def test_coordinator_deployment_shape(overlay: str) -> None:
    objs = render(overlay)
    d = find(objs, "Deployment", COORD)
    spec = pod_spec(d)
    c = container(d, "coordinator")
    env = coordinator_env(overlay)
    assert d["spec"]["replicas"] == (2 if overlay == "dev" else 3)
    assert d["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert spec["affinity"]["podAntiAffinity"]
    # identity and advertise address from the downward API
    fields = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"] if "valueFrom" in e
    }
    assert fields == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "POD_IP": "status.podIP",
    }
    assert env["WORKHIVE_COORDINATOR_ID"] == f"{COORD}-x"
    grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
    assert env["WORKHIVE_ADVERTISE"] == f"127.0.0.1:{grpc_port}"
    assert env["WORKHIVE_LISTEN"].endswith(f":{grpc_port}")
    assert not [k for k, v in env.items() if unresolved(v)], "unexpanded $(VAR) in env"
    # native gRPC probes: readiness on the agent service, liveness on ""
    # With TLS on, the kubelet (plaintext only) probes the health-only port instead.
    probed = grpc_port
    if env.get("WORKHIVE_TLS_CERT"):
        probed = next(p["containerPort"] for p in c["ports"] if p["name"] == "health")
        assert env["WORKHIVE_HEALTH_LISTEN"].endswith(f":{probed}")
    ready, live = c["readinessProbe"], c["livenessProbe"]
    assert ready["grpc"] == {"port": probed, "service": "workhive.v1.AgentService"}
    assert live["grpc"].get("service", "") == ""
    assert probe_port(live, c) == probed
    assert probe_port(c["startupProbe"], c) == probed
    # the coordinator's SIGTERM path (5 s server grace + resign) fits the grace period
    grace = float(env.get("WORKHIVE_SHUTDOWN_GRACE", "5"))
    assert spec["terminationGracePeriodSeconds"] >= grace + 10
    # metrics: annotated for scraping on the port the process listens on
    ann = d["spec"]["template"]["metadata"]["annotations"]
    metrics = next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == metrics == int(env["WORKHIVE_METRICS_PORT"])


def test_coordinator_env_names_are_known_settings() -> None:
    """An unknown WORKHIVE_* variable is a settings error at startup."""
    from dataclasses import fields

    from workhive.coordinator.settings import Settings

    known = {f.name for f in fields(Settings)}
    for overlay in ALL:
        for key in coordinator_env(overlay):
            if key.startswith("WORKHIVE_"):
                assert key[len("WORKHIVE_") :].lower() in known, f"{overlay}: {key}"


def test_etcd_cluster_matches_its_endpoints() -> None:
    for overlay in ALL:
        objs = render(overlay)
        sts = find(objs, "StatefulSet", "etcd")
        c = container(sts, "etcd")
        env = container_env(objs, c, Pod(name="etcd-0", namespace="workhive"))
        n = sts["spec"]["replicas"]
        svc = sts["spec"]["serviceName"]
        assert sts["spec"]["podManagementPolicy"] == "Parallel"
        assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
        assert find(objs, "Service", svc)["spec"]["clusterIP"] == "None"
        members = dict(m.split("=", 1) for m in env["ETCD_INITIAL_CLUSTER"].split(","))
        assert members == {f"etcd-{i}": f"http://etcd-{i}.{svc}:2380" for i in range(n)}, overlay
        assert env["ETCD_NAME"] == "etcd-0"
        assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == members["etcd-0"]
        endpoints = coordinator_env(overlay)["WORKHIVE_ETCD"].split(",")
        assert endpoints == [f"http://etcd-{i}.{svc}:2379" for i in range(n)], overlay


def test_prod_pins_the_image_and_turns_tls_on() -> None:
    objs = render("prod")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in (COORD, "workhive-agent"):
        image = pod_spec(find(objs, "Deployment", name))["containers"][0]["image"]
        assert image.endswith(f":{version}"), image
    d = find(objs, "Deployment", COORD)
    env = coordinator_env("prod")
    mount = next(m for m in container(d, "coordinator")["volumeMounts"] if m["name"] == "tls")
    for key in ("WORKHIVE_TLS_CERT", "WORKHIVE_TLS_KEY", "WORKHIVE_TLS_CA"):
        assert env[key].startswith(mount["mountPath"] + "/"), key
    vol = next(v for v in pod_spec(d)["volumes"] if v["name"] == "tls")
    assert vol["secret"]["optional"] is False
    for overlay in ("base", "dev"):
        assert "WORKHIVE_TLS_CERT" not in coordinator_env(overlay)


# ------------------------------------------------------------------ Dockerfile


def test_dockerfile_is_multistage_slim_nonroot_with_workhive_entrypoint() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "multi-stage build expected"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    final = dockerfile_final_stage()
    assert not any(i == "RUN" and "pip install" in a for i, a in final), "build tools in runtime"
    user = [a for i, a in final if i == "USER"][-1]
    uid = int(user.split(":")[0])  # numeric, so runAsNonRoot can verify it
    assert uid != 0
    assert image_entrypoint() == ["workhive"]
    for w in workloads(render("base")):
        if w["metadata"]["name"].startswith("workhive-"):
            assert pod_spec(w)["securityContext"]["runAsUser"] == uid


def test_dockerfile_copies_what_the_wheel_is_built_from() -> None:
    """Every COPY source exists and survives deploy/Dockerfile.dockerignore; the
    wheel's packages (pyproject) and its readme are all copied."""
    ignore = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pat in ignore:
            neg = pat.startswith("!")
            pat = pat.lstrip("!").rstrip("/")
            if fnmatch(path, pat) or path.startswith(pat + "/"):
                keep = neg
        return keep

    copied = []
    copies = [a for i, a in (ln.split(" ", 1) for ln in _instructions()) if i == "COPY"]
    for args in copies:
        if "--from=" in args:
            continue
        *srcs, _dest = args.split()
        for src in srcs:
            src = src.rstrip("/")
            assert (ROOT / src).exists(), src
            assert included(src), f"{src} is excluded from the build context"
            copied.append(src)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["package-dir"].values()
    for pkg in [*packages, "setup.py"]:
        assert any(pkg == c or pkg.startswith(c + "/") for c in copied), pkg
    assert "pyproject.toml" in copied and pyproject["project"]["readme"] in copied


def _instructions() -> list[str]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_docs_cover_deploy_scale_upgrade_and_secrets() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for needle in (
        "kubectl apply -k deploy/overlays/prod",
        "scale deployment/workhive-agent",
        "maxUnavailable",
        "workhive-tls",
        "docker build -f deploy/Dockerfile",
    ):
        assert needle in doc, needle


def test_yaml_sources_have_no_tabs() -> None:
    for path in Path(DEPLOY).rglob("*.yaml"):
        assert "\t" not in path.read_text(), path
