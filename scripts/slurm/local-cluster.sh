#!/usr/bin/env bash
# A one-node Slurm on 127.0.0.1 for the tests: munged, slurmctld and slurmd as background
# processes of this script, with their config, state, logs and pids under one folder.
#
#   scripts/slurm/local-cluster.sh start   # idempotent: a running cluster is left as it is
#   scripts/slurm/local-cluster.sh stop    # by pid; nothing else on the machine is touched
#   scripts/slurm/local-cluster.sh status
#   scripts/slurm/local-cluster.sh env     # prints `export SLURM_CONF=...` for a shell
#
# Debian's slurmctld, slurmd, slurm-client and munge are installed when missing (as root).
# Ports are not Slurm's defaults, so a real slurmd on the machine is not disturbed.
set -euo pipefail

DIR="${RLCTL_SLURM_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/.slurm}"
CTLD_PORT="${RLCTL_SLURM_CTLD_PORT:-16817}"
SLURMD_PORT="${RLCTL_SLURM_SLURMD_PORT:-16818}"
NODE=localnode
CONF="$DIR/slurm.conf"
MUNGE_SOCKET="$DIR/munge/munge.socket"

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null && return 0
    if [[ $(id -u) -ne 0 ]]; then
        echo "local-cluster: slurmctld/slurmd/munge are missing and installing them needs root" >&2
        exit 2
    fi
    echo "local-cluster: installing slurmctld slurmd slurm-client munge" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null \
        || { apt-get update -q >/dev/null && apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null; }
}

write_config() {
    mkdir -p "$DIR"/{state,spool,munge,key,log}
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    cat >"$CONF" <<EOF
# Written by scripts/slurm/local-cluster.sh; rewritten on each start.
ClusterName=rlctl-local
SlurmctldHost=$(hostname -s)(127.0.0.1)
MailProg=/bin/true
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0
EnforcePartLimits=ALL
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MinJobAge=600
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$(hostname) CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    install_packages
    if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && alive "$DIR/munged.pid"; then
        echo "local-cluster: already running ($DIR)" >&2
        return 0
    fi
    stop quiet
    # another checkout's cluster on the same ports would take this one's jobs and refuse its
    # munge credentials ("the node never became idle"): say so instead
    local port
    for port in "$CTLD_PORT" "$SLURMD_PORT"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "local-cluster: 127.0.0.1:$port is taken (another checkout's local cluster?" \
                 "its scripts/slurm/local-cluster.sh stop frees it); or choose other ports with" \
                 "RLCTL_SLURM_CTLD_PORT and RLCTL_SLURM_SLURMD_PORT" >&2
            exit 1
        fi
    done
    write_config
    # munged wants a key only its user can read, and a socket folder everyone can enter.
    if [[ ! -s "$DIR/key/munge.key" ]]; then
        dd if=/dev/urandom of="$DIR/key/munge.key" bs=1 count=1024 status=none
    fi
    chmod 700 "$DIR/key" && chmod 400 "$DIR/key/munge.key" && chmod 755 "$DIR/munge"
    munged --force --key-file="$DIR/key/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    export SLURM_CONF="$CONF"
    slurmctld -f "$CONF"
    slurmd -f "$CONF" -N "$NODE"
    for _ in $(seq 1 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
            echo "local-cluster: up ($DIR); export SLURM_CONF=$CONF" >&2
            return 0
        fi
        sleep 0.5
    done
    echo "local-cluster: the node never became idle; logs in $DIR/log" >&2
    tail -n 20 "$DIR"/log/*.log >&2 || true
    exit 1
}

stop() {
    local pidfile pid
    for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munged.pid"; do
        if alive "$pidfile"; then
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
    [[ "${1:-}" == quiet ]] || echo "local-cluster: stopped" >&2
}

case "${1:-status}" in
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    status)
        if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid"; then
            SLURM_CONF="$CONF" sinfo
        else
            echo "local-cluster: not running" >&2
            exit 1
        fi
        ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
