#!/usr/bin/env bash
# Build the hauptstimme benchmark: every full score of ../shared/data/hauptstimme rendered to audio
# (each part with its own GM instrument, the score's tempo marks, ±10 % drift) and indexed.
#   bash bench/build_hauptstimme.sh OUT_DIR     (then: python cli.py evaluate … --db OUT_DIR/index.db)
#   RENDER_OPTS="--velocity 64 --melody-velocity 127" bash bench/build_hauptstimme.sh OUT_DIR   (melody +6 dB)
#   CONDITION=realistic bash bench/build_hauptstimme.sh OUT_DIR
#       each part by its own dynamics and articulation, three GM SoundFonts (TimGM6mb, FluidR3_GM,
#       MuseScore_General; the last two installed here with apt-get when missing), a concert hall.
# Extra arguments go to `cli.py index`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/build_hauptstimme.sh OUT_DIR [index options…]}
SHARED=${SHARED:-../shared}
OPTS=${RENDER_OPTS:-}
if [ "${CONDITION:-equal}" = realistic ]; then
  SF2=/usr/share/sounds/sf2
  if [ ! -f "$SF2/FluidR3_GM.sf2" ] || [ ! -f "$SF2/MuseScore_General_Full.sf2" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      fluid-soundfont-gm musescore-general-soundfont-lossless
  fi
  OPTS="--expression --room --soundfont default --soundfont $SF2/FluidR3_GM.sf2 --soundfont $SF2/MuseScore_General_Full.sf2 $OPTS"
fi
find "$SHARED/data/hauptstimme" -name '*.mxl' ! -name '*_melody.mxl' -print0 | sort -z \
  | xargs -0 python bench/render_scores.py "$OUT/audio" --tempo-variation 0.1 $OPTS
python cli.py index "$OUT/audio" --db "$OUT/index.db" "${@:2}"
