"""Would a learned shingle embedding propose the right recording in a large collection?

    python experiments/learned_shingles.py --source HAUPT.db HAUPT.csv --source BACH.db BACH.csv \
        --hours 100 --work-dir /tmp/bench [--dims 192 64] [--steps 600] [--neighbours 256]

The candidate stage fails at scale on *locally generic* themes: a 1.28 s shingle of the theme has
many closer look-alikes than its own recording's (docs/scaling.md). Unsupervised changes of the
metric (whitening) moved nothing; this measures the supervised one. Two linear maps, ``A`` for
theme shingles and ``B`` for audio shingles ``(12·L,) → (D,)``, are trained with InfoNCE on pairs
(a theme's query shingle, the audio shingle its notes are aligned with) against random shingles of
the collection. The pairs come only from themes of recordings that no evaluated theme comes from
(the themes of ``bench/query_latency.py``), in all 12 transpositions, with ``--hard`` each pair's
nearest look-alikes in the collection's own index as further negatives, aligned by DTW within their
annotated place (bach_violin: ``start_s``/``end_s``; hauptstimme: ``score_qstamp`` through the
rendering's timing file). The collection's FAISS index is then built anew over ``B`` · its
shingles (the factory ``auto`` chooses for that size) and each evaluated theme searched with
``A`` · its shingles; FAISS's hits are re-scored by exact cosine from the stored frames and voted
on as by default, so only *which* shingles are proposed changes (``--votes learned``: the
hits re-scored by the learned similarity instead, and voted on). Controls: ``A = B = I`` in a
rebuilt index (``--control``: the spread of one index build), and for each width ``D`` below the
shingles' the principal directions of the collection's shingles without learning (alone with
``--steps 0``); ``--factory`` adds plain shingles in indexes of other FAISS factory strings. Prints, per map: the
right recording among the candidates, MRR, and each theme's reciprocal rank (for paired differences).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from query_latency import add_collection_arguments, grown_collection  # noqa: E402

from db.store import IndexStore  # noqa: E402
from db.vectors import VectorIndex, auto_factory  # noqa: E402
from models.retrieval_features import coarsened, shingles, unit_rows  # noqa: E402
from retrieval.dtw import subsequence_path  # noqa: E402
from retrieval.evaluation import reciprocal_rank  # noqa: E402
from retrieval.ground_truth import read_ground_truth  # noqa: E402
from retrieval.query import QueryOptions, query  # noqa: E402
from retrieval.search import candidates_for, query_hop  # noqa: E402
from retrieval.theme import load_theme  # noqa: E402
from retrieval.variants import query_variants  # noqa: E402
from training.pairs import rendering_clock  # noqa: E402


def training_pairs(sources: list[tuple[IndexStore, list[dict]]], settings, excluded: set[str]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(theme shingles (P, 12·L), audio shingles (P, 12·L), recording index (P,), recording names)``
    of every theme
    whose recording is not in ``excluded``, aligned within its annotated place at the collection's
    rates (``settings``, the sources' frames made coarse as the collection's)."""
    length, hop = settings.shingle_length, query_hop(settings)
    theme_side, audio_side, owner = [], [], []
    names: dict[str, int] = {}
    for source, rows in sources:
        recordings = {r.name: r for r in source.recordings("indexed")}
        frames_of: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for row in rows:
            name = row["recording"]
            if name in excluded or name not in recordings:
                continue
            rec = recordings[name]
            if name not in frames_of:
                frames = coarsened(source.frames(rec.id))
                frames_of[name] = frames, shingles(frames, length, 1)[1]
            frames, audio_vecs = frames_of[name]
            start = _start(row, rec.path)
            if start is None:
                continue
            theme = load_theme(row["query"])
            duration = max(n.onset + n.duration for n in theme.notes)
            lo = max(0, int((start - 3.0) * settings.rate))
            hi = min(len(frames), int((start + 2.5 * duration + 5.0) * settings.rate))
            if hi - lo < 2 * length:
                continue
            best = None
            for variant in query_variants(theme, settings, rendering="symbolic"):
                if len(variant.features) >= hi - lo:
                    continue
                alignment, path = subsequence_path(variant.features, frames[lo:hi])
                if best is None or alignment.similarity > best[0]:
                    best = (alignment.similarity, variant.features, path)
            if best is None:
                continue
            _, features, path = best
            at = np.full(len(features), -1)
            at[path[::-1, 0]] = path[::-1, 1]  # the first target frame of each theme frame
            starts, vecs = shingles(features, length, hop)
            for start, vec in zip(starts, vecs, strict=True):
                target = lo + at[start]
                if at[start] < 0 or target >= len(audio_vecs):
                    continue
                theme_side.append(vec)
                audio_side.append(audio_vecs[target])
                owner.append(names.setdefault(name, len(names)))
    theme_side, audio_side = np.asarray(theme_side, np.float32), np.asarray(audio_side, np.float32)
    return (_transposed(theme_side, length), _transposed(audio_side, length), np.tile(np.asarray(owner), 12),
            list(names))


def hard_negatives(store: IndexStore, theme: np.ndarray, owner: np.ndarray, names: list[str], per_pair: int
                   ) -> np.ndarray:
    """Per theme shingle ``(P, 12·L)`` (in :func:`_transposed` order), its ``per_pair`` nearest stored
    shingles in the collection's own index that are not from its recording (its untransformed copy)
    ``(P, per_pair, 12·L)``: the look-alikes the vote must rank below the right passage."""
    s = store.settings
    length, width = s.shingle_length, 12 * s.shingle_length
    own = {Path(r.path).stem: r.id for r in store.recordings("indexed")}
    base = len(theme) // 12  # the untransposed pairs; the others are their transpositions
    _, rids, starts = store.vectors().search(theme[:base], 4 * per_pair)
    stored = store.stored_frames()
    found = np.zeros((base, per_pair, width), np.float32)
    for i in range(base):
        keep = [j for j in range(rids.shape[1]) if rids[i, j] >= 0 and rids[i, j] != own.get(names[owner[i]])]
        for slot, j in enumerate(keep[:per_pair]):
            r, start = rids[i, j], starts[i, j]
            n = min(length, stored.lengths[r] - start)
            window = np.zeros((length, 12), np.float32)
            window[:n] = stored.frames[stored.offsets[r] + start : stored.offsets[r] + start + n] / 255.0
            found[i, slot] = unit_rows(window.reshape(1, width))[0]
    rolled = _transposed(found.reshape(base * per_pair, width), length)
    return rolled.reshape(12, base, per_pair, width).reshape(12 * base, per_pair, width)


def _transposed(vecs: np.ndarray, length: int) -> np.ndarray:
    """``vecs (P, 12·length)`` in all 12 transpositions ``(12·P, 12·length)``: a pair stays a pair
    when both of its shingles are transposed alike."""
    frames = vecs.reshape(len(vecs), length, 12)
    return np.concatenate([np.roll(frames, shift, axis=2).reshape(len(vecs), -1) for shift in range(12)])


def _start(row: dict, recording_path: str) -> float | None:
    """Second where a ground-truth row's theme starts, as annotated (``None``: not known)."""
    if row.get("start_s"):
        return float(row["start_s"])
    if row.get("score_qstamp") not in (None, ""):
        timing = Path(recording_path).with_suffix(".timing.json")
        return rendering_clock(timing)(float(row["score_qstamp"])) if timing.is_file() else None
    return None


def sampled_shingles(store: IndexStore, every: int) -> np.ndarray:
    """Every ``every``-th shingle of the collection as it indexes them ``(≈ N / every, 12·L)``."""
    s, rng, found = store.settings, np.random.default_rng(1), []
    for _, frames in store.iter_frames():
        _, vecs = shingles(frames, s.shingle_length, s.shingle_hop)
        found.append(vecs[rng.random(len(vecs)) < 1 / every].astype(np.float32))
    return np.concatenate(found)


def train_maps(theme: np.ndarray, audio: np.ndarray, owner: np.ndarray, negatives: np.ndarray, dim: int,
               steps: int, hard: np.ndarray | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """``A``, ``B`` ``(12·L, dim)`` by InfoNCE (temperature 0.05): each theme shingle against its audio
    shingle, the batch's other ones, 4,096 random collection shingles and, given ``hard``
    ``(P, H, 12·L)``, its own hard negatives; a fifth of the recordings held out to report the
    positive's rank among 20,000 random shingles and the share of its hard negatives above it,
    before and after."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    held = set(rng.choice(owner.max() + 1, max(1, (owner.max() + 1) // 5), replace=False).tolist())
    test = np.isin(owner, list(held))
    d_in = theme.shape[1]
    init = np.eye(d_in, dim, dtype=np.float32) if dim == d_in else principal_directions(negatives, dim)
    a = torch.nn.Parameter(torch.from_numpy(init.copy()))
    b = torch.nn.Parameter(torch.from_numpy(init.copy()))
    optimiser = torch.optim.Adam([a, b], lr=1e-3)
    q_train, p_train = torch.from_numpy(theme[~test]), torch.from_numpy(audio[~test])
    neg = torch.from_numpy(negatives)

    def embed(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x @ m, dim=1)

    def held_rank() -> float:
        with torch.no_grad():
            q = embed(torch.from_numpy(theme[test]), a)
            p = embed(torch.from_numpy(audio[test]), b)
            pool = embed(neg[torch.from_numpy(rng.choice(len(neg), 20_000, replace=False))], b)
            pos = (q * p).sum(1, keepdim=True)
            above = float("nan")
            if hard is not None:
                h = torch.from_numpy(hard[test])
                hn = embed(h.reshape(-1, h.shape[-1]), b).reshape(len(q), h.shape[1], -1)
                above = float(((q[:, None, :] * hn).sum(-1) > pos).float().mean())
            return float(((q @ pool.T) > pos).float().sum(1).median()), above

    report = {"held_out_pairs": int(test.sum()), "train_pairs": int((~test).sum()),
              "median_rank_and_hard_above_before": held_rank()}
    hard_train = None if hard is None else torch.from_numpy(hard[~test])
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(q_train), 256, replace=False))
        q, p = embed(q_train[idx], a), embed(p_train[idx], b)
        n = embed(neg[torch.from_numpy(rng.choice(len(neg), 4096, replace=False))], b)
        parts = [q @ p.T, q @ n.T]
        if hard_train is not None:
            h = hard_train[idx]
            hn = embed(h.reshape(-1, h.shape[-1]), b).reshape(len(idx), h.shape[1], -1)
            parts.append((q[:, None, :] * hn).sum(-1))
        logits = torch.cat(parts, 1) / 0.05
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(q)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    report["median_rank_and_hard_above_after"] = held_rank()
    report["final_loss"] = float(loss.detach()) if steps else None
    return a.detach().numpy(), b.detach().numpy(), report


def principal_directions(vectors: np.ndarray, dim: int) -> np.ndarray:
    """The ``dim`` principal directions ``(12·L, dim)`` of ``vectors`` ``(N, 12·L)`` (centred)."""
    sample = vectors[:: max(1, len(vectors) // 100_000)]
    return np.linalg.svd(sample - sample.mean(0), full_matrices=False)[2][:dim].T.astype(np.float32)


class _Projected:
    """FAISS over ``B`` · the collection's shingles, searched with ``A`` · the theme's; hits as
    :meth:`db.vectors.VectorIndex.search` gives them. ``vote="plain"``: marked lossy, so that search
    re-scores them by plain cosine from the stored frames; ``"learned"``: re-scored here by the
    learned similarity from the stored frames, and voted on as they are."""

    def __init__(self, index: VectorIndex, theme_map: np.ndarray, audio_map: np.ndarray, store: IndexStore,
                 vote: str) -> None:
        self.index, self.theme_map, self.audio_map, self.store, self.vote = index, theme_map, audio_map, store, vote
        self.lossy = vote == "plain"

    def __len__(self) -> int:
        return len(self.index)

    def search(self, queries: np.ndarray, k: int):
        projected = unit_rows(queries @ self.theme_map)
        sims, rids, starts = self.index.search(projected, k)
        if self.vote == "plain":
            return sims, rids, starts
        stored, length = self.store.stored_frames(), self.store.settings.shingle_length
        valid = rids >= 0
        r, st = np.where(valid, rids, 0), np.where(valid, starts, 0)
        rows = (stored.offsets[r] + st)[..., None] + np.arange(length)  # (n, k, L)
        inside = np.arange(length) < (stored.lengths[r] - st)[..., None]
        windows = stored.frames[np.minimum(rows, len(stored.frames) - 1)].astype(np.float32) * inside[..., None]
        audio = unit_rows(windows.reshape(-1, 12 * length) @ self.audio_map).reshape(*rids.shape, -1)
        exact = np.where(valid, np.einsum("nkd,nd->nk", audio, projected), -np.inf)
        order = np.argsort(-exact, axis=1, kind="stable")
        return (np.take_along_axis(exact, order, 1), np.take_along_axis(rids, order, 1),
                np.take_along_axis(starts, order, 1))


class _WithVectors:
    """The collection with another vector index (everything else as stored)."""

    def __init__(self, store: IndexStore, vectors: _Projected) -> None:
        self._store, self._vectors = store, vectors

    def __getattr__(self, name):
        return getattr(self._store, name)

    def vectors(self):
        return self._vectors


def projected_index(store: IndexStore, audio_map: np.ndarray, sample: np.ndarray, factory: str | None = None
                    ) -> VectorIndex:
    """The collection's shingles as ``audio_map`` · shingle in an index of ``factory`` (default:
    what ``auto`` gives for their number), trained on ``sample``; streamed recording by recording."""
    s, dim = store.settings, audio_map.shape[1]
    factory = factory or auto_factory(len(store.vectors()), dim)
    rng = np.random.default_rng(0)
    training = sample[rng.choice(len(sample), min(len(sample), VectorIndex.training_size(factory, dim)), replace=False)]
    index = VectorIndex.create(factory, dim, unit_rows(training @ audio_map))
    for rec, frames in store.iter_frames():
        starts, vecs = shingles(frames, s.shingle_length, s.shingle_hop)
        index.add(rec.id, starts, unit_rows(vecs @ audio_map))
    return index


def evaluate(collection, rows: list[dict], neighbours: int | None) -> dict:
    n = len(collection.vectors())
    options = QueryOptions(neighbours=neighbours, top=candidates_for(n))
    ranks = []
    for row in rows:
        found = [Path(m.path).stem for m in query(collection, row["query"], options).matches]
        ranks.append(reciprocal_rank(found, row["recording"]))
    return {"candidate_recall": float(np.mean([r > 0 for r in ranks])), "mrr": float(np.mean(ranks)),
            "reciprocal_ranks": ranks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=100.0)
    parser.add_argument("--dims", type=int, nargs="+", default=[192])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--neighbours", type=int, default=None)
    parser.add_argument("--hard", type=int, default=0,
                        help="hard negatives per pair: its nearest stored shingles from other recordings")
    parser.add_argument("--votes", nargs="+", choices=("plain", "learned"), default=["plain"],
                        help="which similarity the vote counts: plain cosine (as search does) or the learned one")
    parser.add_argument("--factory", nargs="+", default=[],
                        help="also the plain shingles in an index of each of these FAISS factory strings")
    parser.add_argument("--control", action="store_true", help="also the plain shingles in a rebuilt index")
    add_collection_arguments(parser)
    args = parser.parse_args(argv)
    store, rows = grown_collection(args)
    settings = store.settings
    sources = [(IndexStore.open(index, readonly=True), read_ground_truth(truth)) for index, truth in args.source]
    excluded = {row["recording"] for row in rows}
    t0 = time.perf_counter()
    theme, audio, owner, names = training_pairs(sources, settings, excluded)
    print(f"{len(theme)} training pairs from {owner.max() + 1} recordings in {time.perf_counter() - t0:.0f} s",
          flush=True)
    negatives = sampled_shingles(store, max(1, len(store.vectors()) // 400_000))
    hard = hard_negatives(store, theme, owner, names, args.hard) if args.hard else None
    results = {"default index": evaluate(store, rows, args.neighbours)}
    print("default index", {k: v for k, v in results["default index"].items() if k != "reciprocal_ranks"}, flush=True)
    identity = np.eye(negatives.shape[1], dtype=np.float32)
    plans = [("identity (rebuilt)", identity, identity, {})] if args.control else []
    plans += [(f"factory {f}", identity, identity, {"factory": f}) for f in args.factory]
    for dim in args.dims:
        if dim != negatives.shape[1]:  # the same width without learning: the principal directions of the audio
            a, b, report = train_maps(theme, audio, owner, negatives, dim, 0, hard)
            plans.append((f"principal directions D={dim}", a, b, report))
        if not args.steps:
            continue
        t0 = time.perf_counter()
        a, b, report = train_maps(theme, audio, owner, negatives, dim, args.steps, hard)
        report["train_s"] = round(time.perf_counter() - t0, 1)
        print(f"D={dim}", report, flush=True)
        plans.append((f"learned D={dim}", a, b, report))
    for name, a, b, report in plans:
        t0 = time.perf_counter()
        index = projected_index(store, b, negatives, report.get("factory"))
        built = time.perf_counter() - t0
        for vote in args.votes:
            key = f"{name}, vote on {vote} similarities"
            results[key] = {**evaluate(_WithVectors(store, _Projected(index, a, b, store, vote)), rows,
                                       args.neighbours), "training": report, "build_s": round(built, 1)}
            print(key, {k: v for k, v in results[key].items() if k not in ("reciprocal_ranks", "training")},
                  flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
