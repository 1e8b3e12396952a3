#!/usr/bin/env bash
# Make sure the image every Dockerfile starts FROM exists locally.
#
# Order: already present -> done; `docker pull` (bounded, so a machine without a
# registry does not hang) -> done; otherwise build it with debootstrap and
# `docker import`. The imported image is a minbase bookworm with apt's caches and
# docs removed, close to the official slim image.
set -euo pipefail

image="${1:-debian:bookworm-slim}"
suite="${SANDBOX_BASE_SUITE:-bookworm}"
mirror="${SANDBOX_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image: present"
  exit 0
fi

echo "base image $image: not found locally, trying docker pull (60 s at most)"
if timeout 60 docker pull "$image" >/dev/null 2>&1; then
  echo "base image $image: pulled"
  exit 0
fi

echo "base image $image: pull failed, creating it with debootstrap ($suite from $mirror)"
if ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y debootstrap >/dev/null
  else
    echo "debootstrap is missing: install it (sudo apt-get install debootstrap) and run again" >&2
    exit 1
  fi
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi

root="$(mktemp -d /tmp/sandbox-rootfs.XXXXXX)"
trap '$sudo rm -rf "$root"' EXIT
$sudo debootstrap --variant=minbase "$suite" "$root" "$mirror"
# Trim what the slim image does not carry either.
$sudo rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
  "$root"/var/cache/apt/archives/*.deb "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/tmp/*
$sudo tar -C "$root" -c . | docker import \
  --change 'CMD ["bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  - "$image" >/dev/null
echo "base image $image: created"
