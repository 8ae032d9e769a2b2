#!/usr/bin/env bash
# One run of the GPU checks, prepared to run in minutes on a lent GPU machine (no network there):
#   bash bench/gpu_suite.sh WHEELS_DIR DATA_DIR OUT_DIR
# WHEELS_DIR: cp312 wheels of what the machine's image lacks (librosa, soundfile, soxr, faiss-cpu,
# sqlite-utils, pytest and their small dependencies); DATA_DIR: a copy of the parts of ../shared it
# reads (fixtures/ctc_chroma_reference, data/recordings, data/bach_violin/audio).
# Writes seven files under OUT_DIR (the device tool brings back only a few files per run):
# log.txt (every step's output, the machine, the CUDA tests), gpu_check.json (CUDA equality and
# throughput on decoded audio), decode.json (16 processes only decoding: the bound on indexing),
# index_cuda.json (GPU, workers 16 and 8), index_cuda1.json (GPU, one process), index_cpu.json (CPU
# workers 16, 8, 4, 1) and train_cuda.json (training throughput per loss, batch 8 and 32).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:?usage: bench/gpu_suite.sh WHEELS_DIR DATA_DIR OUT_DIR}; DATA=${2:?}; OUT=${3:?}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
step() { echo "== $*" >> "$LOG"; "$@" >> "$LOG" 2>&1; echo "== exit $?" >> "$LOG"; }
step python -m pip install -q --no-index --no-deps "$WHEELS"/*.whl
export PYTHONPATH=$PWD
step nvidia-smi --query-gpu=name,memory.total --format=csv
lscpu | grep -E "Model name|^CPU\(s\)" >> "$LOG"
[ -e ../shared ] || ln -s "$(realpath "$DATA")" ../shared || echo "../shared not linked: the CUDA tests will skip" >> "$LOG"
AUDIO="$DATA/data/bach_violin/audio"
# Most important first; every step has its own limit (all together under 9 minutes) and writes
# what it has measured as it goes, so a run cut short keeps the steps done.
step timeout 110 python bench/gpu_check.py --shared "$DATA" --json-out "$OUT/gpu_check.json"
step timeout 130 python bench/index_throughput.py "$AUDIO" --device cuda --copies 32 --workers 16 8 \
  --json-out "$OUT/index_cuda.json"
step timeout 40 python bench/decode_speed.py "$AUDIO" --processes 16 --copies 32 --json-out "$OUT/decode.json"
step timeout 45 python bench/index_throughput.py "$AUDIO" --device cuda --copies 4 --workers 1 \
  --json-out "$OUT/index_cuda1.json"
TRAIN=$(mktemp -d)
for batch in 8 32; do
  timeout 30 python bench/train_throughput.py --device cuda --batch-size $batch --steps 8 --json \
    > "$TRAIN/b$batch.json" 2>> "$LOG"
done
python -c 'import json, sys; json.dump([json.load(open(f)) for f in sys.argv[1:]], sys.stdout, indent=2)' \
  "$TRAIN"/b8.json "$TRAIN"/b32.json > "$OUT/train_cuda.json" 2>> "$LOG"
step timeout 45 python -m pytest -q -p no:cacheprovider tests/models/test_reference_equality.py \
  tests/models/test_resample.py tests/indexer/test_gpu_feed.py -k cuda
step timeout 90 python bench/index_throughput.py "$AUDIO" --device cpu --copies 3 --workers 16 8 4 1 \
  --json-out "$OUT/index_cpu.json"
echo done
