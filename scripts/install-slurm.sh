#!/usr/bin/env bash
# Install the Debian packages for the local SLURM test cluster (tests/slurm), if missing.
# 8 packages, about 9 s: slurmctld slurmd slurm-client munge (+ slurm-wlm-basic-plugins, libmunge2,
# libhwloc15, liblua5.1-0). Needs root (or sudo). No-op when slurmctld, slurmd, sbatch and munged exist.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
   && { command -v munged >/dev/null || [ -x /usr/sbin/munged ]; }; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO="sudo -n"; else
        echo "install-slurm.sh: not root and no sudo: install slurmctld slurmd slurm-client munge yourself" >&2
        exit 1
    fi
fi
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    slurmctld slurmd slurm-client munge
