#!/bin/sh
# The README gallery: SalinasA classification map, uncertainty, training curves, confusion
# matrix and t-SNE, each drawn by the `hsi plot` command the README shows beside it.
# Usage: sh examples/gallery.sh OUTDIR   (hsi on PATH; `hsi fetch` finds SalinasA in
# $HSI_DATA_DIR or downloads it). Intermediate artifacts go to a temporary folder.
set -eu
[ $# -eq 1 ] || { echo "usage: sh examples/gallery.sh OUTDIR" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

scene=$(hsi fetch salinasA)
split=$(hsi prep "$scene" --pca 30 | hsi split --ratio 0.1)
# A HybridSN on 9 × 9 windows: small enough for a laptop CPU in about a minute.
checkpoint=$(hsi train "$split" --model hybridsn --patch 9 --model-args '{"patch": 9}' --epochs 40 --quiet)
pred=$(hsi predict "$checkpoint" --embeddings --quiet)
metrics=$(hsi evaluate "$pred" --quiet)

# Small PNGs: 120 dpi is sharp on screen and keeps each image well under 200 kB.
hsi plot map "$pred" --with-gt --masked --dpi 120 --out "$out/salinasA-map.png" --overwrite
hsi plot uncertainty "$pred" --with-gt --dpi 120 --out "$out/salinasA-uncertainty.png" --overwrite
hsi plot curves "$checkpoint" --dpi 120 --out "$out/salinasA-curves.png" --overwrite
hsi plot confusion "$metrics" --dpi 120 --out "$out/salinasA-confusion.png" --overwrite
hsi plot tsne "$pred" --dpi 120 --out "$out/salinasA-tsne.png" --overwrite
