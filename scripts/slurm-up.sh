#!/usr/bin/env bash
# Start a private single-node SLURM cluster on loopback with fake GPUs (recipe: docs of tests/slurm).
# Prints `export SLURM_CONF=...` on stdout (use: eval "$(scripts/slurm-up.sh)"); progress on stderr.
# Knobs (environment):
#   SLURM_CI_DIR      working folder                       [/tmp/slurm-ci]
#   SLURM_CI_GPUS     fake GPUs on the node                [2]
#   SLURM_CI_GPUTYPE  GRES type, e.g. a100 (empty: untyped) []
#   SLURM_CI_CPUS     CPUs of the node                     [slurmd -C]
#   SLURM_CI_MEM      RealMemory in MiB                    [95 % of slurmd -C]
#   SLURM_CI_FAKE=1   SlurmdParameters=config_overrides: advertise more CPUs/memory than the machine has
#   SLURM_CI_MAXTIME  partition MaxTime                    [2-00:00:00]
#   SLURM_CI_PORT     slurmctld port; slurmd uses port+1   [6817]
#   SLURM_CI_DEVMODE  link (symlink to /dev/null) | mknod  [link]
#   SLURM_CI_DEFMEM   DefMemPerCPU in MiB                  [1024]
#   SLURM_CI_TIMEOUT  seconds to wait for the node to be idle [30]
# On failure: prints the log tails, tears down, exits 1.
set -euo pipefail
B="${SLURM_CI_DIR:-/tmp/slurm-ci}"
GPUS="${SLURM_CI_GPUS:-2}"
GPUTYPE="${SLURM_CI_GPUTYPE:-}"
PORT="${SLURM_CI_PORT:-6817}"
MAXTIME="${SLURM_CI_MAXTIME:-2-00:00:00}"
DEVMODE="${SLURM_CI_DEVMODE:-link}"
DEFMEM="${SLURM_CI_DEFMEM:-1024}"
TIMEOUT="${SLURM_CI_TIMEOUT:-30}"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/slurm-lib.sh"
log() { echo "slurm-up: $*" >&2; }

for exe in slurmctld slurmd sinfo mungekey; do
    command -v "$exe" >/dev/null || [ -x "/usr/sbin/$exe" ] || { log "$exe not found: run scripts/install-slurm.sh"; exit 1; }
done
MUNGED="$(command -v munged || echo /usr/sbin/munged)"
[ -x "$MUNGED" ] || { log "munged not found: run scripts/install-slurm.sh"; exit 1; }
export PATH="$PATH:/usr/sbin"

HW="$(slurmd -C | head -1)"
HWCPUS="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$HW")"
HWMEM="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")"
CPUS="${SLURM_CI_CPUS:-$HWCPUS}"
MEM="${SLURM_CI_MEM:-$((HWMEM * 95 / 100))}"
ME="$(id -un)"

if [ -f "$B/run/slurmctld.pid" ] || [ -f "$B/munge/munged.pid" ]; then
    log "stale cluster in $B: stopping it first"
    SLURM_CI_DIR="$B" bash "$HERE/slurm-down.sh" >&2 || true
fi
rm -rf "$B"
mkdir -p "$B"/{etc,ctld,spool,run,log,dev,munge}
chmod 755 "$B" "$B/munge"

GRES_NODE="gpu:$GPUS"; TYPE_CONF=""
if [ -n "$GPUTYPE" ]; then GRES_NODE="gpu:$GPUTYPE:$GPUS"; TYPE_CONF="Type=$GPUTYPE "; fi
for ((i = 0; i < GPUS; i++)); do
    if [ "$DEVMODE" = mknod ]; then mknod -m 666 "$B/dev/nvidia$i" c 195 "$i"; else ln -s /dev/null "$B/dev/nvidia$i"; fi
done
OVERRIDES=""
[ "${SLURM_CI_FAKE:-0}" = 1 ] && OVERRIDES="SlurmdParameters=config_overrides"

{
cat <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmdPidFile=$B/run/slurmd.pid
SlurmdLogFile=$B/log/slurmd.log
$OVERRIDES
NodeName=ci01 NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$CPUS RealMemory=$MEM Gres=$GRES_NODE State=UNKNOWN
PartitionName=gpu Nodes=ci01 Default=YES MaxTime=$MAXTIME State=UP
CONF
slurm_conf_common "$B" "$DEFMEM"
} >"$B/etc/slurm.conf"
LAST=$((GPUS - 1))
if [ "$GPUS" -gt 0 ]; then
    printf 'AutoDetect=off\nNodeName=ci01 Name=gpu %sCount=%s File=%s/dev/nvidia[0-%s]\n' "$TYPE_CONF" "$GPUS" "$B" "$LAST" >"$B/etc/gres.conf"
else
    printf 'AutoDetect=off\n' >"$B/etc/gres.conf"
fi

fail() {
    log "$*"
    for f in "$B"/log/*.log "$B"/munge/munged.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    SLURM_CI_DIR="$B" bash "$HERE/slurm-down.sh" >&2 || true
    exit 1
}
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge "$B" || fail "munge did not start"
export SLURM_CONF="$B/etc/slurm.conf"
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" -N ci01 || fail "slurmd did not start"

deadline=$((SECONDS + TIMEOUT))
while :; do
    sleep 0.2
    for p in "$B/munge/munged.pid" "$B/run/slurmctld.pid" "$B/run/slurmd.pid"; do
        alive "$p" || fail "daemon of $p died"
    done
    state="$(timeout 5 sinfo -h -N -o '%t' 2>/dev/null | head -1 || true)"
    [ "$state" = idle ] && break
    [ $SECONDS -ge $deadline ] && fail "node not idle after ${TIMEOUT}s (state: ${state:-none})"
done
log "up in $B: $(sinfo -h -N -o '%N %t CPUs=%c Mem=%m %G')"
printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"
