#!/bin/sh
# Submit a seed sweep (a job array, seeds 0 … N-1) and the summary job that runs when every seed
# has finished; prints the two job ids. Environment as in sweep.sbatch (RUNS, RATIO, HSI); CPUS:
# CPUs per sweep task (default: 4, or a node's CPUs if fewer, see cpus.sh); SBATCH_ARGS: more
# sbatch options for both jobs (e.g. "--partition=gpu").
#
#   examples/slurm/submit-sweep.sh STORE MODEL N [hsi train options…]
set -eu
[ $# -ge 3 ] || { echo "usage: submit-sweep.sh STORE MODEL N [hsi train options…]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
store=$1 model=$2 count=$3
shift 3
# shellcheck disable=SC2086 # SBATCH_ARGS is a list of options
sweep=$(sbatch --parsable --cpus-per-task="$("$here/cpus.sh")" ${SBATCH_ARGS:-} --array=0-$((count - 1)) \
    "$here/sweep.sbatch" "$store" "$model" "$@")
summary=$(sbatch --parsable ${SBATCH_ARGS:-} --dependency=afterok:"$sweep" \
    "$here/summary.sbatch" "${RUNS:-runs}" "$model")
echo "$sweep $summary"
