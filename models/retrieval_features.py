"""The feature contract: what an index and every query against it must share.

Chroma at 25 Hz → retrieval features and shingles, identically for recordings and themes, and the
:class:`IndexSettings` an index records (model, rates, shingle length). Imported alike by the
store (``db``), the indexer and the search (``retrieval``), so it lives below all three.

Retrieval features are the chroma smoothed in time with a Hann window and downsampled (a
CENS-like step that makes matching robust to local timing and articulation), one L2-normalised
12-d row per frame. A shingle is a run of consecutive frames, flattened and L2-normalised, so
that the inner product of two shingles is their cosine similarity.

Conventions (the whole project):

- *chroma* as the models give it is librosa's layout, ``(12, T)``: pitch classes C..B down,
  frames across, at :data:`models.frontend.FEATURE_RATE` (25 Hz); the network input is
  ``(T, 216, 6)`` time first, as the original's ``hcqt_norm``;
- *retrieval features* are time first, ``(T', 12)`` at ``25 / downsample`` Hz (12.5 Hz by
  default), one row per frame, because they are cut into rows of shingles and stored frame by
  frame; :func:`retrieval_features` is the one place where the layout turns.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from models.errors import ParameterError, RetrievalError
from models.frontend import FEATURE_RATE
from models.registry import DEFAULT_MODEL

__all__ = [
    "CENS_DOWNSAMPLE",
    "FEATURE_VERSION",
    "PRESETS",
    "COARSE_RATES",
    "DEFAULT_INDEX_MODEL",
    "IndexSettings",
    "Preset",
    "SettingsMismatchError",
    "cens_rows",
    "coarsened",
    "convolved",
    "hann_window",
    "retrieval_features",
    "shingle_starts",
    "shingles",
    "unit_rows",
]

FEATURE_VERSION = 1
"""Bumped whenever the computation of retrieval features changes: older indexes are refused."""


DEFAULT_INDEX_MODEL = f"{DEFAULT_MODEL}+v2_ctc_train512valid3"
"""The model of a default index: two pretrained networks, their probabilities averaged (chosen on
orchestral renderings no network saw; docs/benchmarks.md, "Defaults chosen from these tables")."""

COARSE_RATES: dict[str, int] = {"downsample": 2, "smoothing": 5, "shingle_length": 16, "shingle_hop": 2}
"""The features an index with ``coarse_at_scale`` turns to in large collections: 12.5 Hz, smoothed
over five 25 Hz frames, 1.28 s shingles every 0.16 s. 25 Hz frames gain in small collections; at
100 h they cost twice the bytes and 1.6× the query time and gain nothing (docs/experiments.md,
"Two networks averaged at 25 Hz")."""


class SettingsMismatchError(RetrievalError, ValueError):
    """An index was built with other index settings than a query or an update asks for."""


@dataclass(frozen=True)
class IndexSettings:
    """Everything that must agree between an index and the queries searched against it.

    ``index_factory`` is a FAISS :func:`faiss.index_factory` string, or ``"auto"`` to choose
    one by collection size (see :func:`db.vectors.auto_factory`).
    """

    model_id: str = DEFAULT_INDEX_MODEL  # pretrained id(s) joined by '+', a baseline (cens, …) or a trained model
    model_digest: str = ""  # SHA-256 prefix of a trained model's weights ("" for ids): another model is refused
    downsample: int = 1  # 25 Hz chroma frames per retrieval frame (2: 12.5 Hz)
    smoothing: int = 1  # Hann window length in 25 Hz frames (1: none)
    shingle_length: int = 32  # frames of the retrieval rate: 1.28 s
    shingle_hop: int = 4  # frames between stored shingles of a recording
    index_factory: str = "auto"
    coarse_at_scale: bool = True  # 25 Hz frames turn to COARSE_RATES once the collection is large; False at other rates
    cens_frames: bool = True  # CENS of the same HCQT stored beside (cens_rows); False for models that are CENS already
    version: int = FEATURE_VERSION

    def __post_init__(self) -> None:
        for name in ("downsample", "smoothing", "shingle_length", "shingle_hop"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.coarse_at_scale and (self.downsample, self.smoothing) != (1, 1):  # only 25 Hz frames turn coarse
            object.__setattr__(self, "coarse_at_scale", False)
        if self.cens_frames and (self.model_id == "cens" or self.model_id.endswith("+cens")):
            object.__setattr__(self, "cens_frames", False)

    def at_scale(self) -> IndexSettings:
        """The settings of this index's features once the collection is large: with
        ``coarse_at_scale``, plain :data:`COARSE_RATES` features of the same model (see
        :func:`coarsened`), else these settings unchanged."""
        return replace(self, **COARSE_RATES, coarse_at_scale=False) if self.coarse_at_scale else self

    @property
    def rate(self) -> float:
        """Frames per second of the retrieval features."""
        return FEATURE_RATE / self.downsample

    @property
    def cens_rate(self) -> float:
        """Frames per second of the stored CENS (:func:`cens_rows`)."""
        return self.rate / CENS_DOWNSAMPLE

    @property
    def dim(self) -> int:
        """Dimension of a shingle vector."""
        return 12 * self.shingle_length

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IndexSettings:
        data = {"cens_frames": False, **json.loads(text)}  # indexes made before CENS frames have none
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def check_matches(self, other: IndexSettings, what: str = "the index") -> None:
        """Raise :class:`SettingsMismatchError` naming every setting where ``other`` differs (but
        ``index_factory`` and ``cens_frames``: what is stored, not what a query must share)."""
        diffs = [
            f"{f.name}={getattr(other, f.name)!r} (asked {getattr(self, f.name)!r})"
            for f in fields(self)
            if f.name not in ("index_factory", "cens_frames") and getattr(self, f.name) != getattr(other, f.name)
        ]
        if diffs:
            raise SettingsMismatchError(
                f"{what} was built with other settings: {', '.join(diffs)}; "
                "query with the index's settings or rebuild it (cli.py index --rebuild)"
            )


@dataclass(frozen=True)
class Preset:
    """Named index settings for one kind of collection: ``use`` says when (one line), ``settings``
    which :class:`IndexSettings` fields differ from the defaults (as ``index_factory`` strings
    do for FAISS: a description, not code)."""

    use: str
    settings: dict[str, object]

    def apply(self, base: IndexSettings | None = None) -> IndexSettings:
        """``base`` (default: the defaults) with this preset's settings."""
        return replace(base or IndexSettings(), **self.settings)


PRESETS: dict[str, Preset] = {
    "default": Preset("any collection (solo, chamber, orchestral, piano): two networks averaged, 25 Hz frames, "
                      "12.5 Hz once the collection is large", {}),
    "fast": Preset("where indexing time matters more than finding (about 0.7× the default's): one network at "
                   "12.5 Hz", {"model_id": DEFAULT_MODEL, **COARSE_RATES}),
    "textures": Preset("full-texture themes (piano scores of both staves, chorales) searched with --rendering "
                       "symbolic when indexing time matters: one network plus CENS at 12.5 Hz (the default "
                       "ranks such themes better)",
                       {"model_id": f"{DEFAULT_MODEL}+cens", **COARSE_RATES}),
}
"""The presets of ``cli.py index --preset`` (docs/benchmarks.md, "Defaults chosen from these tables")."""


def retrieval_features(chroma: np.ndarray, downsample: int = 2, smoothing: int = 5) -> np.ndarray:
    """Smooth and downsample chroma ``(12, T)`` at 25 Hz to ``(T', 12)`` L2-normalised rows.

    ``T' = ceil(T / downsample)``; frame ``i`` is centred on input frame ``i * downsample``.
    """
    chroma = np.asarray(chroma, dtype=np.float32)
    if chroma.ndim != 2 or chroma.shape[0] != 12:
        raise ParameterError(f"chroma must have shape (12, T), got {chroma.shape}")
    if smoothing > 1:
        window = hann_window(smoothing + 2)[1:-1].astype(np.float32)
        chroma = convolved(chroma, window / window.sum())
    return unit_rows(np.ascontiguousarray(chroma[:, ::downsample].T))


CENS_DOWNSAMPLE = 2
"""Retrieval frames per stored CENS frame: CENS is smoothed over 0.48 s (:data:`models.cens.CENS_SMOOTHING`),
so half the rate loses nothing a theme's alignment needs (12.5 Hz beside 25 Hz frames, 6.25 Hz
beside coarse ones) and costs half the bytes: 540 kB per audio hour at 25 Hz, 270 kB at 12.5 Hz."""


def cens_rows(cens: np.ndarray, settings: IndexSettings) -> np.ndarray:
    """CENS ``(12, T)`` at 25 Hz (:func:`models.cens.cens_from_log_hcqt`) as the rows an index with
    ``settings`` stores and a theme is aligned with: ``(ceil(T / (downsample · CENS_DOWNSAMPLE)), 12)``,
    every such frame taken (CENS is smoothed already), unit rows. Those of coarse settings are
    every second row of those of 25 Hz ones, so an index turns coarse without decoding audio."""
    return retrieval_features(cens, settings.downsample * CENS_DOWNSAMPLE, 1)


def coarsened(frames: np.ndarray) -> np.ndarray:
    """25 Hz retrieval features ``(T, 12)`` (downsample 1, smoothing 1: the network's chroma, rows of
    unit norm) as :data:`COARSE_RATES` features ``(ceil(T / 2), 12)``.

    Equal to extracting the recording at those rates (the chroma is the same unit rows), so an index
    turns coarse from its stored features without decoding any audio again.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2 or frames.shape[1] != 12:
        raise ParameterError(f"frames must have shape (T, 12), got {frames.shape}")
    return retrieval_features(frames.T, COARSE_RATES["downsample"], COARSE_RATES["smoothing"])


def hann_window(n: int) -> np.ndarray:
    """The periodic Hann window ``(n,)``, float64: ``scipy.signal.get_window("hann", n)`` without
    importing ``scipy.signal`` (over a second of a query's start-up)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def convolved(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each row of ``x`` ``(n, T)`` convolved with ``weights`` ``(m,)``, zeros beyond its ends, same
    length and centring as ``scipy.ndimage.convolve1d(x, weights, axis=1, mode="constant")``
    (summed in float64, returned in ``x``'s dtype) without importing SciPy on the query path."""
    m, t = len(weights), x.shape[1]
    padded = np.pad(x.astype(np.float64), ((0, 0), (m - 1, m - 1)))
    out = np.zeros(x.shape, np.float64)
    for j, weight in enumerate(np.asarray(weights, np.float64)):
        start = m // 2 - j + m - 1
        out += weight * padded[:, start : start + t]
    return out.astype(x.dtype)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` ``(n, d)`` scaled to unit L2 norm, float32; a row of norm below the dtype's
    smallest normal number becomes the uniform row ``d**-0.5``. Equals
    ``librosa.util.normalize(x, norm=2, axis=1, fill=True)`` (norms in float64), without importing
    librosa on the query path."""
    length = np.sqrt(np.sum(np.abs(x).astype(np.float64) ** 2, axis=1, keepdims=True))
    small = (length < np.finfo(x.dtype).tiny)[:, 0]
    out = np.empty(x.shape, np.float32)
    out[:] = x / np.where(small[:, None], 1.0, length)
    out[small] = x.shape[1] ** -0.5
    return out


def shingle_starts(n_frames: int, length: int, hop: int) -> np.ndarray:
    """First frame of every shingle of a sequence; one shingle (padded) if it is shorter."""
    return np.arange(0, max(n_frames - length, 0) + 1, hop)


def shingles(features: np.ndarray, length: int, hop: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``(T, 12)`` features into flattened, L2-normalised shingles.

    Returns ``(starts, vectors)``: ``vectors[i]`` covers frames ``starts[i] : starts[i] + length``
    (zero-padded past the end of a sequence shorter than ``length``).
    """
    features = np.asarray(features, dtype=np.float32)
    if len(features) < length:
        features = np.concatenate([features, np.zeros((length - len(features), 12), np.float32)])
    starts = shingle_starts(len(features), length, hop)
    windows = np.lib.stride_tricks.sliding_window_view(features, (length, 12))[:, 0]
    return starts, unit_rows(windows[starts].reshape(len(starts), 12 * length))
