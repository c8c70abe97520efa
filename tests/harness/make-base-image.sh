#!/usr/bin/env bash
# Makes the local stand-in for debian:bookworm-slim (no image registry is reachable here):
# debootstrap a minimal bookworm and `docker import` it. Idempotent. Prints the image name.
set -euo pipefail
image=${LEARNOPS_BASE_IMAGE:-learnops-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi
root=$(mktemp -d /tmp/learnops-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrapping bookworm into $root (a few minutes)" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
# Like the slim image: same sources as the official one, no apt caches, no docs.
cat >"$root/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/*
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' - "$image" >&2
echo "$image"
