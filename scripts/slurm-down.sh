#!/usr/bin/env bash
# Stop the cluster started by slurm-up.sh: scancel leftovers, then slurmd, slurmctld, munged by the PIDs
# in their pid files (SIGTERM, SIGKILL after 10 s). slurmd first: it ignores SIGTERM while slurmctld is gone.
set -uo pipefail
B="${SLURM_CI_DIR:-/tmp/slurm-ci}"
export PATH="$PATH:/usr/sbin"
source "$(dirname "$0")/slurm-lib.sh"
slurm_stop "$B"
echo "slurm-down: stopped cluster in $B" >&2
