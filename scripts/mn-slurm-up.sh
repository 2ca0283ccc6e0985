#!/usr/bin/env bash
# A real multi-node SLURM cluster on this one machine: each node is a network namespace with its own address on a
# private bridge (so jobs that span nodes talk over TCP between "nodes", as on a cluster); slurmctld runs in the
# root namespace on the bridge address, one slurmd per namespace. Fake GPU GRES (symlinks to /dev/null), and
# SlurmdParameters=config_overrides so nodes may advertise more CPUs/memory than the machine has (sbatch --test-only
# of big jobs). Needs root, iproute2, nsenter and Debian's slurmctld/slurmd/munge (scripts/install-slurm.sh).
# Prints `export SLURM_CONF=...` on stdout; on failure prints the log tails, tears down and exits 1.
# Knobs (environment; keep MN_PREFIX, MN_NET and MN_PORT distinct from any other cluster on the machine):
#   MN_DIR [/tmp/mn-slurm]  MN_NODES [2]  MN_GPUS per node [2]  MN_GPUTYPE [a100]  MN_CPUS per node [4]
#   MN_MEM per node, MiB [122070]  MN_PORT slurmctld (slurmd: +1) [6917]  MN_NET first 3 octets [10.77.0]
#   MN_MAXTIME [2-00:00:00]  MN_PREFIX bridge/namespace/veth names, <= 4 characters [vp]  MN_TIMEOUT s [60]
# Pitfalls (from the recipe this follows): slurmd must be started with `nsenter --net` (`ip netns exec` remounts
# /sys and slurmd then finds no cgroup fs); SlurmctldHost must be this machine's short hostname with the bridge
# address; the hostname resolves to loopback in every namespace, so jobs find a node's address from its interface.
set -euo pipefail
B="${MN_DIR:-/tmp/mn-slurm}"; N="${MN_NODES:-2}"; G="${MN_GPUS:-2}"; T="${MN_GPUTYPE:-a100}"
C="${MN_CPUS:-4}"; M="${MN_MEM:-122070}"; P="${MN_PORT:-6917}"; NET="${MN_NET:-10.77.0}"
MAXT="${MN_MAXTIME:-2-00:00:00}"; X="${MN_PREFIX:-vp}"; BR="${X}br0"; TIMEOUT="${MN_TIMEOUT:-60}"
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/slurm-lib.sh"
export PATH="$PATH:/usr/sbin"
log() { echo "mn-slurm-up: $*" >&2; }
fail() {
    log "$*"
    for f in "$B"/log/*.log "$B"/munge/munged.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
    MN_DIR="$B" MN_NODES="$N" MN_PREFIX="$X" bash "$HERE/mn-slurm-down.sh" >&2 || true
    exit 1
}
for exe in ip nsenter slurmctld slurmd sinfo mungekey; do
    command -v "$exe" >/dev/null || { log "$exe not found (root, iproute2, util-linux, scripts/install-slurm.sh)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { log "network namespaces need root"; exit 1; }
if ip link show "$BR" >/dev/null 2>&1; then
    log "bridge $BR exists: a cluster with prefix $X is up; stopping it first"
    MN_DIR="$B" MN_NODES="$N" MN_PREFIX="$X" bash "$HERE/mn-slurm-down.sh" >&2 || true
fi

# 1. network: the bridge at $NET.1 in the root namespace, node i at $NET.(10+i) in namespace ${X}n$i
ip link add "$BR" type bridge || fail "cannot create bridge $BR"
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
for i in $(seq 1 "$N"); do
    ip netns add "${X}n$i"
    ip link add "${X}veth$i" type veth peer name eth0 netns "${X}n$i"
    ip link set "${X}veth$i" master "$BR"
    ip link set "${X}veth$i" up
    ip netns exec "${X}n$i" ip addr add "$NET.$((10 + i))/24" dev eth0
    ip netns exec "${X}n$i" ip link set eth0 up
    ip netns exec "${X}n$i" ip link set lo up
done

# 2. munge: a unix socket on the file system, reachable from every namespace
rm -rf "$B"; mkdir -p "$B"/{etc,log,run,ctld,spool,dev,munge}; chmod 755 "$B" "$B/munge"
for ((g = 0; g < G; g++)); do ln -s /dev/null "$B/dev/nvidia$g"; done
start_munge "$B" || fail "munge did not start"

# 3. slurm.conf and gres.conf
NODES="$(seq -s, -f "n%g" 1 "$N")"
{
cat <<CONF
ClusterName=mn
SlurmctldHost=$(hostname -s)($NET.1)
SlurmctldPort=$P
SlurmdPort=$((P + 1))
SlurmdPidFile=$B/run/slurmd.%n.pid
SlurmdLogFile=$B/log/slurmd.%n.log
SlurmdParameters=config_overrides
CONF
slurm_conf_common "$B" 1024
for i in $(seq 1 "$N"); do
    echo "NodeName=n$i NodeAddr=$NET.$((10 + i)) NodeHostname=n$i CPUs=$C RealMemory=$M Gres=gpu:$T:$G State=UNKNOWN"
done
echo "PartitionName=gpu Nodes=$NODES Default=YES MaxTime=$MAXT State=UP"
} >"$B/etc/slurm.conf"
{ echo "AutoDetect=off"
  for i in $(seq 1 "$N"); do echo "NodeName=n$i Name=gpu Type=$T Count=$G File=$B/dev/nvidia[0-$((G - 1))]"; done
} >"$B/etc/gres.conf"

# 4. daemons
export SLURM_CONF="$B/etc/slurm.conf"
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
for i in $(seq 1 "$N"); do
    mkdir -p "$B/spool/n$i"
    nsenter --net="/var/run/netns/${X}n$i" slurmd -f "$SLURM_CONF" -N "n$i" || fail "slurmd n$i did not start"
done
deadline=$((SECONDS + TIMEOUT))
while :; do
    sleep 0.3
    [ -f "$B/run/slurmctld.pid" ] && kill -0 "$(cat "$B/run/slurmctld.pid")" 2>/dev/null || fail "slurmctld died"
    idle="$(timeout 5 sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l || true)"
    [ "$idle" = "$N" ] && break
    [ $SECONDS -ge $deadline ] && fail "only $idle of $N nodes idle after ${TIMEOUT}s"
done
log "up in $B: $N nodes $NET.11-$((10 + N)) ($(timeout 5 sinfo -h -N -o '%N %t %c %m %G' | head -1) ...)"
printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"
