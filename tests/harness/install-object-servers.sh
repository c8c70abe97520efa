#!/usr/bin/env bash
# Builds the object-storage servers the tests talk to, cached by version under
# $LEARNOPS_CACHE: SeaweedFS (S3) and fake-gcs-server (GCS) from the Go module proxy,
# Azurite (Azure Blob) from npm. Idempotent; prints nothing on stdout but the bin dir.
# MinIO is not used: its server licence is not one we accept.
# Usage: install-object-servers.sh [s3] [gcs] [azureBlob]   (default: all three)
set -euo pipefail
want=" ${*:-s3 gcs azureBlob} "
cache=${LEARNOPS_CACHE:-$HOME/.cache/learnops}
SEAWEEDFS_VERSION=${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
FAKE_GCS_VERSION=${FAKE_GCS_VERSION:-v1.56.1}
AZURITE_VERSION=${AZURITE_VERSION:-3.37.0}
export GOPROXY=${LEARNOPS_GOPROXY:-$(go env GOPROXY | sed -E "s/[,|]direct$//")} GOFLAGS=-buildvcs=false CGO_ENABLED=0
step() { printf '==> %s\n' "$*" >&2; }
bin="$cache/bin"
mkdir -p "$bin"

weed="$cache/seaweedfs-$SEAWEEDFS_VERSION/bin/weed"
if [[ $want == *" s3 "* ]] && [ ! -x "$weed" ]; then
  step "go build SeaweedFS $SEAWEEDFS_VERSION (slow: several minutes on 2 cores)"
  # Its go.mod has a replace directive, so `go install pkg@version` refuses it: build the
  # downloaded module (the proxy's zip, go.sum included) as the main module instead.
  src=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$(dirname "$weed")"
  (cd "$src" && go build -trimpath -ldflags=-s -o "$weed.partial" ./weed) >&2
  mv "$weed.partial" "$weed"
fi
[ -x "$weed" ] && ln -sf "$weed" "$bin/weed"

gcs="$cache/fake-gcs-server-$FAKE_GCS_VERSION/bin/fake-gcs-server"
if [[ $want == *" gcs "* ]] && [ ! -x "$gcs" ]; then
  step "go install fake-gcs-server $FAKE_GCS_VERSION"
  GOBIN=$(dirname "$gcs") go install "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION" >&2
fi
[ -x "$gcs" ] && ln -sf "$gcs" "$bin/fake-gcs-server"

azurite="$cache/azurite-$AZURITE_VERSION"
if [[ $want == *" azureBlob "* ]] && [ ! -x "$azurite/node_modules/.bin/azurite-blob" ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is required for Azurite (apt-get install npm)" >&2; exit 1; }
  step "npm install azurite@$AZURITE_VERSION"
  mkdir -p "$azurite"
  npm install --prefix "$azurite" --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >&2
fi
[ -x "$azurite/node_modules/.bin/azurite-blob" ] &&
  ln -sf "$azurite/node_modules/.bin/azurite-blob" "$bin/azurite-blob"
echo "$bin"
