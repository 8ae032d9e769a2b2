#!/usr/bin/env bash
# Build the hauptstimme benchmark: every full score of ../shared/data/hauptstimme rendered to audio
# (each part with its own GM instrument, the score's tempo marks, ±10 % tempo drift) and indexed.
#   bash bench/build_hauptstimme.sh OUT_DIR     (then: python cli.py evaluate … --db OUT_DIR/index.db)
#   RENDER_OPTS="--velocity 64 --melody-velocity 127" bash bench/build_hauptstimme.sh OUT_DIR   (melody +6 dB)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/build_hauptstimme.sh OUT_DIR}
SHARED=${SHARED:-../shared}
find "$SHARED/data/hauptstimme" -name '*.mxl' ! -name '*_melody.mxl' -print0 | sort -z \
  | xargs -0 python bench/render_scores.py "$OUT/audio" --tempo-variation 0.1 ${RENDER_OPTS:-}
python cli.py index "$OUT/audio" --db "$OUT/index.db" "${@:2}"
