#!/usr/bin/env bash
# Install SLURM from the Debian packages and start a single-node cluster on localhost, for the
# slow test tier (tests/test_slurm.py). Needs root and apt-get; idempotent (a running cluster
# with the same configuration is left alone).
#
# Usage: .ci/install-slurm.sh [selftest]
#   selftest  also run the cluster's own self-test (sbatch, job array, 2-task srun).
#
# The cluster itself is started by ../shared/tools/start-local-slurm.sh (the workplace's script;
# SLURM_START_SCRIPT overrides its path); its knobs (LOCAL_SLURM_*) pass through.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
START=${SLURM_START_SCRIPT:-$ROOT/../shared/tools/start-local-slurm.sh}
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { printf '[install-slurm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "Error: $0 must run as root (SLURM's daemons and apt-get need it)" >&2; exit 1; }
[ -x "$START" ] || [ -f "$START" ] || {
    echo "Error: $START not found" >&2
    echo "Hint: set SLURM_START_SCRIPT to the path of start-local-slurm.sh" >&2
    exit 1
}

missing=()
for binary in slurmctld slurmd sbatch srun squeue scontrol munged; do
    command -v "$binary" >/dev/null 2>&1 || missing+=("$binary")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || { echo "Error: missing ${missing[*]} and no apt-get" >&2; exit 1; }
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # Keep the packages' maintainer scripts from starting daemons: start-local-slurm.sh starts
    # them with its own configuration.
    policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; added=1; fi
    export DEBIAN_FRONTEND=noninteractive
    status=0
    { apt-get update -q && apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 \
        "${PACKAGES[@]}"; } >&2 || status=$?
    [ "$added" = 1 ] && rm -f "$policy"
    [ "$status" = 0 ] || { echo "Error: apt-get install ${PACKAGES[*]} failed (exit $status)" >&2; exit 1; }
fi

bash "$START" start
if [ "${1:-}" = selftest ]; then
    bash "$START" selftest
fi
log "SLURM ready: $(sinfo -h -o '%P %a %D %T' | tr '\n' ' ')"
