#!/bin/sh
# Accuracy under three ways of drawing the same share of training pixels (issue 19): random
# (stratified), controlled random sampling (Liang et al. 2017, with the patch-radius guard) and
# spatially disjoint blocks; an RBF SVM and Lite-C2ANet (9 × 9 patches, EPOCHS epochs), no
# validation set; one run per seed, then mean ± std per split kind and model.
# Usage: sh examples/split-kinds.sh STORE [RATIO] [SEEDS] [EPOCHS]
#   e.g. sh examples/split-kinds.sh "$(hsi prep SalinasA_corrected.mat --pca 30)" 0.05 "0 1 2" 100
# Writes checkpoints and predictions to the current directory; prints one line per split kind and
# model: KIND MODEL SUMMARY.metrics.json (OA, AA, κ as mean ± std over the seeds).
set -eu
store=${1:?usage: split-kinds.sh STORE [RATIO] [SEEDS] [EPOCHS]}
ratio=${2:-0.05}
seeds=${3:-0 1 2}
epochs=${4:-100}
for kind in random controlled spatial; do
    case $kind in random) how="" ;; *) how="--$kind" ;; esac
    svm="" lite=""
    for seed in $seeds; do
        split=$(hsi split "$store" --ratio "$ratio" --val 0 $how --window 9 --seed "$seed" --quiet)
        svm="$svm $(hsi train "$split" --model svm --seed "$seed" --quiet | hsi predict --pixels test --quiet)"
        lite="$lite $(hsi train "$split" --model litec2anet --epochs "$epochs" --seed "$seed" --quiet \
            | hsi predict --pixels test --quiet)"
    done
    echo "$kind svm $(hsi evaluate $svm --quiet)"
    echo "$kind litec2anet $(hsi evaluate $lite --quiet)"
done
