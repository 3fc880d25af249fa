#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try `hydra/launcher=slurm` before a real cluster
# (and for the `slurm` tests):
#
#   bash scripts/slurm_local.sh up       # install (Debian's slurm-wlm, munge) if missing, start
#                                        # (jobs left by a cluster not brought down: cancelled)
#   bash scripts/slurm_local.sh status   # daemons and sinfo
#   bash scripts/slurm_local.sh down     # cancel running jobs, wait for them, stop every daemon
#
# Needs root (it writes /etc/slurm/slurm.conf and starts daemons). Everything listens on the
# loopback only: one node (this machine's cores, 90% of its memory), one partition `debug`,
# no accounting, no cgroups (proctrack/linuxproc, task/none). `up` is idempotent.
set -euo pipefail

STATE=/var/lib/arnn-slurm           # pid files, logs and state of this cluster
CONF=/etc/slurm/slurm.conf
CTLD_PORT=6817
SLURMD_PORT=6818
NODE=$(hostname -s)

die() { echo "slurm_local: $*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages, writes $CONF and starts daemons)"
}

alive() {  # alive NAME: the daemon this script started is running (a pid file left by a
    local pid  # machine that restarted may name another program now: the name must match)
    pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$1" ]
}

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    echo "slurm_local: installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq slurm-wlm munge >/dev/null; } \
        || die "apt-get could not install slurm-wlm and munge"
}

port_taken() {  # port_taken PORT: something listens there
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/slurmd"
    cat >"$CONF" <<EOF
# Written by arnn's scripts/slurm_local.sh: a one-node cluster on the loopback.
ClusterName=arnn-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120).
AuthInfo=cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
KillWait=5
MinJobAge=30
# Short waits: a requeued job becomes eligible again in seconds, the scheduler looks often.
SchedulerParameters=defer_batch=0,sched_interval=2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if pgrep -x munged >/dev/null; then return; fi
    [ -s /etc/munge/munge.key ] || { command -v mungekey >/dev/null && mungekey -c -f; } \
        || die "no /etc/munge/munge.key and mungekey could not create one"
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    runuser -u munge -- /usr/sbin/munged || die "munged did not start"
    wait_for 10 test -s /run/munge/munged.pid || die "munged wrote no pid file"
    cp /run/munge/munged.pid "$STATE/munged.pid"
}

wait_for() {  # wait_for SECONDS COMMAND...: until the command succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
}

# Not `sinfo -n NODE`: slurmctld answers that from a cache that can keep a released node "mix"
# for minutes (22.05, seen after cancelling a job whose processes were gone); the full list is
# current.
node_idle() { sinfo -h -N -o '%N %t' | grep -qx "$NODE idle"; }

# shellcheck disable=SC2046
job_ids() { echo $(squeue -h -o %A 2>/dev/null); }  # the listed jobs, one line (empty: none)

no_jobs() { [ -z "$(job_ids)" ]; }

scancel_all() {  # scancel_all [WHY]: cancel every listed job, say which, wait until none is listed
    local jobs
    jobs=$(job_ids)
    [ -n "$jobs" ] || return 0
    echo "slurm_local: cancelling job(s) $jobs${1:+ $1}"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    wait_for 60 no_jobs \
        || echo "slurm_local: jobs still listed after 60 s: $(squeue -h 2>/dev/null)" >&2
}

# Jobs the controller recovers from its saved state when the cluster was not brought `down`
# (the machine restarted, the daemons were killed): no process of theirs is left, yet they hold
# the node allocated for good. They are cancelled, as `down` would have done.
cancel_leftovers() {
    local jobs
    jobs=$(job_ids)
    [ -n "$jobs" ] || return 0
    if ps -C slurmstepd -o stat= | grep -qv '^Z'; then  # a zombie step runs nothing
        echo "slurm_local: job(s) $jobs recovered and some job steps still run: kept" >&2
        return 0
    fi
    scancel_all "left by a cluster that was not brought down"
}

up() {
    need_root
    install
    mkdir -p "$STATE"
    if alive slurmctld && alive slurmd && node_idle; then
        echo "slurm_local: already up"; sinfo; return
    fi
    for port in $CTLD_PORT $SLURMD_PORT; do
        if port_taken "$port" && ! alive slurmctld && ! alive slurmd; then
            die "port $port is taken by another program (ss -ltnp | grep $port); stop it first"
        fi
    done
    local was_down=1
    if alive slurmctld || alive slurmd; then was_down=0; fi
    write_conf
    start_munge
    alive slurmctld || /usr/sbin/slurmctld -i || die "slurmctld did not start: see $STATE/slurmctld.log"
    alive slurmd || /usr/sbin/slurmd || die "slurmd did not start: see $STATE/slurmd.log"
    wait_for 30 sinfo || die "slurmctld does not answer: see $STATE/slurmctld.log"
    [ $was_down -eq 0 ] || cancel_leftovers
    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    wait_for 60 node_idle || die "node $NODE is not idle: $(sinfo -h -o '%t %E'); see $STATE/slurmd.log"
    echo "slurm_local: up"
    sinfo
}

cancel_jobs() {  # cancel every job and wait for its steps (slurmstepd, srun, the job) to end
    if alive slurmctld; then scancel_all; fi
    # Steps the controller no longer knows about (its daemons were killed before) end too.
    if pgrep -x slurmstepd >/dev/null; then
        pkill -TERM -x slurmstepd || true
        wait_for 15 sh -c '! pgrep -x slurmstepd' || pkill -KILL -x slurmstepd || true
    fi
}

down() {
    need_root
    local name pid
    cancel_jobs
    for name in slurmd slurmctld munged; do
        if alive "$name"; then
            pid=$(cat "$STATE/$name.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$STATE/$name.pid"
    done
    echo "slurm_local: down"
}

status() {
    local name
    for name in munged slurmctld slurmd; do
        if alive "$name"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"
        else echo "$name: not running"; fi
    done
    if alive slurmctld; then sinfo; fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) die "usage: bash scripts/slurm_local.sh up|down|status" ;;
esac
