"""Convert the TensorFlow checkpoints of the ``ctc-chroma==2.1`` wheel to safetensors.

Run once by a maintainer; the results are committed in ``models/weights/``::

    pip download --no-deps ctc-chroma==2.1 -d /tmp/wheel
    python -m models.convert_weights /tmp/wheel/ctc_chroma-2.1-py3-none-any.whl

No TensorFlow is needed: :mod:`models.tf_checkpoint` reads the checkpoint files directly.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from models.errors import ParameterError
from models.network import CONV_SPECS
from models.registry import MODEL_IDS, WEIGHTS_DIR
from models.tf_checkpoint import read_checkpoint

__all__ = ["convert_checkpoint", "convert_wheel"]

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def convert_checkpoint(prefix: Path) -> dict[str, np.ndarray]:
    """Map one Keras checkpoint onto :class:`models.network.ChromaNet` parameter names.

    Conv kernels go from Keras ``(time, pitch, in, out)`` to PyTorch ``(out, in, time, pitch)``;
    the dense kernels ``(216, n)`` become the pooling buffer and the blank ``Linear`` layer.
    """
    ckpt = read_checkpoint(prefix)

    def var(name: str) -> np.ndarray:
        return ckpt[name + _SUFFIX]

    state: dict[str, np.ndarray] = {}
    for i, (out_ch, k_time, k_pitch) in enumerate(CONV_SPECS):
        kernel = var(f"layer_with_weights-{i}/kernel")
        if kernel.shape[0] != k_time or kernel.shape[1] != k_pitch or kernel.shape[3] != out_ch:
            raise ParameterError(f"{prefix}: conv {i} kernel has shape {kernel.shape}")
        state[f"convs.{i}.weight"] = kernel.transpose(3, 2, 0, 1)
        state[f"convs.{i}.bias"] = var(f"layer_with_weights-{i}/bias")
    state["chroma_pool"] = var("layer_with_weights-6/layer/kernel")
    state["blank.weight"] = var("layer_with_weights-7/layer/kernel").T
    state["blank.bias"] = var("layer_with_weights-7/layer/bias")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def convert_wheel(wheel: Path, out_dir: Path = WEIGHTS_DIR) -> list[Path]:
    """Convert all 25 checkpoints found in the ``ctc-chroma`` wheel into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp)
        models_dir = Path(tmp) / "ctc_chroma" / "models"
        for model_id in MODEL_IDS:
            prefix = models_dir / f"model_{model_id}"
            digest = hashlib.sha256(Path(f"{prefix}.index").read_bytes())
            for shard in sorted(models_dir.glob(f"model_{model_id}.data-*")):
                digest.update(shard.read_bytes())
            meta = {
                "source": f"{wheel.name}:ctc_chroma/models/model_{model_id}",
                "source_sha256": digest.hexdigest(),
                "licence": "MIT, Copyright (c) 2020 Frank Zalkow and Meinard Müller",
            }
            path = out_dir / f"{model_id}.safetensors"
            save_file(convert_checkpoint(prefix), str(path), metadata=meta)
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="ctc_chroma-2.1-py3-none-any.whl")
    parser.add_argument("-o", "--out-dir", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args()
    for path in convert_wheel(args.wheel, args.out_dir):
        print(path)


if __name__ == "__main__":
    main()
