#!/usr/bin/env bash
# launch/local_slurm.sh start
#
# A one-node SLURM cluster on this machine, to try the SLURM launcher (hydra/launcher=slurm)
# without a real cluster; tests/test_slurm.py runs a grid on it. As root, with Debian's
# packages (slurmctld slurmd slurm-client munge):
#   launch/local_slurm.sh start     munge key (if absent), slurm.conf, munged + slurmctld + slurmd,
#                                   then waits until sinfo shows the node idle; again: nothing to do
#   launch/local_slurm.sh status    which daemons run, and sinfo
#   launch/local_slurm.sh stop      stops the daemons that `start` started, and no other
# Then, for example:
#   pgf-train -m hydra/launcher=slurm hydra.launcher.gpus_per_node=null hydra.launcher.cpus_per_task=1 \
#     hydra.launcher.mem_gb=1 data=digits budget.steps=200 sparsity=1:4,1:8 recipe=srste logger=local
# The cluster: one node of `nproc` CPUs and a RealMemory a bit below the available memory, one
# partition `debug` (the default), no cgroups (proctrack/linuxproc, task/none), no accounting
# (so `sacct` fails and submitit watches the job's result file instead). It starts with an empty
# queue (slurmctld -c). Its slurm.conf is $SLURM_CONF (default /etc/slurm/slurm.conf); a
# slurm.conf this script did not write is never replaced. State, logs and pid files: $PGF_SLURM_DIR
# (default /var/spool/pgf-local-slurm).
# LOCAL_SLURM_INSTALL=1 launch/local_slurm.sh start installs the packages first (apt-get).
set -euo pipefail

conf=${SLURM_CONF:-/etc/slurm/slurm.conf}
state=${PGF_SLURM_DIR:-/var/spool/pgf-local-slurm}
started="$state/started"      # one line per daemon this script started: NAME PID
marker="# written by launch/local_slurm.sh"
node=$(hostname -s)
packages=(slurmctld slurmd slurm-client munge)
export SLURM_CONF="$conf" PATH="$PATH:/usr/sbin:/sbin"   # the daemons live in sbin

say() { echo "local_slurm: $*" >&2; }
die() { say "$*"; exit 1; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { if [ -s "$1" ]; then cat "$1"; fi; }   # a pid file's pid, or nothing
munge_up() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
# without a slurm.conf, scontrol would look for a controller for a minute (DNS SRV records)
ctld_up() { [ -e "$conf" ] && timeout 10 scontrol ping 2>/dev/null | grep -q "is UP"; }
slurmd_up() { alive "$(pid_of "$state/slurmd.pid")"; }
node_state() { timeout 10 sinfo -h -n "$node" -o %T 2>/dev/null | head -n1 || true; }
record() { echo "$1 $2" >>"$started"; }

missing_packages() {
    local missing=""
    for cmd in munged slurmctld slurmd sinfo sbatch scontrol; do
        command -v "$cmd" >/dev/null || missing="$missing $cmd"
    done
    echo "$missing"
}

install_packages() {
    [ "$(id -u)" = 0 ] || die "installing needs root: sudo apt-get install -y ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
}

write_conf() {
    local cpus mem_kb real_mb
    cpus=$(nproc)
    mem_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    real_mb=$(( mem_kb * 9 / 10 / 1024 ))   # a bit below the available memory: the node never registers short
    mkdir -p "$(dirname "$conf")"
    cat >"$conf.tmp" <<EOF
$marker start: a one-node cluster for trying the SLURM launcher.
ClusterName=pgflocal
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$conf.tmp" "$conf"
}

start_munge() {
    if munge_up; then return; fi
    local key=/etc/munge/munge.key
    if [ ! -s "$key" ]; then
        say "creating the munge key $key"
        mkdir -p /etc/munge
        mungekey --create --keyfile="$key" 2>/dev/null || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
        chown munge:munge "$key" /etc/munge
        chmod 0400 "$key"
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    runuser -u munge -- munged
    for _ in $(seq 50); do munge_up && break; sleep 0.1; done
    munge_up || die "munged did not start (see /var/log/munge/munged.log)"
    record munged "$(pid_of /run/munge/munged.pid)"
}

start_slurmctld() {
    if ctld_up; then return; fi
    mkdir -p "$state/ctld"
    slurmctld -c    # daemonizes; -c: an empty queue, no jobs from an earlier cluster
    for _ in $(seq 100); do ctld_up && break; sleep 0.1; done
    ctld_up || die "slurmctld did not start: $(tail -n 5 "$state/slurmctld.log" 2>/dev/null)"
    record slurmctld "$(pid_of "$state/slurmctld.pid")"
}

start_slurmd() {
    if slurmd_up; then return; fi
    mkdir -p "$state/d"
    slurmd -N "$node"
    for _ in $(seq 50); do slurmd_up && break; sleep 0.1; done
    slurmd_up || die "slurmd did not start: $(tail -n 5 "$state/slurmd.log" 2>/dev/null)"
    record slurmd "$(pid_of "$state/slurmd.pid")"
}

wait_idle() {
    local now=""
    for _ in $(seq 120); do
        now=$(node_state)
        case "$now" in
            idle | mixed | allocated) return ;;
            drain* | down*) scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    die "node $node is '${now:-unknown}', not idle, after 60 s (logs: $state/*.log)"
}

start() {
    local missing
    missing=$(missing_packages)
    if [ -n "$missing" ]; then
        if [ "${LOCAL_SLURM_INSTALL:-0}" = 1 ]; then
            install_packages
        else
            die "missing$missing: run 'sudo apt-get install -y ${packages[*]}' (or LOCAL_SLURM_INSTALL=1 $0 start)"
        fi
    fi
    [ "$(id -u)" = 0 ] || die "start needs root (it starts munged, slurmctld and slurmd)"
    if [ -e "$conf" ] && ! head -n1 "$conf" | grep -qF "$marker"; then
        die "$conf exists and was not written by this script: not using it (SLURM_CONF=/other/slurm.conf picks another file)"
    fi
    mkdir -p "$state"
    if ctld_up && slurmd_up; then
        wait_idle
        say "already running: $(node_state) node $node, partition debug (SLURM_CONF=$conf)"
        return
    fi
    ctld_up || write_conf   # a running slurmctld keeps the file it read
    start_munge
    start_slurmctld
    start_slurmd
    wait_idle
    say "up: $(node_state) node $node with $(nproc) CPUs, partition debug (SLURM_CONF=$conf)"
}

stop() {
    if [ ! -s "$started" ]; then
        say "nothing to stop: this script started no daemon"
        return
    fi
    local name pid order
    # slurmd and slurmctld before munged, which they authenticate with
    for order in slurmd slurmctld munged; do
        while read -r name pid; do
            [ "$name" = "$order" ] || continue
            if alive "$pid" && grep -q "$name" "/proc/$pid/comm" 2>/dev/null; then
                kill "$pid"
                for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
                alive "$pid" && kill -9 "$pid"
                say "stopped $name ($pid)"
            fi
        done <"$started"
    done
    rm -f "$started"
}

status() {
    local name
    for name in munged slurmctld slurmd; do
        case "$name" in
            munged) munge_up && echo "munged: up" || echo "munged: down" ;;
            slurmctld) ctld_up && echo "slurmctld: up" || echo "slurmctld: down" ;;
            slurmd) slurmd_up && echo "slurmd: up" || echo "slurmd: down" ;;
        esac
    done
    [ -s "$started" ] && echo "started by this script: $(awk '{printf "%s(%s) ", $1, $2}' "$started")"
    if ctld_up; then sinfo; fi
    ctld_up && slurmd_up
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
