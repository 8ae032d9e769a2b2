#!/usr/bin/env bash
# Train a chroma model on the Hauptstimme renderings and report it on works never used for training
# or selection, beside the pretrained default (docs/experiments.md, "Learning chroma on score–audio pairs").
#   bash bench/train_hauptstimme.sh OUT_DIR LOSS [train options…]      LOSS: ctc | linear | strong
# The model goes to OUT_DIR/models/NAME (NAME: environment variable, default LOSS_ft).
# Needs OUT_DIR/hauptstimme/audio (bench/build_hauptstimme.sh OUT_DIR/hauptstimme renders and indexes it)
# and bench/build_bach_violin.sh OUT_DIR/bach_violin. Resumable: re-running continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/train_hauptstimme.sh OUT_DIR LOSS [train options…]}
LOSS=${2:?usage: bench/train_hauptstimme.sh OUT_DIR LOSS [train options…]}
SHARED=${SHARED:-../shared}
NAME=${NAME:-${LOSS}_ft}
MODEL="$OUT/models/$NAME"
python cli.py train --data "hauptstimme=$OUT/hauptstimme/audio" --loss "$LOSS" --out "$MODEL" \
  --cache "$OUT/cache" --init v2_ctc_train123valid4 --epochs 4 --steps-per-epoch 100 --batch-size 8 \
  --patience 2 "${@:3}"
python bench/split_ground_truth.py report "$OUT/report.csv" --ground-truth "$SHARED/benchmarks/hauptstimme/ground_truth.csv"
python cli.py index "$OUT/hauptstimme/audio" --db "$OUT/hauptstimme/index_$NAME.db" --model "$MODEL" --quiet
python cli.py index "$OUT/bach_violin/audio" --db "$OUT/bach_violin/index_$NAME.db" --model "$MODEL" --quiet
for db in "$OUT/hauptstimme/index.db" "$OUT/hauptstimme/index_$NAME.db"; do
  for mode in "" --exhaustive; do
    echo "== report works, $db $mode"
    python cli.py evaluate "$OUT/report.csv" --db "$db" $mode --quiet | tail -3
  done
done
for db in "$OUT/bach_violin/index.db" "$OUT/bach_violin/index_$NAME.db"; do
  echo "== bach_violin, $db"
  python cli.py evaluate "$SHARED/benchmarks/bach_violin/ground_truth.csv" --db "$db" --quiet | tail -3
done
