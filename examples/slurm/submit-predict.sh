#!/bin/sh
# Predict a large scene in N shards: create the prediction store here (`--init-shards`, seconds), then
# submit a job array of N shards and the finalize job that runs once every shard succeeded.
# Prints the prediction store, then the two job ids. The hsi predict options (--store, --out,
# --batch-size, --device …) go to all three steps, so that they agree on the store. CPUS: CPUs per
# shard task (default: 4, or a node's CPUs if fewer, see cpus.sh); SBATCH_ARGS: more sbatch
# options for both jobs (e.g. "--partition=gpu").
#
#   examples/slurm/submit-predict.sh CHECKPOINT N [hsi predict options…]
set -eu
[ $# -ge 2 ] || { echo "usage: submit-predict.sh CHECKPOINT N [hsi predict options…]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
checkpoint=$1 count=$2
shift 2
${HSI:-hsi} predict "$checkpoint" --init-shards --quiet "$@"
# shellcheck disable=SC2086 # SBATCH_ARGS is a list of options
shards=$(sbatch --parsable --cpus-per-task="$("$here/cpus.sh")" ${SBATCH_ARGS:-} --array=0-$((count - 1)) \
    "$here/predict-shards.sbatch" "$checkpoint" "$@")
final=$(sbatch --parsable ${SBATCH_ARGS:-} --dependency=afterok:"$shards" \
    "$here/predict-finalize.sbatch" "$checkpoint" "$@")
echo "$shards $final"
