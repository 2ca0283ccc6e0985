#!/usr/bin/env bash
# Stop what mn-slurm-up.sh started (same MN_DIR, MN_NODES, MN_PREFIX): cancel jobs, stop the daemons by their pid
# files (slurm-lib.sh), delete the namespaces and the bridge.
set -uo pipefail
B="${MN_DIR:-/tmp/mn-slurm}"; N="${MN_NODES:-2}"; X="${MN_PREFIX:-vp}"
export PATH="$PATH:/usr/sbin"
source "$(dirname "$0")/slurm-lib.sh"
slurm_stop "$B"
for i in $(seq 1 "$N"); do ip netns del "${X}n$i" 2>/dev/null; done
ip link del "${X}br0" 2>/dev/null
echo "mn-slurm-down: stopped cluster in $B" >&2
true
