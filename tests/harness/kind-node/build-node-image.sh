#!/usr/bin/env bash
# Assembles a kind node image locally, for machines that cannot pull kindest/node (no image
# registry) and cannot run `kind build node-image` (it fetches images with `ctr content fetch`).
# Everything comes from package registries: Go binaries from the module proxy, a bookworm base
# from Debian (make-base-image.sh), Debian packages for systemd, runc and iptables, and kind's own
# node files from the sigs.k8s.io/kind module. Cached by version under $LEARNOPS_CACHE;
# idempotent: a warm cache returns at once. Prints the image name.
#
# What the image holds (as kindest/node does): kind's images/base files, systemd, containerd,
# runc, CNI plugins, crictl, kubelet, kubeadm, kubectl, and the control-plane images (apiserver,
# controller-manager, scheduler, kube-proxy, etcd, CoreDNS, pause) plus local-path-provisioner,
# imported into the node's containerd at boot. Not in it: kindnetd (not on the module proxy), so
# the single node uses a static bridge CNI config, and the cluster is created with
# `disableDefaultCNI`. Nothing machine-specific is baked in: tests/harness/machine.py applies
# this machine's workarounds at cluster creation, when it detects them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
harness=$(cd "$here/.." && pwd)
cache=${LEARNOPS_CACHE:-$HOME/.cache/learnops}
export GOPROXY=${LEARNOPS_GOPROXY:-$(go env GOPROXY | sed -E "s/[,|]direct$//")} GOFLAGS=-modcacherw CGO_ENABLED=0
KIND_VERSION=v0.33.0
CONTAINERD_VERSION=v2.4.2
CNI_PLUGINS_VERSION=v1.10.0
CRICTL_VERSION=v1.37.0
COREDNS_VERSION=v1.14.2
LOCAL_PATH_VERSION=v0.0.30
PAUSE_VERSION=3.10.2
k8s_version=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$harness/gomod/go.mod")
# The image tag changes with any input: versions and the files of this directory.
inputs=$( (echo "$KIND_VERSION $CONTAINERD_VERSION $CNI_PLUGINS_VERSION $CRICTL_VERSION" \
  "$COREDNS_VERSION $LOCAL_PATH_VERSION $PAUSE_VERSION $k8s_version"; \
  cd "$here" && find . -type f | sort | xargs sha256sum) | sha256sum | cut -c1-10)
image=${LEARNOPS_KIND_NODE_IMAGE:-learnops/kind-node:$k8s_version-$inputs}
# --parts: only the binaries (no Docker, so no need for the shared Docker lock).
parts_only=0; [ "${1:-}" = --parts ] && parts_only=1
if [ "$parts_only" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi

step() { printf '==> [node image] %s\n' "$*" >&2; }
parts="$cache/kind-node-parts"
mkdir -p "$parts"

# -- binaries (each skipped when present) -----------------------------------------------------
goinstall() {  # goinstall <dir> <version> <module path>...
  local dir=$1 version=$2; shift 2
  local missing=0
  for p in "$@"; do [ -x "$dir/$(basename "$p")" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  step "go install $* @$version"
  mkdir -p "$dir"
  for p in "$@"; do GOBIN=$dir go install -trimpath -ldflags "-s -w ${LDFLAGS:-}" \
    ${TAGS:+-tags "$TAGS"} "$p@$version" >&2; done
}
step "Kubernetes node binaries (kubelet, kubeadm, kube-proxy, kube-scheduler)"
k8sbin=$("$harness/build-k8s.sh" --node)
ctrd="$parts/containerd-$CONTAINERD_VERSION"
TAGS="no_aufs no_zfs no_btrfs no_devmapper" \
LDFLAGS="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
  goinstall "$ctrd" "$CONTAINERD_VERSION" github.com/containerd/containerd/v2/cmd/containerd \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
  github.com/containerd/containerd/v2/cmd/ctr
cni="$parts/cni-plugins-$CNI_PLUGINS_VERSION"
goinstall "$cni" "$CNI_PLUGINS_VERSION" \
  github.com/containernetworking/plugins/plugins/main/{bridge,loopback,ptp} \
  github.com/containernetworking/plugins/plugins/ipam/host-local \
  github.com/containernetworking/plugins/plugins/meta/portmap
crictl="$parts/crictl-$CRICTL_VERSION"
LDFLAGS="-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
  goinstall "$crictl" "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
lpp="$parts/local-path-provisioner-$LOCAL_PATH_VERSION"
LDFLAGS="-X main.VERSION=$LOCAL_PATH_VERSION" \
  goinstall "$lpp" "$LOCAL_PATH_VERSION" github.com/rancher/local-path-provisioner
coredns="$parts/coredns-$COREDNS_VERSION"
if [ ! -x "$coredns/coredns" ]; then
  step "CoreDNS $COREDNS_VERSION (kubeadm's Corefile plugins only)"
  mkdir -p "$coredns"
  (cd "$here/coredns" && GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w \
    -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$coredns/coredns" .) >&2
fi
pause="$parts/pause-$PAUSE_VERSION"
if [ ! -x "$pause/pause" ]; then
  step "pause $PAUSE_VERSION (gcc -static)"
  mkdir -p "$pause"
  src=$(cd "$harness/gomod" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  gcc -Os -static -Wall -DVERSION="v$PAUSE_VERSION" -o "$pause/pause" "$src/build/pause/linux/pause.c"
  strip "$pause/pause"
fi
kindsrc=$(go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -d "$kindsrc/images/base/files" ] || { echo "kind $KIND_VERSION module has no images/base" >&2; exit 1; }
if [ "$parts_only" = 1 ]; then echo "$parts"; exit 0; fi

# -- the images the node preloads --------------------------------------------------------------
base=$("$harness/make-base-image.sh")
work=$(mktemp -d /tmp/learnops-kind-node.XXXXXX)
trap 'rm -rf "$work"' EXIT
static_image() {  # static_image <tag> <binary>: FROM scratch, the binary on PATH and as entrypoint
  local tag=$1 bin=$2
  local ctx="$work/img-$(basename "$bin")"
  mkdir -p "$ctx"
  cp "$bin" "$ctx/"
  { echo "FROM scratch"; echo "COPY $(basename "$bin") /usr/local/bin/"
    echo "ENV PATH=/usr/local/bin"; echo "ENTRYPOINT [\"/usr/local/bin/$(basename "$bin")\"]"
  } >"$ctx/Dockerfile"
  docker build -q -t "$tag" "$ctx" >/dev/null
  echo "$tag"
}
debian_image() {  # debian_image <tag> "<apt packages>" <binary>: bookworm base, for tools that exec
  local tag=$1 pkgs=$2 bin=$3
  local ctx="$work/img-deb-${tag//[^a-z0-9]/-}"
  mkdir -p "$ctx"
  { echo "FROM $base"
    echo "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
--no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin"
    cp "$bin" "$ctx/"; echo "COPY $(basename "$bin") /usr/local/bin/"
  } >"$ctx/Dockerfile"
  docker build -q --network host -t "$tag" "$ctx" >/dev/null
  echo "$tag"
}
step "control-plane, CoreDNS, pause and storage images"
reg=registry.k8s.io
images=(
  "$(static_image "$reg/kube-apiserver:$k8s_version" "$k8sbin/kube-apiserver")"
  "$(static_image "$reg/kube-controller-manager:$k8s_version" "$k8sbin/kube-controller-manager")"
  "$(static_image "$reg/kube-scheduler:$k8s_version" "$k8sbin/kube-scheduler")"
  "$(static_image "$reg/etcd:3.6.8-0" "$k8sbin/etcd")"
  "$(static_image "$reg/coredns/coredns:$COREDNS_VERSION" "$coredns/coredns")"
  "$(static_image "$reg/pause:$PAUSE_VERSION" "$pause/pause")"
  "$(static_image "docker.io/learnops/local-path-provisioner:$LOCAL_PATH_VERSION" \
      "$lpp/local-path-provisioner")"
  # kube-proxy programs iptables and conntrack
  "$(debian_image "$reg/kube-proxy:$k8s_version" "iptables conntrack" "$k8sbin/kube-proxy")"
)
# local-path's helper pod only needs a shell (mkdir, rm): the base itself, sharing its layer.
docker tag "$base" docker.io/learnops/local-path-helper:bookworm
images+=(docker.io/learnops/local-path-helper:bookworm)
# kind's containerd config names pause:3.10 as its sandbox image.
docker tag "$reg/pause:$PAUSE_VERSION" "$reg/pause:3.10"
images+=("$reg/pause:3.10")

# -- the node itself ---------------------------------------------------------------------------
step "node image $image"
ctx="$work/node"
mkdir -p "$ctx/files" "$ctx/bin" "$ctx/cni" "$ctx/images"
cp -r "$kindsrc/images/base/files/." "$ctx/files/"
chmod -R u+w "$ctx/files"
cp "$k8sbin"/{kubelet,kubeadm,kubectl} "$ctx/bin/"
cp "$ctrd"/* "$crictl/crictl" "$ctx/bin/"
cp "$cni"/* "$ctx/cni/"
sed "s/@LOCAL_PATH_VERSION@/$LOCAL_PATH_VERSION/" "$here/files/default-storage.yaml" \
  >"$ctx/default-storage.yaml"
cp "$here/files/10-learnops-bridge.conflist" "$here/files/learnops-preload-images.service" "$ctx/"
docker save "${images[@]}" -o "$ctx/images/preload.tar"
echo "${k8s_version}" >"$ctx/version"
docker build --network host --build-arg "BASE=$base" -t "$image" -f "$here/Dockerfile" "$ctx" >&2
echo "$image"
