#!/usr/bin/env bash
# Stop what mn-slurm-up.sh started (same MN_DIR, MN_NODES, MN_PREFIX): cancel jobs, stop the daemons by their pid
# files (SIGTERM, SIGKILL after 10 s; slurmds first: they ignore SIGTERM while slurmctld is gone), delete the
# namespaces and the bridge.
set -uo pipefail
B="${MN_DIR:-/tmp/mn-slurm}"; N="${MN_NODES:-2}"; X="${MN_PREFIX:-vp}"
export PATH="$PATH:/usr/sbin"
if [ -f "$B/etc/slurm.conf" ] && [ -f "$B/run/slurmctld.pid" ]; then
    export SLURM_CONF="$B/etc/slurm.conf"
    timeout 5 scancel --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 25); do
        [ -z "$(timeout 5 squeue -h 2>/dev/null)" ] && break
        sleep 0.2
    done
fi
stop() {  # pidfile
    [ -f "$1" ] || return 0
    local pid; pid="$(cat "$1")"
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
    for _ in $(seq 50); do
        if ! kill -0 "$pid" 2>/dev/null || [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ]; then rm -f "$1"; return 0; fi
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1"
}
for f in "$B"/run/slurmd.n*.pid; do stop "$f"; done
stop "$B/run/slurmctld.pid"
stop "$B/munge/munged.pid"
for i in $(seq 1 "$N"); do ip netns del "${X}n$i" 2>/dev/null; done
ip link del "${X}br0" 2>/dev/null
echo "mn-slurm-down: stopped cluster in $B" >&2
true
