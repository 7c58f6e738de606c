#!/usr/bin/env bash
# A single-node SLURM cluster on loopback: for trying `hydra/launcher=slurm` and for the cluster
# tests (tests/test_cluster.py). One node `localhost` (127.0.0.1) with 2 CPUs, partition `debug`,
# no accounting (sacct answers with an error; submitit then goes by its result files).
#
#   scripts/local-slurm.sh install   # apt-get install the Debian packages (root)
#   scripts/local-slurm.sh start     # munged, slurmctld, slurmd; waits until the node is idle
#   scripts/local-slurm.sh status    # exit 0 running, 1 stopped, 3 packages missing
#   scripts/local-slurm.sh stop      # cancels every job, stops the daemons this script started
#   eval "$(scripts/local-slurm.sh env)"   # SLURM_CONF for sinfo/sbatch/squeue and nnlab
#
# Every command is idempotent. Runs as root (slurmd starts jobs as the submitting user; munged
# runs as user munge). State, logs and PID files: $NNLAB_SERVICES/slurm (default
# /tmp/nnlab-services/slurm). Loopback only: every address in the config is 127.0.0.1, and
# CommunicationParameters=NoInAddrAny,NoCtldInAddrAny makes the daemons and srun bind to it
# instead of to every address (0.0.0.0); slurmctld's and slurmd's ports are picked free on each
# fresh start (not SLURM's fixed 6817/6818), and srun's come from SrunPortRange.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
DIR="${NNLAB_SERVICES:-/tmp/nnlab-services}/slurm"
CONF="$DIR/slurm.conf"
CPUS="${NNLAB_SLURM_CPUS:-2}"
PY="${PYTHON:-python3}"

die() { echo "local-slurm: $*" >&2; exit "${2:-1}"; }

installed() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null
}

need_installed() {
    installed || die "SLURM/munge are not installed; run: scripts/local-slurm.sh install (or apt-get install -y ${PACKAGES[*]})" 3
}

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (munged runs as user munge, slurmd as root)" 4
}

pid_alive() {  # pid_alive FILE: the PID in FILE names a live process
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

free_ports() {  # free_ports N: N distinct TCP ports nothing listens on at 127.0.0.1
    "$PY" - "$1" <<'PYEOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PYEOF
}

write_conf() {
    local mem ctld_port slurmd_port
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    read -r ctld_port slurmd_port < <(free_ports 2)
    mkdir -p "$DIR/state" "$DIR/spool"
    cat >"$CONF.tmp" <<EOF
# Written by scripts/local-slurm.sh: a one-node cluster on loopback.
ClusterName=nnlab
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
# ports picked free when this file was written; every daemon and srun binds 127.0.0.1 only
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
# no cgroups in containers: track job processes by parent PID, bind no tasks
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the node takes its CPUs and memory from this file, whatever the machine has
SlurmdParameters=config_overrides
ReturnToService=2
# scancel / a time limit: SIGTERM, then SIGKILL after KillWait seconds
KillWait=30
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    munge_ok && return 0
    if [ ! -s /etc/munge/munge.key ]; then  # the package creates one; make it if it is gone
        install -d -o munge -g munge -m 700 /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged
    cp /run/munge/munged.pid "$DIR/munged.pid"  # ours: `stop` ends it
    for _ in $(seq 50); do munge_ok && return 0; sleep 0.1; done
    die "munged did not start (see /var/log/munge/munged.log)"
}

loopback_name() {  # loopback_name HOST: HOST resolves to a 127.x address (IPv4, as SLURM uses)
    getent ahostsv4 "$1" 2>/dev/null | awk '{print $1; exit}' | grep -q '^127\.'
}

as_localhost() {  # as_localhost CMD...: run CMD where gethostname() is "localhost"
    # NoInAddrAny binds to the address gethostname() resolves to, for the daemons and for the
    # sruns of their jobs (slurmstepd inherits slurmd's host name): in a UTS namespace of their
    # own named localhost that is 127.0.0.1, whatever this machine's name resolves to
    if unshare --uts true 2>/dev/null; then
        unshare --uts sh -c 'hostname localhost && exec "$@"' sh "$@"
    elif loopback_name "$(hostname)"; then
        "$@"
    else
        die "cannot keep SLURM on loopback: $(hostname) resolves to a non-loopback address and unshare --uts is not permitted here"
    fi
}

node_state() { SLURM_CONF="$CONF" sinfo -h -n localhost -o %T 2>/dev/null | head -1; }

do_start() {
    need_installed
    need_root
    mkdir -p "$DIR"
    if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" && munge_ok; then
        echo "local-slurm: already running (node $(node_state)); SLURM_CONF=$CONF"
        return 0
    fi
    pid_alive "$DIR/slurmctld.pid" || write_conf
    start_munge
    # -i: ignore state from an earlier run that no longer fits (e.g. a changed node)
    pid_alive "$DIR/slurmctld.pid" || as_localhost slurmctld -f "$CONF" -i
    pid_alive "$DIR/slurmd.pid" || as_localhost slurmd -f "$CONF" -N localhost
    local state=""
    for _ in $(seq 150); do
        state=$(node_state)
        case "$state" in idle* | mixed* | allocated*) break ;; esac
        sleep 0.2
    done
    case "$state" in
        idle* | mixed* | allocated*) ;;
        *) die "the node is not up (state '${state:-none}'); logs: $DIR/slurmctld.log $DIR/slurmd.log" ;;
    esac
    echo "local-slurm: running, node localhost $state ($CPUS CPUs); SLURM_CONF=$CONF"
    echo "  use it: eval \"\$(scripts/local-slurm.sh env)\"   stop it: scripts/local-slurm.sh stop"
}

stop_pid() {  # stop_pid FILE: TERM the process named in FILE, KILL it after 10 s, remove FILE
    local file=$1 pid
    pid_alive "$file" || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$file"
}

do_stop() {
    [ -d "$DIR" ] || { echo "local-slurm: not running"; return 0; }
    need_root
    if pid_alive "$DIR/slurmctld.pid"; then  # end the jobs while slurmd can still signal them
        local jobs
        jobs=$(SLURM_CONF="$CONF" squeue -h -o %A 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            SLURM_CONF="$CONF" scancel $jobs 2>/dev/null || true
            for _ in $(seq 150); do
                [ -z "$(SLURM_CONF="$CONF" squeue -h -o %A 2>/dev/null)" ] && break
                sleep 0.2
            done
        fi
    fi
    stop_pid "$DIR/slurmd.pid"
    stop_pid "$DIR/slurmctld.pid"
    [ -f "$DIR/munged.pid" ] && stop_pid "$DIR/munged.pid"
    echo "local-slurm: stopped"
}

do_status() {
    installed || { echo "local-slurm: not installed (scripts/local-slurm.sh install)"; return 3; }
    local up=0 name
    for name in slurmctld slurmd; do
        if pid_alive "$DIR/$name.pid"; then
            echo "$name: running (pid $(cat "$DIR/$name.pid"))"
        else
            echo "$name: stopped"; up=1
        fi
    done
    if munge_ok; then echo "munged: running"; else echo "munged: stopped"; up=1; fi
    [ "$up" = 0 ] && SLURM_CONF="$CONF" sinfo
    return "$up"
}

case "${1:-}" in
    install)
        need_root
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
        echo "local-slurm: installed ${PACKAGES[*]}"
        ;;
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) die "usage: $0 install|start|stop|status|env" 2 ;;
esac
