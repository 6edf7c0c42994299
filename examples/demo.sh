#!/bin/sh
# The whole pipeline on SalinasA with a light paper model (Lite-C2ANet: about half a minute of CPU);
# ends with the classification map's path and the test pixels' OA/AA/κ line.
# Usage: sh examples/demo.sh [MODEL]   (run from the folder that should hold the outputs)
set -eu
model=${1:-litec2anet}
scene=$(hsi fetch salinasA)
pred=$(hsi prep "$scene" --pca 30 | hsi split --ratio 0.05 | hsi train --model "$model" | hsi predict)
scores=$(hsi evaluate "$pred" --json -q | python3 -c 'import json, sys
m = json.load(sys.stdin)
print("%s: OA %.2f %%, AA %.2f %%, κ × 100 %.2f on %d test pixels"
      % (m["model"], 100 * m["oa"], 100 * m["aa"], 100 * m["kappa"], m["n"]))')
map=$(hsi plot map "$pred" --with-gt)
echo "$map"
echo "$scores"
