#!/bin/sh
# The whole pipeline on SalinasA with a fast model; prints where the classification map is.
# Usage: sh examples/demo.sh [MODEL]   (run from the folder that should hold the outputs)
set -eu
model=${1:-svm}
scene=$(hsi fetch salinasA)
pred=$(hsi prep "$scene" --pca 30 | hsi split --ratio 0.05 | hsi train --model "$model" | hsi predict)
hsi evaluate "$pred" >/dev/null
map=$(hsi plot map "$pred" --with-gt)
echo "$map"
