#!/usr/bin/env bash
# Everything a fresh machine with Docker needs before `sandbox serve` or the tests:
#   1. a Docker engine that answers (started when installed but not running),
#   2. a virtualenv in .venv with the project installed (with the dev extras),
#   3. the debian:bookworm-slim base image (pulled, or made with debootstrap),
#   4. the session images (`sandbox images build`; Docker's cache makes reruns fast),
#   5. for docker-compose.yml: Docker Compose (Debian's docker-compose when neither
#      `docker compose` nor `docker-compose` is there), the wheels the image builds
#      install (scripts/fetch-wheels.sh) and the server image (sandbox/server:latest),
#   6. for the /ui page's browser tests: Debian's chromium and chromium-driver,
#      and Debian's novnc, whose noVNC the page's live view loads from the server.
#   7. for the multi-node swarm tests: the node image (Debian's docker.io in a
#      container, tests/integration/swarm_node). The swarm itself is the tests'
#      to make: they init one when this engine is in none, and leave it afterwards.
# Idempotent; scripts/serve.sh and scripts/test.sh run it first.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

ensure_docker() {
  if docker info >/dev/null 2>&1; then
    return
  fi
  if ! command -v dockerd >/dev/null 2>&1 && ! command -v docker >/dev/null 2>&1; then
    echo "Docker is not installed: install Docker Engine first" >&2
    exit 1
  fi
  log "Docker engine not answering; starting it"
  if command -v systemctl >/dev/null 2>&1 && systemctl start docker 2>/dev/null; then
    :
  elif command -v service >/dev/null 2>&1 && service docker start >/dev/null 2>&1; then
    :
  elif command -v dockerd >/dev/null 2>&1; then
    nohup dockerd >/tmp/sandbox-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  echo "Docker engine did not come up (see /tmp/sandbox-dockerd.log)" >&2
  exit 1
}

ensure_venv() {
  local python="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($python --version)"
    "$python" -m venv .venv
  fi
  log "installing the project into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
}

ensure_compose() {
  if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Docker Compose (Debian's docker-compose)"
    apt-get install -y -qq docker-compose >/dev/null
  else
    echo "Docker Compose is missing: install it (docker-compose-plugin or docker-compose)" >&2
    exit 1
  fi
}

ensure_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
    && [ -f /usr/share/novnc/core/rfb.js ]; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's chromium, chromium-driver and novnc (tests/integration/test_ui*.py)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver novnc >/dev/null
  else
    echo "warning: chromium, chromedriver or novnc is missing, so tests/integration/test_ui*.py" \
      "will fail: install them (Debian: apt-get install chromium chromium-driver novnc)" >&2
  fi
}

ensure_docker
ensure_venv
log "base image"
scripts/bootstrap-base-image.sh
log "session images"
.venv/bin/sandbox images build
log "compose: Docker Compose, image wheels, server image"
ensure_compose
scripts/fetch-wheels.sh
docker build --quiet -f images/server/Dockerfile -t sandbox/server:latest . >/dev/null
log "browser for the /ui tests"
ensure_browser
log "swarm tests: node image"
docker build --quiet -t "${SANDBOX_IMAGE_NAMESPACE:-sandbox}/swarm-node:latest" \
  tests/integration/swarm_node >/dev/null
