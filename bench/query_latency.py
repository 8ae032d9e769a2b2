"""Query latency, throughput, size and quality by collection size (docs/scaling.md, "Search at scale").

    python bench/query_latency.py --source H.db H.csv --source B.db B.csv [--hours 100 1000]
                                  [--queries 20] [--factory STRING] [--nprobe 64] [--candidates N]
                                  [--neighbours K] [--distinct INDEX --distinct-hours 20]
                                  [--exhaustive-up-to 10] [--skip-sources]
                                  [--work-dir DIR] [--json-out OUT.json]

Each ``--source`` is an index with its ground truth (the hauptstimme and bach_violin benchmarks).
Rows: each source alone, then one collection per ``--hours`` made of all sources' stored features
repeated, copy ``k`` transposed by ``5·k`` semitones (chroma rotated; from the 12th copy on, pitch
classes shuffled instead, see :func:`pitch_mapping`) and, every other copy, stretched in time by 10 %
(musically other material: the queries' answers stay unique; a source's CENS rows, where it keeps
them, are copied alike), and with ``--distinct``
about ``--distinct-hours`` of music no theme comes from (``bench/build_corpus.py``). Every
collection is a new index in today's format (uint8 features) whose vectors are built exactly as
``index`` builds them (``auto`` factory, or ``--factory``). No audio is decoded.

Per row: shingles, factory, bytes per audio hour (SQLite + FAISS), ANN / re-rank / total latency
p50 and p95 over ``--queries`` themes per source, each a default query listing 10 matches with
their note times, after warming up as a running server is (reading the theme excluded, shown
apart), themes per second when answered 16 at a time (``query_many``), how often the right recording is among the
candidates the ANN stage passes to re-ranking, MRR of ANN and (up to
``--exhaustive-up-to`` hours) of exhaustive DTW on the same themes, and the peak resident memory of
a fresh ``cli.py query`` process answering all the row's themes at once (the process a user runs:
opening the index, the models, music21, the search).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
from report import record  # the script beside this one (bench/ is on sys.path when run as a script)

import db.vectors
from db.store import FILE_ROW, IndexStore
from db.vectors import auto_factory
from retrieval.evaluation import mean_reciprocal_rank, reciprocal_rank
from retrieval.ground_truth import read_ground_truth
from retrieval.query import QueryOptions, query, query_many
from retrieval.search import candidates_for, neighbours_for
from retrieval.theme import load_theme
from retrieval.variants import rendering_for


def stretched(features: np.ndarray, factor: float) -> np.ndarray:
    """``features (T, 12)`` played ``factor`` times slower (nearest frame)."""
    return features[np.minimum((np.arange(int(len(features) * factor)) / factor).astype(int), len(features) - 1)]


def pitch_mapping(k: int) -> np.ndarray:
    """Chroma bin order of copy ``k`` > 0: transposed by ``5·k`` semitones for the first 11 copies,
    then a seeded shuffle of the 12 pitch classes (transpositions repeat after 12: a copy transposed
    by 0 would be the original again, and the queries' answers would no longer be unique)."""
    if k < 12:
        return np.roll(np.arange(12), -(5 * k % 12))
    order = np.random.default_rng(k).permutation(12)
    return order if not np.array_equal(order, np.arange(12)) else np.roll(order, 1)


def build(sources: list[IndexStore], target: Path, copies: int, factory: str | None,
          distinct: IndexStore | None = None, distinct_copies: int = 0, shingle_length: int | None = None
          ) -> IndexStore:
    """A new index at ``target`` holding ``copies`` transformed copies of every source recording and
    ``distinct_copies`` of every recording of ``distinct`` (music no theme comes from: its copies
    are named apart, so they never count as a theme's recording); its shingles are ``shingle_length``
    frames long (default: the sources')."""
    settings = sources[0].settings
    store = IndexStore.create(target, replace(settings, shingle_length=shingle_length or settings.shingle_length))
    for k, source, tag in [(k, s, "c") for k in range(copies) for s in sources] + \
                          [(k, distinct, "d") for k in range(distinct_copies)]:
        for rec, features in source.iter_frames():
            harmony = source.cens(rec.id)  # CENS rows where the source keeps them: copied alike
            if k:
                features = features[:, pitch_mapping(k)]
                features = stretched(features, 1.1) if k % 2 else features
                if harmony is not None:
                    harmony = harmony[:, pitch_mapping(k)]
                    harmony = stretched(harmony, 1.1) if k % 2 else harmony
            path = rec.path if not k and tag == "c" else f"{Path(rec.path).parent}/{tag}{k}/{rec.name}_{tag}{k}.wav"
            duration = len(features) / store.settings.rate
            row = {**{c: getattr(rec, c) for c in FILE_ROW}, "path": path, "duration": duration,
                   "model_id": rec.model_id}
            store.put_indexed(row, features, harmony)
    if not store.coarsen() or factory:  # an index made coarse_at_scale turns coarse when large, as `index` makes it
        n_frames = store.db.execute("SELECT sum(n_frames) FROM recordings").fetchone()[0]
        store.rebuild_vectors(factory or auto_factory(n_frames // store.settings.shingle_hop, store.settings.dim))
    store.close()
    return IndexStore.open(target, readonly=True)


def plan_copies(sources: list[IndexStore], hours: float, distinct: IndexStore | None,
                distinct_hours: float) -> tuple[int, int]:
    """Copies of the sources and of ``distinct`` that make a collection of about ``hours``, about
    ``distinct_hours`` of it from ``distinct``."""
    base = sum(s.stats()["hours"] for s in sources)
    if distinct is None or distinct_hours <= 0:
        return max(1, round(hours / base)), 0
    n_distinct = max(1, round(distinct_hours / distinct.stats()["hours"]))
    rest = hours - n_distinct * distinct.stats()["hours"]
    return max(1, round(rest / base)), n_distinct


def sampled_themes(rows: list[dict], queries: int) -> list[dict]:
    """``queries`` rows of a ground truth, evenly spread over it (the same themes at every size)."""
    return rows[:: max(1, len(rows) // queries)][:queries]


def add_collection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a grown collection: its sources, size, distinct music, and where it is kept."""
    parser.add_argument("--source", nargs=2, action="append", required=True, metavar=("INDEX", "GROUND_TRUTH"))
    parser.add_argument("--queries", type=int, default=20, help="themes per source (evenly spread over its CSV)")
    parser.add_argument("--distinct", type=Path, default=None,
                        help="an index of music no theme comes from (bench/build_corpus.py), part of the collection")
    parser.add_argument("--distinct-hours", type=float, default=20.0, help="hours of the collection taken from it")
    parser.add_argument("--shingle-length", type=int, default=None,
                        help="frames per shingle of the collection's vectors (default: the sources')")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the built collection here and reuse it")
    parser.add_argument("--json-out", type=Path, default=None)


def grown_collection(args: argparse.Namespace) -> tuple[IndexStore, list[dict]]:
    """The collection of ``args.hours`` that :func:`add_collection_arguments` describes (built in
    ``--work-dir`` unless it is there) and the sampled themes of every source."""
    sources, rows = [], []
    for index, truth in args.source:
        sources.append(IndexStore.open(index, readonly=True))
        rows += sampled_themes(read_ground_truth(truth), args.queries)
    folder = args.work_dir or Path(tempfile.mkdtemp())
    distinct = IndexStore.open(args.distinct, readonly=True) if args.distinct else None
    length = f"_L{args.shingle_length}" if args.shingle_length else ""
    target = folder / f"collection_{args.hours:g}h{'_distinct' if distinct else ''}{length}.db"
    if not target.exists():
        copies, distinct_copies = plan_copies(sources, args.hours, distinct, args.distinct_hours)
        t0 = time.perf_counter()
        build(sources, target, copies, None, distinct, distinct_copies, args.shingle_length).close()
        print(f"built {target} in {time.perf_counter() - t0:.0f} s", flush=True)
    return IndexStore.open(target, readonly=True), rows


def measure(store: IndexStore, rows: list[dict], exhaustive: bool, options: QueryOptions) -> dict:
    """Latency of ``rows``' themes on ``store`` one at a time as ``options`` list them (a default
    query's 10), then throughput and quality answered 16 at a time with all ``options.candidates``
    listed (:func:`retrieval.query.query_many`'s answers equal one query's)."""
    for row in _warm_up(rows):  # compiled DTW, mapped pages, and the model a chordal theme needs
        query(store, row["query"], options)
    ann, rerank, total, parse = [], [], [], []
    for row in rows:
        result = query(store, row["query"], options)
        ann.append(result.timings.ann)
        rerank.append(result.timings.rerank)
        parse.append(result.timings.extra["parse"])
        total.append(result.timings.total - result.timings.extra["parse"])
    listed = replace(options, top=options.candidates)
    rankings = []
    t0 = time.perf_counter()
    for first in range(0, len(rows), 16):
        results = query_many(store, [r["query"] for r in rows[first : first + 16]], listed)
        rankings += [[Path(m.path).stem for m in result.matches] for result in results]
    batched = len(rows) / (time.perf_counter() - t0)
    relevant = [row["recording"] for row in rows]
    out = {
        "ann_ms": _stats(ann), "rerank_ms": _stats(rerank), "total_ms": _stats(total), "parse_ms": _stats(parse),
        "themes_per_s_batched": batched, "mrr_ann": mean_reciprocal_rank(rankings, relevant), "mrr_exhaustive": None,
        "candidate_recall": float(np.mean([rel in ranking for rel, ranking in zip(relevant, rankings, strict=True)])),
        "reciprocal_ranks": {row["query_id"]: reciprocal_rank(ranking, row["recording"])  # paired_difference.py
                             for row, ranking in zip(rows, rankings, strict=True)},
    }
    if exhaustive:
        slow = [[Path(m.path).stem for m in query(store, r["query"], listed, exhaustive=True).matches] for r in rows]
        out["mrr_exhaustive"] = mean_reciprocal_rank(slow, relevant)
    return out


def _warm_up(rows: list[dict]) -> list[dict]:
    """The first theme, and the first rendered through audio if any (its model stays loaded, as in
    a running server)."""
    chordal = next((r for r in rows if rendering_for(load_theme(r["query"])) == "synthesised"), None)
    return [rows[0]] + ([chordal] if chordal is not None and chordal is not rows[0] else [])


RSS_PROBE = (
    "import resource, runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "finally:\n    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)
"""Runs ``cli.py`` with its arguments and prints the process's peak resident set (KiB) last on stderr."""


def query_rss(index: Path, themes: list[str]) -> int:
    """Peak resident bytes of ``cli.py query --db index THEME…`` in a fresh process."""
    cli = Path(__file__).resolve().parent.parent / "cli.py"
    done = subprocess.run([sys.executable, "-c", RSS_PROBE, str(cli), "query", "--db", str(index), *themes, "--json"],
                          capture_output=True, text=True, check=True)
    return int(done.stderr.split()[-1]) * 1024


def _stats(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "mean": statistics.mean(ms)}


def row_for(path: Path, rows: list[dict], exhaustive_up_to: float, options: QueryOptions) -> dict:
    """One table row for the index at ``path``."""
    store = IndexStore.open(path, readonly=True)
    try:
        stats = store.stats()
        options = replace(options, candidates=options.candidates or candidates_for(stats["shingles"]))
        out = {"audio_hours": stats["hours"], "recordings": stats["recordings"], "shingles": stats["shingles"],
               "factory": stats["index_factory"], "bytes_per_audio_hour": stats["bytes_per_audio_hour"],
               "queries": len(rows), "candidates": options.candidates,
               "neighbours": options.neighbours or neighbours_for(stats["shingles"]), "nprobe": _nprobe(store),
               **measure(store, rows, stats["hours"] <= exhaustive_up_to, options)}
    finally:
        store.close()
    return {**out, "query_rss_bytes": query_rss(path, [r["query"] for r in rows])}


def _nprobe(store: IndexStore) -> int | None:
    """Inverted lists a search of ``store`` visits per shingle (``None``: not an inverted file)."""
    ivf = faiss.try_extract_index_ivf(store.vectors().index)
    return None if ivf is None else db.vectors.nprobe_for(ivf.nlist)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_collection_arguments(parser)
    parser.add_argument("--hours", type=float, nargs="*", default=[100.0, 1000.0])
    parser.add_argument("--factory", default=None,
                        help="FAISS factory for every collection (default: auto; the collections are then not kept)")
    parser.add_argument("--nprobe", type=int, default=None,
                        help="inverted lists visited per shingle (default: db.vectors.nprobe_for the lists)")
    parser.add_argument("--candidates", type=int, default=None,
                        help="recordings re-ranked per theme (default: by collection size)")
    parser.add_argument("--neighbours", type=int, default=None,
                        help="FAISS neighbours per query shingle (default: by collection size)")
    parser.add_argument("--exhaustive-up-to", type=float, default=10.0, help="audio hours (exhaustive DTW is slow)")
    parser.add_argument("--skip-sources", action="store_true", help="only the --hours collections")
    args = parser.parse_args(argv)
    if args.nprobe is not None:
        db.vectors.nprobe_for = lambda n_lists: args.nprobe
    print("| audio h | shingles | factory | bytes/h | ANN p50/p95 ms | re-rank p50/p95 | total p50/p95 | "
          "themes/s (16) | in candidates | MRR ANN | MRR exhaustive | query RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    table: list[dict] = []
    options = QueryOptions(candidates=args.candidates, neighbours=args.neighbours)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        for path, rows, built in _collections(args, Path(tmp)):
            r = {**row_for(path, rows, args.exhaustive_up_to, options), "build_s": built}
            exh = f"{r['mrr_exhaustive']:.3f}" if r["mrr_exhaustive"] is not None else "—"
            line = (f"| {r['audio_hours']:.1f} | {r['shingles']:,} | {r['factory']} | "
                    f"{r['bytes_per_audio_hour'] / 1e6:.2f} MB | {r['ann_ms']['p50']:.0f} / {r['ann_ms']['p95']:.0f} | "
                    f"{r['rerank_ms']['p50']:.0f} / {r['rerank_ms']['p95']:.0f} | "
                    f"{r['total_ms']['p50']:.0f} / {r['total_ms']['p95']:.0f} | {r['themes_per_s_batched']:.1f} | "
                    f"{r['candidate_recall']:.2f} | {r['mrr_ann']:.3f} | {exh} | "
                    f"{r['query_rss_bytes'] / 2**30:.2f} GiB |")
            record(table, r, line, args.json_out)
    return 0


def _collections(args: argparse.Namespace, tmp: Path):
    """Per row, ``(index path, themes, seconds to build it)``: each source alone (unless
    ``--skip-sources``), then the grown collection of each ``--hours`` — kept in and reused from
    ``--work-dir`` with the auto factory (:func:`grown_collection`), else built in ``tmp`` and
    removed after its row."""
    sources = [IndexStore.open(index, readonly=True) for index, _ in args.source]
    sampled = [sampled_themes(read_ground_truth(truth), args.queries) for _, truth in args.source]
    if not args.skip_sources:
        for i, (source, rows) in enumerate(zip(sources, sampled, strict=True)):
            yield from _built_once(tmp / f"source{i}.db", [source], rows, 1, args.factory)
    for hours in args.hours:
        if args.factory is None:
            t0 = time.perf_counter()
            store, rows = grown_collection(argparse.Namespace(**{**vars(args), "hours": hours,
                                                                 "work_dir": args.work_dir or tmp}))
            store.close()
            yield store.path, rows, time.perf_counter() - t0
        else:
            distinct = IndexStore.open(args.distinct, readonly=True) if args.distinct else None
            copies, distinct_copies = plan_copies(sources, hours, distinct, args.distinct_hours)
            yield from _built_once(tmp / f"c{hours:g}.db", sources, [r for rows in sampled for r in rows], copies,
                                   args.factory, distinct, distinct_copies, args.shingle_length)


def _built_once(target: Path, sources: list[IndexStore], rows: list[dict], copies: int, factory: str | None,
                distinct: IndexStore | None = None, distinct_copies: int = 0, shingle_length: int | None = None):
    """``(target, rows, build seconds)`` of a collection built for one row (with ``distinct_copies`` of
    ``distinct``, as :func:`grown_collection`), removed after it."""
    t0 = time.perf_counter()
    build(sources, target, copies, factory, distinct, distinct_copies, shingle_length).close()
    yield target, rows, time.perf_counter() - t0
    for suffix in ("", ".faiss", "-wal", "-shm", ".lock"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    for frames in target.parent.glob(f"{target.name}.frames-*"):
        frames.unlink()


if __name__ == "__main__":
    sys.exit(main())
