#!/usr/bin/env bash
# Stop the local SLURM cluster brought up by start-local-slurm.sh: cancel the jobs, then stop the
# daemons that the start script started (their PIDs are in /run/local-slurm/<daemon>.pid), in the
# order slurmd, slurmctld, slurmdbd, mariadbd, munged. Daemons started by anything else are left
# alone unless --all-daemons is given. Packages, configuration and state are kept, so a later
# start is quick and job IDs keep counting up.
#
# Options: --keep-jobs     do not scancel the jobs
#          --all-daemons   also stop those daemons when something else started them
set -uo pipefail

STATE_DIR=/run/local-slurm
KEEP_JOBS=0
ALL=0
for arg in "$@"; do
    case "$arg" in
        --keep-jobs) KEEP_JOBS=1 ;;
        --all-daemons) ALL=1 ;;
        -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "stop-local-slurm: unknown option $arg" >&2; exit 2 ;;
    esac
done
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
say() { printf 'stop-local-slurm: %s\n' "$*"; }

# Zombies count as stopped: PID 1 here may reap them only much later.
alive() {
    local st
    [ -n "${1:-}" ] && [ -r "/proc/$1/status" ] || return 1
    st=$(awk '/^State:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
is_daemon() { alive "$1" && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }

# ------------------------------------------------------------------------------ cancel jobs
if [ "$KEEP_JOBS" = 0 ] && command -v squeue >/dev/null && timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    jobs=$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        say "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null || true
        # Give slurmd time to kill the steps (KillWait=5) so no slurmstepd outlives it.
        for ((i = 0; i < 150; i++)); do
            [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
fi

# ---------------------------------------------------------------------------- stop daemons
# name:daemon's own pidfile
DAEMONS=(slurmd:/run/slurmd.pid slurmctld:/run/slurmctld.pid slurmdbd:/run/slurmdbd.pid
         mariadbd:/run/mysqld/mysqld.pid munged:/run/munge/munged.pid)
rc=0
stopped=()
for entry in "${DAEMONS[@]}"; do
    name=${entry%%:*} pidfile=${entry#*:}
    record=$STATE_DIR/$name.pid
    pid=$(cat "$record" 2>/dev/null || true)
    if ! [[ $pid =~ ^[0-9]+$ ]] || ! is_daemon "$pid" "$name"; then
        pid=''
        if [ "$ALL" = 1 ]; then
            pid=$(cat "$pidfile" 2>/dev/null || true)
            [[ $pid =~ ^[0-9]+$ ]] && is_daemon "$pid" "$name" || pid=''
        fi
    fi
    rm -f "$record"
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do is_daemon "$pid" "$name" || break; sleep 0.1; done
    if is_daemon "$pid" "$name"; then
        say "$name (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do is_daemon "$pid" "$name" || break; sleep 0.1; done
    fi
    if is_daemon "$pid" "$name"; then
        say "could not stop $name (pid $pid)"; rc=1; continue
    fi
    # A stale /run/slurmctld.pid makes the package's prerm run scancel (and fail) on removal.
    rm -f "$pidfile"
    stopped+=("$name")
done

if ((${#stopped[@]})); then say "stopped ${stopped[*]}"; else say "nothing to stop (no daemon started by start-local-slurm.sh is running)"; fi
exit "$rc"
