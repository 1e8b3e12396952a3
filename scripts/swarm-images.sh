#!/usr/bin/env bash
# Copy the session images from this engine (a swarm manager) into other nodes'
# engines, keeping their image ids: the swarm runtime runs every service by the
# id the image has here, so no node pulls anything and a node without the image
# is named in the error ("node X has no image ...").
#
#   scripts/swarm-images.sh ssh://user@node2 ssh://user@node3     # DOCKER_HOST forms
#   SANDBOX_IMAGE_NAMESPACE=myns scripts/swarm-images.sh tcp://10.0.0.7:2376
#
# Images: <namespace>/shell, /desktop and /rag (those that exist here). With a
# registry instead: `sandbox images build --push HOST:PORT` and the setting
# swarm.registry (scripts/swarm-registry.sh runs one on the manager).
set -euo pipefail
namespace="${SANDBOX_IMAGE_NAMESPACE:-sandbox}"
if [ "$#" -eq 0 ]; then
    echo "usage: $0 DOCKER_HOST [DOCKER_HOST...]" >&2
    exit 2
fi
images=()
for name in shell desktop rag; do
    if docker image inspect "$namespace/$name:latest" >/dev/null 2>&1; then
        images+=("$namespace/$name:latest")
    fi
done
if [ "${#images[@]}" -eq 0 ]; then
    echo "no $namespace/* images here: run \`sandbox images build\` first" >&2
    exit 1
fi
for node in "$@"; do
    echo "==> ${images[*]} -> $node"
    docker save "${images[@]}" | docker -H "$node" load
done
