#!/bin/sh
# Start dockerd as a nested engine. On cgroup v2 the container's own processes
# move into a child group first, so that dockerd may hand the controllers down
# to the containers it starts (a cgroup with processes cannot delegate them).
# Only in a cgroup namespace of its own (privileged on a v2 host); on v1 the file
# below does not exist.
set -eu
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
    sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
        > /sys/fs/cgroup/cgroup.subtree_control
fi
# The storage driver is the caller's to choose (the host engine's, which works here).
exec dockerd --host=unix:///var/run/docker.sock "$@"
