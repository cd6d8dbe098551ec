#!/usr/bin/env bash
# A real single-node SLURM on this machine, for the SLURM integration tests (tests/test_slurm.py).
# Idempotent: installs slurm-wlm + munge with apt when slurmctld is missing (root only), writes a
# munge key when there is none, starts munged, writes /etc/slurm/slurm.conf + gres.conf (one node
# with this machine's CPUs, four stand-in GPUs, Features=gpu,cpu; partitions debug (default) and
# gpu), starts slurmctld and slurmd, and waits until sinfo shows the node idle.
# No accounting (accounting_storage/none): --account is accepted and ignored; sacct answers nothing,
# so the Snakemake SLURM executor must use `--slurm-status-command squeue` (MinJobAge=600 keeps
# finished jobs visible to squeue and `scontrol show job` for 10 minutes).
# Stop it with tests/slurm/slurm-down.sh.
set -uo pipefail

WAIT_S=${SLURM_UP_WAIT_S:-60}
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm

fail() {
    echo "slurm-up: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (it installs packages and starts daemons)"

# 1. Packages.
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || fail "slurmctld is missing and there is no apt-get to install it"
    echo "slurm-up: installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q slurm-wlm munge; } >/tmp/slurm-up-apt.log 2>&1 \
        || fail "apt-get install slurm-wlm munge failed (see /tmp/slurm-up-apt.log)"
fi
for tool in slurmctld slurmd munged sinfo sbatch squeue scontrol; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool not found after install"
done

# 2. munge.
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    echo "slurm-up: writing /etc/munge/munge.key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo "slurm-up: starting munged"
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start (see /var/log/munge/munged.log)"
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || fail "munge does not work (see /var/log/munge/munged.log)"
fi

# 3. Configuration.
NODE=$(hostname -s 2>/dev/null || echo localhost)
[ -n "$NODE" ] || NODE=localhost
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MB=$((MEM_MB * 9 / 10))   # a bit under the machine's, so slurmd never finds "low memory"
GPU_FILES=()
for dev in /dev/null /dev/zero /dev/full /dev/random /dev/urandom; do
    [ -e "$dev" ] && GPU_FILES+=("$dev")
done
[ "${#GPU_FILES[@]}" -ge 4 ] || fail "need four device files to stand in for GPUs"

mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
new_conf=$(mktemp)
new_gres=$(mktemp)
cat >"$new_conf" <<EOF
# Written by tests/slurm/slurm-up.sh: a single-node test cluster, no accounting.
ClusterName=hrtemtest
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
MinJobAge=600
ReturnToService=2
DefMemPerCPU=1000
# Refuse at submission a job that no node here can hold (else it pends forever, Reason=PartitionConfig).
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${REAL_MB} Gres=gpu:4 Features=gpu,cpu State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${NODE} Default=NO MaxTime=INFINITE State=UP
EOF
{
    echo "# Written by tests/slurm/slurm-up.sh: four stand-in GPUs (no real devices)."
    echo "AutoDetect=off"
    for dev in "${GPU_FILES[@]:0:4}"; do
        echo "NodeName=${NODE} Name=gpu File=${dev}"
    done
} >"$new_gres"

changed=0
for pair in "$new_conf:$CONF_DIR/slurm.conf" "$new_gres:$CONF_DIR/gres.conf"; do
    src=${pair%%:*}
    dst=${pair#*:}
    if ! cmp -s "$src" "$dst"; then
        install -m 0644 "$src" "$dst"
        changed=1
    fi
    rm -f "$src"
done

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# 4. Daemons (restarted when the configuration changed).
if [ "$changed" -eq 1 ]; then
    for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
        if running "$pidfile"; then
            echo "slurm-up: configuration changed, stopping $(basename "$pidfile" .pid)"
            kill "$(cat "$pidfile")"
            for _ in $(seq 1 20); do running "$pidfile" || break; sleep 0.5; done
        fi
    done
fi
if ! running /run/slurmctld.pid; then
    echo "slurm-up: starting slurmctld (node ${NODE}, ${CPUS} CPUs, ${REAL_MB} MB, 4 stand-in GPUs)"
    slurmctld || fail "slurmctld did not start (see ${LOG_DIR}/slurmctld.log)"
fi
if ! running /run/slurmd.pid; then
    echo "slurm-up: starting slurmd"
    slurmd || fail "slurmd did not start (see ${LOG_DIR}/slurmd.log)"
fi

# 5. Wait for the node.
deadline=$((SECONDS + WAIT_S))
state=""
while [ "$SECONDS" -lt "$deadline" ]; do
    state=$(sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -n 1)
    case "$state" in
        idle | mixed | allocated | completing)
            echo "slurm-up: SLURM is up: node ${NODE} is ${state} (sinfo below)"
            sinfo
            exit 0
            ;;
        drain* | down* | fail*)
            # e.g. left down by an earlier run that was killed: bring it back.
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
            ;;
    esac
    sleep 1
done
echo "slurm-up: the node did not become idle within ${WAIT_S} s (last state: '${state:-none}')." >&2
echo "slurm-up: last lines of ${LOG_DIR}/slurmctld.log and slurmd.log:" >&2
tail -n 15 "${LOG_DIR}/slurmctld.log" "${LOG_DIR}/slurmd.log" >&2 2>/dev/null
exit 1
