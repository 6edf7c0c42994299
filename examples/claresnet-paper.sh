#!/bin/sh
# CLAReSNet's protocol (Bandyopadhyay et al., §III): PCA to 30 bands, 11 × 11 patches, stratified
# 72/8/20 split, the §III-B augmentations, AdamW lr 1e-4 / weight decay 1e-2, batch 16, 40 epochs,
# the best validation epoch kept, batch 32 for evaluation — all registry defaults of `claresnet`.
# Usage: sh examples/claresnet-paper.sh SCENE.mat [SEEDS] [EXTRA TRAIN OPTIONS...]
#   e.g. sh examples/claresnet-paper.sh Indian_pines_corrected.mat "0 1 2"
#        sh examples/claresnet-paper.sh SalinasA_corrected.mat 0 --epochs 5   (a quick look)
set -eu
scene=${1:?usage: claresnet-paper.sh SCENE [SEEDS] [TRAIN OPTIONS...]}
seeds=${2:-0 1 2}
shift $(( $# < 2 ? $# : 2 ))
store=$(hsi prep "$scene" --pca 30)
predictions=""
for seed in $seeds; do
    split=$(hsi split "$store" --ratio 0.72 --val 0.08 --seed "$seed")
    checkpoint=$(hsi train "$split" --model claresnet --seed "$seed" "$@")
    predictions="$predictions $(hsi predict "$checkpoint" --embeddings)"
done
# OA, AA (balanced accuracy), κ, MCC, ARI and the inter-class centroid distance, mean ± std over seeds.
hsi evaluate $predictions
