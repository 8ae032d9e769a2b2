#!/usr/bin/env bash
# Build the bach_violin benchmark: the 12 real recordings (linked, not copied) plus, as distractors,
# every other movement bwv100?_mov?.mxl rendered with a violin (GM 40), then index them.
#   bash bench/build_bach_violin.sh OUT_DIR     (then: python cli.py evaluate … --db OUT_DIR/index.db)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/build_bach_violin.sh OUT_DIR}
SHARED=$(cd "${SHARED:-../shared}" && pwd)
mkdir -p "$OUT/audio/real" "$OUT/audio/rendered"
for f in "$SHARED"/data/bach_violin/audio/*.mp3 "$SHARED"/data/bach_violin/audio/*.opus "$SHARED"/data/recordings/*.wav; do
  ln -sf "$f" "$OUT/audio/real/$(basename "$f")"
done
scores=()
for s in "$SHARED"/data/bach_violin/scores/bwv100?_mov?.mxl; do
  stem=$(basename "$s" .mxl)
  # movements with a recording (emil-telmanyi_bwv1001_trimmed_30sec is BWV 1001/1)
  if ls "$SHARED"/data/bach_violin/audio | grep -q "_${stem}\." || [ "$stem" = bwv1001_mov1 ]; then continue; fi
  scores+=("$s")
done
python bench/render_scores.py "$OUT/audio/rendered" "${scores[@]}" --program 40 --tempo-variation 0.1
python cli.py index "$OUT/audio" --db "$OUT/index.db" "${@:2}"
