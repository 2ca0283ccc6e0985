# Shared by the test clusters' scripts (slurm-up.sh / slurm-down.sh: one node on loopback; mn-slurm-up.sh /
# mn-slurm-down.sh: one network namespace per node). Sourced, not run. B is the cluster's state folder.

# The slurm.conf lines both clusters share: munge auth, private state/log folders, no cgroups or accounting,
# GPU GRES, and a scheduler that starts batch jobs at once (the default batch_sched_delay waits ~3 s).
slurm_conf_common() {  # B DEFMEM_MIB
    cat <<CONF
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$1/munge/munge.socket.2
StateSaveLocation=$1/ctld
SlurmdSpoolDir=$1/spool/%n
SlurmctldPidFile=$1/run/slurmctld.pid
SlurmctldLogFile=$1/log/slurmctld.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$2
GresTypes=gpu
EnforcePartLimits=ALL
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=300
MailProg=/bin/true
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
CONF
}

# A private munge key and munged on a socket in B (the socket folder must be 0755).
start_munge() {  # B
    local munged
    munged="$(command -v munged || echo /usr/sbin/munged)"
    mungekey -c -k "$1/munge/munge.key" >/dev/null 2>&1 || return 1
    "$munged" --socket="$1/munge/munge.socket.2" --key-file="$1/munge/munge.key" --pid-file="$1/munge/munged.pid" \
        --log-file="$1/munge/munged.log" --seed-file="$1/munge/munged.seed"
}

# Stop a cluster: cancel its jobs and wait for them to leave, then stop every slurmd, slurmctld and munged by the
# PIDs in their pid files (SIGTERM, SIGKILL after 10 s). slurmds first: they ignore SIGTERM while slurmctld is gone.
slurm_stop() {  # B
    local f
    if [ -f "$1/etc/slurm.conf" ] && [ -f "$1/run/slurmctld.pid" ]; then
        SLURM_CONF="$1/etc/slurm.conf" timeout 5 scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 25); do
            [ -z "$(SLURM_CONF="$1/etc/slurm.conf" timeout 5 squeue -h 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    for f in "$1"/run/slurmd*.pid; do _stop_pidfile "$f"; done
    _stop_pidfile "$1/run/slurmctld.pid"
    _stop_pidfile "$1/munge/munged.pid"
}

_stop_pidfile() {  # pidfile
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
