#!/usr/bin/env bash
# One GPU session, prepared to run in minutes on a lent GPU machine (no network there):
#   bash bench/gpu_session.sh WHEELS_DIR DATA_DIR OUT_DIR
# WHEELS_DIR: cp312 wheels of what the machine's image lacks (librosa, soundfile, soxr, faiss-cpu,
# sqlite-utils, pytest and their small dependencies); DATA_DIR: a copy of the parts of ../shared it
# reads (fixtures/ctc_chroma_reference, data/recordings, data/bach_violin/audio).
# Writes under OUT_DIR: gpu_check.json (CUDA equality and throughput), pytest_cuda.txt, and the
# end-to-end indexing tables index_cuda.json (GPU, workers 16 and 8), index_cuda1.json (GPU, 1 worker),
# index_cpu.json (CPU workers 16, 8, 4, 1),
# and train_cuda_b8.json, train_cuda_b32.json (training throughput per loss on the GPU, batch 8 and 32).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:?usage: bench/gpu_session.sh WHEELS_DIR DATA_DIR OUT_DIR}; DATA=${2:?}; OUT=${3:?}
mkdir -p "$OUT"
python -m pip install -q --no-index --no-deps "$WHEELS"/*.whl > "$OUT/pip.txt" 2>&1
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
lscpu | grep -E "Model name|^CPU\(s\)" >> "$OUT/gpu.txt"
[ -e ../shared ] || ln -s "$(realpath "$DATA")" ../shared || echo "../shared not linked: the CUDA tests will skip" >> "$OUT/gpu.txt"
# Most important first; every step has its own limit (all together under 9 minutes) and writes
# what it has measured as it goes, so a session cut short keeps the steps done.
timeout 110 python bench/gpu_check.py --shared "$DATA" --json-out "$OUT/gpu_check.json" > "$OUT/gpu_check.txt" 2>&1
AUDIO="$DATA/data/bach_violin/audio"
timeout 130 python bench/index_throughput.py "$AUDIO" --device cuda --copies 32 --workers 16 8 \
  --json-out "$OUT/index_cuda.json" > "$OUT/index_cuda.txt" 2>&1
timeout 45 python bench/index_throughput.py "$AUDIO" --device cuda --copies 4 --workers 1 \
  --json-out "$OUT/index_cuda1.json" > "$OUT/index_cuda1.txt" 2>&1
for batch in 8 32; do
  timeout 30 python bench/train_throughput.py --device cuda --batch-size $batch --steps 8 --json \
    > "$OUT/train_cuda_b$batch.json" 2> "$OUT/train_cuda_b$batch.txt"
done
timeout 45 python -m pytest -q -p no:cacheprovider tests/models/test_reference_equality.py \
  tests/models/test_resample.py tests/indexer/test_gpu_feed.py -k cuda > "$OUT/pytest_cuda.txt" 2>&1
timeout 120 python bench/index_throughput.py "$AUDIO" --device cpu --copies 3 --workers 16 8 4 1 \
  --json-out "$OUT/index_cpu.json" > "$OUT/index_cpu.txt" 2>&1
echo done
