#!/usr/bin/env bash
# Stops the single-node test SLURM started by tests/slurm/slurm-up.sh (slurmd, slurmctld, munged).
# Leaves packages and configuration in place; slurm-up.sh starts it again.
set -uo pipefail

[ "$(id -u)" -eq 0 ] || { echo "slurm-down: must run as root" >&2; exit 1; }

stop() {  # stop NAME PIDFILE
    local name=$1 pidfile=$2 pid
    if [ -f "$pidfile" ] && pid=$(cat "$pidfile") && kill -0 "$pid" 2>/dev/null; then
        echo "slurm-down: stopping $name (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm-down: $name did not stop, killing it"
            kill -9 "$pid" 2>/dev/null || true
        fi
    else
        echo "slurm-down: $name is not running"
    fi
    rm -f "$pidfile"
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop munged /run/munge/munged.pid
