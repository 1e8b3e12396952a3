#!/usr/bin/env bash
# A private registry on the swarm manager, for swarms without one: Debian's
# docker-registry (deploy/registry/Dockerfile) in a container, its layers on a
# volume. Fill it with `sandbox images build --push HOST:PORT` and serve with
# `swarm.registry: HOST:PORT`: every node then pulls the session images from it.
#
#   scripts/swarm-registry.sh start [PUBLISH...]   # default 5000: every address, port 5000
#   scripts/swarm-registry.sh stop                 # the container; the volume stays
#   scripts/swarm-registry.sh purge                # the container and its volume
#
# PUBLISH is docker's -p host side: 5000, 10.0.0.1:5000, or 127.0.0.1: (any free port).
# It speaks plain HTTP: list HOST:PORT in "insecure-registries" of every node's
# /etc/docker/daemon.json (the manager's too; 127.0.0.1 needs none), or put TLS in front.
# `start` prints the published address of the first PUBLISH (as HOST:PORT) last.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
namespace="${SANDBOX_IMAGE_NAMESPACE:-sandbox}"
name="${SANDBOX_REGISTRY_NAME:-sandbox-registry}"
image="$namespace/registry:latest"
case "${1:-}" in
start)
    shift
    publish=("${@:-5000}")
    docker build -q -t "$image" "$here/deploy/registry" >/dev/null
    args=()
    for spec in "${publish[@]}"; do
        args+=(-p "$spec:5000")
    done
    docker run -d --name "$name" --restart unless-stopped --label sandbox.registry=1 \
        -v "$name:/var/lib/registry" "${args[@]}" "$image" >/dev/null
    for _ in $(seq 100); do  # until it listens
        if docker logs "$name" 2>&1 | grep -q "listening on"; then
            break
        fi
        sleep 0.1
    done
    docker port "$name" 5000 | head -n1
    ;;
stop) docker rm -f "$name" >/dev/null ;;
purge) docker rm -f "$name" >/dev/null 2>&1 || true; docker volume rm "$name" >/dev/null ;;
*)
    echo "usage: $0 start [PUBLISH...] | stop | purge" >&2
    exit 2
    ;;
esac
