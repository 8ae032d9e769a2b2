"""The chroma models: the 25 pretrained CTC variants by id, and trained models by path.

Weights were converted once from the TensorFlow checkpoints of ``ctc-chroma==2.1`` (PyPI,
MIT licence, see ``models/weights/LICENSE``) by ``python -m models.convert_weights`` and are
stored as safetensors (no pickle) next to this module. A model trained by ``cli.py train`` is
named by its folder (holding ``weights.safetensors`` and ``model.json``) or its weights file;
indexes record such a model by path and content digest (:func:`model_digest`).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import RetrievalError

if TYPE_CHECKING:  # PyTorch is imported where weights are loaded: ids and paths are wanted without it
    import torch

    from models.network import ChromaNet

__all__ = [
    "DEFAULT_MODEL", "MODEL_IDS", "SHIPPED_DIR", "SHIPPED_IDS", "WEIGHTS_FILE", "ModelError", "UnknownModelError",
    "load", "model_digest", "resolve_model", "weights_path",
]

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
SHIPPED_DIR = WEIGHTS_DIR / "trained"
SHIPPED_IDS: tuple[str, ...] = ("hauptstimme_melody_ctc",)
"""Models trained by this project (``cli.py train``) and shipped with it: each a folder under
:data:`SHIPPED_DIR` with its weights and model card (``model.json``: data, licences, results)."""

DEFAULT_MODEL = "v2_ctc_train123valid4"
WEIGHTS_FILE = "weights.safetensors"
"""File name of a trained model's weights inside its folder (beside ``model.json``)."""


class ModelError(RetrievalError, ValueError):
    """A model that cannot be used: unknown id, missing file, or weights that are not a chroma model."""


class UnknownModelError(ModelError):
    """A model id that is not one of :data:`MODEL_IDS` nor a path to a model."""

    def __init__(self, model_id: str) -> None:
        super().__init__(
            f"unknown model {model_id!r}: neither a trained model's folder or .safetensors file nor a model id "
            f"(valid ids: {', '.join(MODEL_IDS + SHIPPED_IDS)})"
        )


def _is_path(model: str) -> bool:
    return model not in MODEL_IDS + SHIPPED_IDS and (
        "/" in model or model.endswith(".safetensors") or Path(model).exists())


def resolve_model(model: str) -> str:
    """A pretrained or shipped id as it is, a trained model as the absolute path of its weights file.

    Raises :class:`UnknownModelError` for a name that is neither, :class:`ModelError` for a path
    without weights.
    """
    if model in MODEL_IDS + SHIPPED_IDS:
        return model
    if not _is_path(model):
        raise UnknownModelError(model)
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise ModelError(f"{path}: no such model file (a trained model is a folder with {WEIGHTS_FILE})")
    return str(path.resolve())


def weights_path(model: str) -> Path:
    """Path of the safetensors file of a model id or trained model."""
    resolved = resolve_model(model)
    if resolved in SHIPPED_IDS:
        return SHIPPED_DIR / resolved / WEIGHTS_FILE
    return Path(resolved) if resolved not in MODEL_IDS else WEIGHTS_DIR / f"{resolved}.safetensors"


def model_digest(model: str) -> str:
    """``""`` for a pretrained or shipped id (immutable), else the first 16 hex digits of the weights' SHA-256."""
    resolved = resolve_model(model)
    if resolved in MODEL_IDS + SHIPPED_IDS:
        return ""
    return hashlib.sha256(Path(resolved).read_bytes()).hexdigest()[:16]


def _check_state_dict(path: Path, state: dict[str, torch.Tensor]) -> None:
    from models.network import ChromaNet  # PyTorch: see the top of this module

    expected = ChromaNet().state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ModelError(f"{path}: not a chroma model (missing tensors {', '.join(missing[:3])})")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ModelError(f"{path}: not a chroma model ({name} has shape {tuple(state[name].shape)})")


@cache
def _state_dict(path: Path, mtime_ns: int) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelError(f"{path}: not a safetensors model file ({str(error).splitlines()[0][:100]})") from None
    _check_state_dict(path, state)
    return state


def load(model: str = DEFAULT_MODEL, device: str | torch.device = "cpu") -> ChromaNet:
    """Return the network of a model id or trained model (see :func:`resolve_model`) in eval mode."""
    from models.network import ChromaNet  # PyTorch: see the top of this module

    path = weights_path(model)
    net = ChromaNet()
    net.load_state_dict(_state_dict(path, path.stat().st_mtime_ns))
    return net.eval().to(device)
