#!/usr/bin/env bash
# Builds the Kubernetes binaries from the Go module proxy into a cache outside the repo, keyed
# by version: etcd, kube-apiserver, kube-controller-manager and kubectl for the local control
# plane; with `--node` also kubelet, kubeadm, kube-proxy and kube-scheduler for the kind node
# image. Idempotent: only missing binaries are built; a warm cache returns at once. Prints the
# bin directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {sub(/^v/,"",$2); print $2; exit}' "$here/gomod/go.mod")
cache=${LEARNOPS_CACHE:-$HOME/.cache/learnops}
bin="$cache/k8s-v$version/bin"
want="etcd kube-apiserver kube-controller-manager kubectl"
[ "${1:-}" = --node ] && want="$want kubelet kubeadm kube-proxy kube-scheduler"
targets=()
for b in $want; do
  [ -x "$bin/$b" ] && continue
  if [ "$b" = etcd ]; then targets+=(./cmd/etcd); else targets+=("k8s.io/kubernetes/cmd/$b"); fi
done
if [ ${#targets[@]} -gt 0 ]; then
  mkdir -p "$bin"
  minor=${version#*.}; minor=${minor%%.*}
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=v$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  echo "building Kubernetes v$version (${targets[*]##*/}) into $bin (cold: ~15-25 min on 2 cores)" >&2
  cd "$here/gomod"
  # No `,direct`: a module missing from the proxy must fail, not make outside lookups.
  GOPROXY=${LEARNOPS_GOPROXY:-$(go env GOPROXY | sed -E "s/[,|]direct$//")} GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go build -trimpath -ldflags "$ldflags" -o "$bin/" "${targets[@]}" >&2
fi
echo "$bin"
