#!/usr/bin/env bash
# Stop the cluster started by slurm-up.sh: scancel leftovers, then slurmd, slurmctld, munged by the PIDs
# in their pid files (SIGTERM, SIGKILL after 10 s). slurmd first: it ignores SIGTERM while slurmctld is gone.
set -uo pipefail
B="${SLURM_CI_DIR:-/tmp/slurm-ci}"
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
        # gone, or a zombie waiting to be reaped, counts as stopped
        if ! kill -0 "$pid" 2>/dev/null || [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" = Z ]; then rm -f "$1"; return 0; fi
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1"
}
stop "$B/run/slurmd.pid"
stop "$B/run/slurmctld.pid"
stop "$B/munge/munged.pid"
echo "slurm-down: stopped cluster in $B" >&2
