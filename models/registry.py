"""The 25 pretrained CTC chroma variants: their ids, weight files and loading.

Weights were converted once from the TensorFlow checkpoints of ``ctc-chroma==2.1`` (PyPI,
MIT licence, see ``models/weights/LICENSE``) by ``python -m models.convert_weights`` and are
stored as safetensors (no pickle) next to this module.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from safetensors.torch import load_file

from models.network import ChromaNet

__all__ = ["DEFAULT_MODEL", "MODEL_IDS", "UnknownModelError", "load", "weights_path"]

WEIGHTS_DIR = Path(__file__).parent / "weights"

_FOLDS_V1 = (
    "1234valid5",
    "123valid4",
    "2345valid1",
    "234valid5",
    "3451valid2",
    "345valid1",
    "4512valid3",
    "451valid2",
    "5123valid4",
    "512valid3",
)
_FOLDS_V2 = ("123valid4", "234valid5", "345valid1", "451valid2", "512valid3")

#: v1_ctc_* from Zalkow & Müller, ISMIR 2020; v2_{ctc,linear,strong}_* from TASLP 2021.
MODEL_IDS: tuple[str, ...] = tuple(
    [f"v1_ctc_train{f}" for f in _FOLDS_V1]
    + [f"v2_{kind}_train{f}" for kind in ("ctc", "linear", "strong") for f in _FOLDS_V2]
)
DEFAULT_MODEL = "v2_ctc_train123valid4"


class UnknownModelError(ValueError):
    """A model id that is not one of :data:`MODEL_IDS`."""

    def __init__(self, model_id: str) -> None:
        super().__init__(f"unknown model id {model_id!r}; valid ids: {', '.join(MODEL_IDS)}")


def weights_path(model_id: str) -> Path:
    """Path of the safetensors file of ``model_id``."""
    if model_id not in MODEL_IDS:
        raise UnknownModelError(model_id)
    return WEIGHTS_DIR / f"{model_id}.safetensors"


@cache
def _state_dict(model_id: str) -> dict[str, torch.Tensor]:
    return load_file(weights_path(model_id))


def load(model_id: str = DEFAULT_MODEL, device: str | torch.device = "cpu") -> ChromaNet:
    """Return the pretrained network ``model_id`` in eval mode on ``device``."""
    net = ChromaNet()
    net.load_state_dict(_state_dict(model_id))
    return net.eval().to(device)
