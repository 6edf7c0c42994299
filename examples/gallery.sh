#!/bin/sh
# The README gallery: SalinasA classification maps, uncertainty, training curves, confusion
# matrix and t-SNE, each drawn by the `hsi plot` command the README shows beside it.
#
# Usage: sh examples/gallery.sh OUTDIR    e.g. HSI_DATA_DIR=../shared/data sh examples/gallery.sh docs/gallery
# (`hsi` on PATH; `hsi fetch` finds SalinasA in $HSI_DATA_DIR or downloads it). Intermediate
# artifacts go to a temporary folder; OUTDIR receives only the PNGs.
#
# Trains two models on 5 % of the labelled pixels per class (PCA 30): an RBF SVM (seconds) and
# Lite-C2ANet, 100 epochs on 9 × 9 patches (about 20 s on one CPU core), which gives the curves
# and, with `hsi predict --embeddings`, the features for t-SNE. About a minute on a laptop.
set -eu
[ $# -eq 1 ] || { echo "usage: sh examples/gallery.sh OUTDIR" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

scene=$(hsi fetch salinasA --quiet)
split=$(hsi prep "$scene" --pca 30 --quiet | hsi split --ratio 0.05 --quiet)
svm=$(hsi train "$split" --model svm --quiet | hsi predict --quiet)
checkpoint=$(hsi train "$split" --model litec2anet --epochs 100 --quiet)
pred=$(hsi predict "$checkpoint" --embeddings --quiet)
metrics=$(hsi evaluate "$pred" --quiet)
hsi evaluate "$svm" --quiet >/dev/null  # its OA goes into the grid's panel title

# 120 dpi is sharp on screen and keeps each PNG at a few tens of kB.
hsi plot map "$pred" --with-rgb --with-gt --masked --dpi 120 --out "$out/salinasA-map.png" --overwrite
hsi plot uncertainty "$pred" --with-gt --dpi 120 --out "$out/salinasA-uncertainty.png" --overwrite
hsi plot curves "$checkpoint" --dpi 120 --out "$out/salinasA-curves.png" --overwrite
hsi plot confusion "$metrics" --dpi 120 --out "$out/salinasA-confusion.png" --overwrite
hsi plot tsne "$pred" --points 2000 --dpi 120 --out "$out/salinasA-tsne.png" --overwrite
hsi plot grid "$svm" "$pred" --masked --dpi 120 --out "$out/salinasA-grid.png" --overwrite
