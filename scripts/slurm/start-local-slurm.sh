#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on this machine (Debian 12, root, no systemd needed):
# munge, MariaDB + slurmdbd (accounting, so that `sacct` works), slurmctld and slurmd, one node
# at 127.0.0.1 in one partition. Idempotent: what is installed is not installed again, what runs
# is left running, and a second run only re-checks the cluster (well under a second).
#
# Daemons this script starts are recorded in /run/local-slurm/<daemon>.pid; stop-local-slurm.sh
# stops exactly those. Nothing is ever wiped (job IDs and the accounting database persist).
#
# Knobs (environment):
#   LOCAL_SLURM_PARTITION      partition name                      (debug)
#   LOCAL_SLURM_CLUSTER        ClusterName                         (localci)
#   LOCAL_SLURM_READY_TIMEOUT  seconds to wait for each daemon / the node  (60)
#   LOCAL_SLURM_CRED_EXPIRE    AuthInfo cred_expire, seconds       (10)
#   LOCAL_SLURM_SKIP_APT=1     never run apt-get (fail if a package is missing)
#
# On failure: exit status 1 and one line `start-local-slurm: ERROR: <what>`, then log tails.
set -Eeuo pipefail

PARTITION=${LOCAL_SLURM_PARTITION:-debug}
CLUSTER=${LOCAL_SLURM_CLUSTER:-localci}
READY_TIMEOUT=${LOCAL_SLURM_READY_TIMEOUT:-60}
CRED_EXPIRE=${LOCAL_SLURM_CRED_EXPIRE:-10}
SKIP_APT=${LOCAL_SLURM_SKIP_APT:-0}

STATE_DIR=/run/local-slurm          # our PID records and the daemons' start-up output
LOG_DIR=/var/log/slurm
SLURM_CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
CTLD_STATE=/var/lib/slurm/slurmctld
DB_PASS=slurm-local-ci
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH

T0=$(date +%s.%N)
say() { printf 'start-local-slurm: %s\n' "$*"; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

tail_log() {  # tail_log FILE: the last lines of one log, if it exists
    [ -s "$1" ] || return 0
    printf -- '----- tail %s -----\n' "$1"
    tail -n 25 "$1" 2>/dev/null || true
}

die() {
    trap - ERR
    printf 'start-local-slurm: ERROR: %s\n' "$*" >&2
    {
        local f
        for f in "$STATE_DIR"/*.out /var/log/munge/munged.log "$LOG_DIR"/mariadb.log \
                 "$LOG_DIR"/slurmdbd.log "$LOG_DIR"/slurmctld.log "$LOG_DIR"/slurmd.log; do
            if [ -e "$f" ]; then tail_log "$f"; fi
        done
        if command -v sinfo >/dev/null; then
            echo '----- sinfo -----'
            timeout 5 sinfo -N -o '%N %T %E' 2>&1 || true
        fi
    } >&2
    exit 1
}
# -E: also for failures inside functions. Command substitutions inherit the trap but not -e:
# there it does nothing, and the caller sees the failure.
trap 'err_rc=$?; [ "$BASHPID" != "$$" ] || die "unexpected failure (exit $err_rc) at line $LINENO: $BASH_COMMAND"' ERR

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts system daemons)"

# ---------------------------------------------------------------------------- process helpers
# A process counts as alive only if it exists and is not a zombie: PID 1 on these machines can
# take a long time to reap, and `kill -0` / pgrep report a <defunct> daemon as running.
alive() {
    local st
    [ -n "${1:-}" ] && [ -r "/proc/$1/status" ] || return 1
    st=$(awk '/^State:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

is_daemon() {  # is_daemon PID NAME: PID is a live process whose command name is NAME
    alive "$1" && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

running_pid() {  # running_pid NAME PIDFILE: print the PID of a live NAME daemon, if any
    local name=$1 pidfile=$2 pid p
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && is_daemon "$pid" "$name"; then echo "$pid"; return 0; fi
    for p in /proc/[0-9]*; do                    # a daemon whose pidfile went missing
        p=${p#/proc/}
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$name" ] && alive "$p"; then
            echo "$p"; return 0
        fi
    done
    return 1
}

record() {  # record NAME PID: this script started it, so stop-local-slurm.sh may stop it
    echo "$2" >"$STATE_DIR/$1.pid"
}

forget_dead_records() {
    local f pid name
    for f in "$STATE_DIR"/*.pid; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .pid); pid=$(cat "$f" 2>/dev/null || true)
        is_daemon "$pid" "$name" || rm -f "$f"
    done
}

wait_for() {  # wait_for WHAT COMMAND...: poll every 0.1 s until COMMAND succeeds
    local what=$1; shift
    local deadline=$((SECONDS + READY_TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what not ready after ${READY_TIMEOUT}s"
        sleep 0.1
    done
}

stop_pid() {  # stop_pid NAME PID: TERM, wait for exit (zombie = exited), KILL after 30 s
    local name=$1 pid=$2 i
    is_daemon "$pid" "$name" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do is_daemon "$pid" "$name" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do is_daemon "$pid" "$name" || return 0; sleep 0.1; done
    die "could not stop $name (pid $pid)"
}

# -------------------------------------------------------------------------------- 1. packages
installed=" $(dpkg-query -W -f='${db:Status-Status}:${Package} ' "${PACKAGES[@]}" 2>/dev/null || true) "
missing=()
for p in "${PACKAGES[@]}"; do
    [[ $installed == *" installed:$p "* ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    [ "$SKIP_APT" = 1 ] && die "packages missing and LOCAL_SLURM_SKIP_APT=1: ${missing[*]}"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_log=$STATE_DIR/apt.out
    mkdir -p "$STATE_DIR"
    apt-get -o DPkg::Lock::Timeout=120 update -qq >"$apt_log" 2>&1 \
        || die "apt-get update failed (see $apt_log)"
    apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${missing[@]}" \
        >>"$apt_log" 2>&1 || die "apt-get install ${missing[*]} failed (see $apt_log)"
    say "packages installed ($(elapsed) s)"
fi

install -d -m 0755 "$STATE_DIR"
rm -f "$STATE_DIR"/*.out
forget_dead_records
install -d -o slurm -g slurm -m 0755 "$LOG_DIR" "$CTLD_STATE" /var/lib/slurm/slurmd

# ----------------------------------------------------------------------------------- 2. munge
# Without systemd nobody creates the RuntimeDirectory /run/munge.
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key >"$STATE_DIR/mungekey.out" 2>&1 \
        || die "could not create /etc/munge/munge.key"
fi
chown munge:munge /etc/munge/munge.key
chmod 0600 /etc/munge/munge.key
if ! running_pid munged /run/munge/munged.pid >/dev/null; then
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged </dev/null >"$STATE_DIR/munged.out" 2>&1 \
        || die "munged failed to start"
    wait_for "munged (pidfile)" test -s /run/munge/munged.pid
    record munged "$(cat /run/munge/munged.pid)"
fi
wait_for "munge (munge -n | unmunge)" bash -c 'munge -n | unmunge'

# ------------------------------------------------------------------------ 3. MariaDB + slurmdbd
install -d -o mysql -g mysql -m 0755 /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$STATE_DIR/mariadb-install-db.out" 2>&1 \
        || die "mariadb-install-db failed"
fi
# mariadbd runs as mysql and opens its error log itself: give it a file it may write.
touch "$LOG_DIR/mariadb.log"
chown mysql:mysql "$LOG_DIR/mariadb.log"
if ! running_pid mariadbd /run/mysqld/mysqld.pid >/dev/null; then
    rm -f /run/mysqld/mysqld.pid
    # mariadbd does not daemonise. setsid detaches it from our session (and from a CI job's
    # process group); its output goes to a file, not to the caller's stdout.
    setsid /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid --skip-networking \
        --log-error="$LOG_DIR/mariadb.log" </dev/null >"$STATE_DIR/mariadbd.out" 2>&1 &
    mariadb_pid=$!
    record mariadbd "$mariadb_pid"
    deadline=$((SECONDS + READY_TIMEOUT))
    until mariadb-admin --silent ping >/dev/null 2>&1; do
        alive "$mariadb_pid" || die "mariadbd exited during start-up"
        ((SECONDS < deadline)) || die "mariadbd not answering after ${READY_TIMEOUT}s"
        sleep 0.1
    done
fi
wait_for "MariaDB (mariadb-admin ping)" mariadb-admin --silent ping
# root logs in through the unix socket; all of this is idempotent.
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" >"$STATE_DIR/mariadb-setup.out" 2>&1 \
    || die "could not create the slurm accounting database and user"

write_if_changed() {  # write_if_changed FILE MODE OWNER < content; status 0 if the file changed
    local file=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        # slurmdbd refuses a conf that is not 0600 / owned by SlurmUser: repair those too.
        chmod "$mode" "$file"; chown "$owner" "$file"
        return 1
    fi
    install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$file"
    rm -f "$tmp"
    return 0
}

dbd_changed=0
write_if_changed "$DBD_CONF" 0600 slurm:slurm <<EOF && dbd_changed=1
# Written by scripts/slurm/start-local-slurm.sh (local single-node cluster). Must be 0600 slurm.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF

dbd_pid=$(running_pid slurmdbd /run/slurmdbd.pid || true)
if [ -n "$dbd_pid" ] && [ "$dbd_changed" = 1 ]; then
    say "slurmdbd.conf changed: restarting slurmdbd"
    stop_pid slurmdbd "$dbd_pid"; dbd_pid=''
fi
if [ -z "$dbd_pid" ]; then
    rm -f /run/slurmdbd.pid
    /usr/sbin/slurmdbd </dev/null >"$STATE_DIR/slurmdbd.out" 2>&1 || die "slurmdbd failed to start"
    wait_for "slurmdbd (pidfile)" test -s /run/slurmdbd.pid
    record slurmdbd "$(cat /run/slurmdbd.pid)"
fi
wait_for "slurmdbd (port 6819)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'

# ------------------------------------------------------------------------------ 4. slurm.conf
HOST=$(hostname -s)
node_line=$(slurmd -C 2>"$STATE_DIR/slurmd-C.out" | awk '/^NodeName=/ {print; exit}')
[ -n "$node_line" ] || die "slurmd -C printed no NodeName line"
cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")
realmem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
[ -n "$cpus" ] && [ -n "$realmem" ] && [ "$cpus" -gt 0 ] || die "cannot parse slurmd -C: $node_line"
def_mem_per_cpu=$((realmem / cpus))

conf_changed=0
write_if_changed "$SLURM_CONF" 0644 root:root <<EOF && conf_changed=1
# Written by scripts/slurm/start-local-slurm.sh: one node on 127.0.0.1, no cgroups, accounting via
# slurmdbd, scheduler tuned so that jobs start within about a second and requeues are not held.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=cred_expire=$CRED_EXPIRE
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=1
KillWait=5
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=$CTLD_STATE
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$def_mem_per_cpu
SlurmctldDebug=info
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdDebug=info
SlurmdLogFile=$LOG_DIR/slurmd.log
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# ------------------------------------------------------------------- 5. slurmctld and slurmd
ctld_pid=$(running_pid slurmctld /run/slurmctld.pid || true)
slurmd_pid=$(running_pid slurmd /run/slurmd.pid || true)
if [ "$conf_changed" = 1 ] && { [ -n "$ctld_pid" ] || [ -n "$slurmd_pid" ]; }; then
    say "slurm.conf changed: restarting slurmctld and slurmd"
    if [ -n "$slurmd_pid" ]; then stop_pid slurmd "$slurmd_pid"; fi
    if [ -n "$ctld_pid" ]; then stop_pid slurmctld "$ctld_pid"; fi
    ctld_pid='' slurmd_pid=
fi

if [ -z "$ctld_pid" ]; then
    # A StateSaveLocation written under another ClusterName is fatal for slurmctld
    # ("CLUSTER NAME MISMATCH"): drop only that marker, keep the saved jobs.
    if [ -f "$CTLD_STATE/clustername" ] && [ "$(cat "$CTLD_STATE/clustername")" != "$CLUSTER" ]; then
        say "ClusterName changed to $CLUSTER: removing $CTLD_STATE/clustername"
        rm -f "$CTLD_STATE/clustername"
    fi
    rm -f /run/slurmctld.pid
    /usr/sbin/slurmctld </dev/null >"$STATE_DIR/slurmctld.out" 2>&1 || die "slurmctld failed to start"
    wait_for "slurmctld (pidfile)" test -s /run/slurmctld.pid
    record slurmctld "$(cat /run/slurmctld.pid)"
fi
deadline=$((SECONDS + READY_TIMEOUT))
until timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; do
    running_pid slurmctld /run/slurmctld.pid >/dev/null || die "slurmctld exited during start-up"
    ((SECONDS < deadline)) || die "slurmctld not answering (scontrol ping) after ${READY_TIMEOUT}s"
    sleep 0.1
done

slurmd_started_at=0
if [ -z "$slurmd_pid" ]; then
    rm -f /run/slurmd.pid
    slurmd_started_at=$(date +%s)
    /usr/sbin/slurmd </dev/null >"$STATE_DIR/slurmd.out" 2>&1 || die "slurmd failed to start"
    wait_for "slurmd (pidfile)" test -s /run/slurmd.pid
    record slurmd "$(cat /run/slurmd.pid)"
fi

slurmd_registered_at() {  # epoch seconds of the node's SlurmdStartTime, 0 if unknown
    local t
    t=$(timeout 5 scontrol show node "$HOST" 2>/dev/null | sed -n 's/.*SlurmdStartTime=\([0-9T:-]*\).*/\1/p')
    if [ -n "$t" ] && date -d "$t" +%s 2>/dev/null; then return 0; fi
    echo 0
}

# Ready means the node is up and responding: idle (or busy with jobs), no trailing '*'.
# A node left DOWN/DRAINED (earlier admin action, unexpected reboot) is resumed.
deadline=$((SECONDS + READY_TIMEOUT))
resumed=0
while :; do
    state=$(timeout 5 sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n 1 || true)
    case "$state" in
        idle | mixed | allocated | completing)
            # A restarted slurmctld reports the saved state at once: when slurmd was started
            # now, wait for its registration (SlurmdStartTime) as well.
            if ((slurmd_started_at == 0)); then break; fi
            if (($(slurmd_registered_at) >= slurmd_started_at - 1)); then break; fi ;;
        down | drained | draining | drain | down+* | drained+* | idle+drain | *drain*)
            if ((resumed < 3)); then
                say "node $HOST is $state: resuming it"
                timeout 5 scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
                resumed=$((resumed + 1))
            fi ;;
    esac
    running_pid slurmd /run/slurmd.pid >/dev/null || die "slurmd exited during start-up"
    ((SECONDS < deadline)) || die "node $HOST not ready after ${READY_TIMEOUT}s (state: ${state:-none})"
    sleep 0.1
done

# ------------------------------------------------------------------------------ 6. smoke test
# After a restart sinfo may say idle from the saved state before slurmd re-registered: only a
# real job step proves that munge credentials, slurmctld and slurmd all work together.
# Only when a CPU is free: on a node busy with other people's jobs srun would just queue (the
# running jobs show the node works).
alloc=$(timeout 5 scontrol show node "$HOST" 2>/dev/null | sed -n 's/.*CPUAlloc=\([0-9]*\).*/\1/p' || true)
if [ "${alloc:-0}" -ge "$cpus" ]; then
    say "node $HOST busy with running jobs (CPUAlloc=$alloc): srun smoke test skipped"
else
    smoke=$(timeout "$READY_TIMEOUT" srun -p "$PARTITION" -N1 -n1 -t 1 -J local-slurm-smoke hostname \
        2>"$STATE_DIR/srun.out") || die "smoke test 'srun hostname' failed"
    [ "$smoke" = "$HOST" ] || die "smoke test 'srun hostname' printed '$smoke', expected '$HOST'"
fi
# sacct needs slurmctld -> slurmdbd -> MariaDB; submitit waits forever on cancelled jobs without it.
deadline=$((SECONDS + READY_TIMEOUT))
until timeout 10 sacct -n -X -S now-1minute >/dev/null 2>"$STATE_DIR/sacct.out"; do
    ((SECONDS < deadline)) || die "sacct does not work (accounting via slurmdbd)"
    sleep 0.2
done

say "cluster '$CLUSTER' up: node $HOST ($cpus CPUs, ${realmem} MB), partition '$PARTITION', sacct ok ($(elapsed) s)"
