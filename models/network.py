"""The CTC deep chroma network of Zalkow & Müller (ISMIR 2020, TASLP 2021) in PyTorch.

Input: normalised HCQT frames ``(batch, 6 harmonics, time, 216 bins)``. Six ``same``-padded
convolutions (the Bittner et al. deep-salience stack) give a pitch salience ``(time, 216)``;
a fixed 216→12 pooling and a learned 216→1 blank logit feed a softmax over 13 classes
(C..B, blank). This mirrors ``ctc_chroma.models.get_model_noweigts`` layer for layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "CONV_SPECS",
    "LEAKY_SLOPE",
    "N_BINS",
    "N_HARMONICS",
    "ChromaNet",
    "SameConv2d",
    "chroma_from_probabilities",
    "same_padding",
]

N_BINS = 216
N_HARMONICS = 6
LEAKY_SLOPE = 0.3  # Keras LeakyReLU default
# (out channels, kernel time, kernel pitch) of the six convolutions, input channels follow
CONV_SPECS = ((64, 3, 3), (32, 3, 3), (32, 3, 3), (32, 3, 3), (8, 3, 42), (1, 1, 1))


def same_padding(k_time: int, k_pitch: int) -> tuple[int, int, int, int]:
    """Keras/TF ``same`` padding (extra row or column at the end) in ``F.pad`` order."""
    return ((k_pitch - 1) // 2, k_pitch // 2, (k_time - 1) // 2, k_time // 2)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras ``same`` zero padding (odd kernels pad inside the convolution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = same_padding(*self.kernel_size)
        if left == right and top == bottom:
            return F.conv2d(x, self.weight, self.bias, padding=(top, left))
        return super().forward(F.pad(x, (left, right, top, bottom)))


class ChromaNet(nn.Module):
    """HCQT → 13-class (12 chroma + blank) softmax, frame by frame."""

    def __init__(self) -> None:
        super().__init__()
        convs, in_ch = [], N_HARMONICS
        for out_ch, k_time, k_pitch in CONV_SPECS:
            convs.append(SameConv2d(in_ch, out_ch, (k_time, k_pitch)))
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        self.register_buffer("chroma_pool", torch.zeros(N_BINS, 12))  # fixed, not trained
        self.blank = nn.Linear(N_BINS, 1)

    @property
    def receptive_field(self) -> int:
        """Frames of context on each side that influence one output frame."""
        return sum(k_time // 2 for _, k_time, _ in CONV_SPECS)

    def salience(self, hcqt: torch.Tensor) -> torch.Tensor:
        """Pitch salience ``(batch, time, 216)`` in [0, 1] from ``(batch, 6, time, 216)``."""
        x = hcqt
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            x = conv(x)
            x = torch.sigmoid(x) if i == last else F.leaky_relu(x, LEAKY_SLOPE, inplace=True)
        return x[:, 0]

    def logits(self, hcqt: torch.Tensor) -> torch.Tensor:
        """Unnormalised class scores ``(batch, time, 13)`` (training takes their log-softmax)."""
        sal = self.salience(hcqt)
        return torch.cat([sal @ self.chroma_pool, self.blank(sal)], dim=-1)

    def forward(self, hcqt: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(batch, time, 13)`` from HCQT ``(batch, 6, time, 216)``."""
        return torch.softmax(self.logits(hcqt), dim=-1)


def chroma_from_probabilities(probabilities: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Drop the blank (last class) and L2-normalise each frame, as the original post-processing.

    ``probabilities`` is ``(..., 13)``. Frames whose norm is below ``eps`` become uniform
    (``librosa.util.normalize(..., fill=True)`` semantics).
    """
    chroma = probabilities[..., :12]
    norm = torch.linalg.vector_norm(chroma, dim=-1, keepdim=True)
    uniform = torch.full_like(chroma, 12**-0.5)
    return torch.where(norm > eps, chroma / norm.clamp_min(eps), uniform)
