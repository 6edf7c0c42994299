#!/bin/sh
# Lite-C2ANet's protocol (Shi, Zhang, §4.1): all bands (no PCA), z-score normalised; 9 × 9 patches;
# 1 % of the labelled pixels per class for training and as many for validation (0.25 % for
# WHU-Hi-LongKou: --ratio 0.0025); Adam lr 1e-3, betas 0.9/0.999, batch 64, 100 epochs, the best
# validation epoch kept — all registry defaults of `litec2anet`; one run per seed, mean ± std.
# Usage: sh examples/litec2anet-paper.sh [--ratio R] SCENE [SEEDS] [EXTRA TRAIN OPTIONS...]
#   e.g. sh examples/litec2anet-paper.sh PaviaU.mat
#        sh examples/litec2anet-paper.sh --ratio 0.0025 WHU_Hi_LongKou.mat "0 1 2"
#        sh examples/litec2anet-paper.sh SalinasA_corrected.mat "0 1 2" --epochs 850
#          (as many optimiser steps as the paper's Salinas run: 541 pixels / 64 × 100 epochs)
# Everything is written to the current directory; checkpoint names do not carry the epochs, so run
# another variant (e.g. --epochs 850) in another directory (hsi never overwrites silently).
set -eu
usage="usage: litec2anet-paper.sh [--ratio R] SCENE [SEEDS] [TRAIN OPTIONS...]"
ratio=0.01
if [ "${1:-}" = "--ratio" ]; then
    ratio=${2:?$usage}
    shift 2
fi
scene=${1:?$usage}
seeds=${2:-0 1 2}
shift $(( $# < 2 ? $# : 2 ))
store=$(hsi prep "$scene")
predictions=""
for seed in $seeds; do
    split=$(hsi split "$store" --ratio "$ratio" --val "$ratio" --window 9 --seed "$seed")
    checkpoint=$(hsi train "$split" --model litec2anet --seed "$seed" "$@")
    predictions="$predictions $(hsi predict "$checkpoint")"
done
# OA, AA (balanced accuracy), κ and per-class accuracy on the remaining 98 % (99.5 %), mean ± std over seeds.
hsi evaluate $predictions
