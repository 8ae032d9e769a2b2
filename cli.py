"""Command line of the cross-modal music retrieval engine (thin: parsing and printing only)."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import traceback
from pathlib import Path

from models.errors import ParameterError, RetrievalError, printable

# Each command imports what it uses inside its own function: `--help` and every command load only
# their own libraries (PyTorch, music21, FAISS, uvicorn …), which is most of a command's start-up
# (bench/startup.py measures it).

__all__ = ["main"]

DEFAULT_DB = "music_index.db"
"""Index used without ``--db``: ``$SCORE_RETRIEVAL_DB`` if set, else this file in the working folder."""


def _default_db() -> Path:
    import os

    return Path(os.environ.get("SCORE_RETRIEVAL_DB", DEFAULT_DB))


def _add_output_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--json`` (``what`` as JSON) and ``-q`` (no progress bar) of a long-running command."""
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", type=Path, default=None,
        help=f"index database (default: $SCORE_RETRIEVAL_DB or ./{DEFAULT_DB}; the FAISS file lies beside it)",
    )


def _add_device_option(parser: argparse.ArgumentParser, what: str = "the model") -> None:
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help=f"where {what} runs (default cpu)")


def _add_extractor_options(parser: argparse.ArgumentParser) -> None:
    from models.registry import DEFAULT_MODEL

    parser.add_argument(
        "--model", dest="model_id", default=DEFAULT_MODEL,
        help=f"deep chroma model: id (default {DEFAULT_MODEL}; `python cli.py models` lists all) "
        "or a trained model's folder",
    )
    _add_device_option(parser)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all cores)")


def _extractor(args: argparse.Namespace):
    import torch

    from models.extractor import ChromaExtractor

    if args.threads is not None:
        if args.threads < 1:
            raise ParameterError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("--device cuda: no CUDA device is available")
    return ChromaExtractor(args.model_id, device=args.device)


def cmd_chroma(args: argparse.Namespace) -> int:
    from indexer.chroma_export import extract_to_folder

    report = extract_to_folder(args.inputs, args.output, _extractor(args), progress=not args.quiet)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"wrote {len(report.written)} chroma file(s) to {args.output}, {len(report.failed)} failed")
    return 1 if report.failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    from models.extractor_factory import BASELINE_IDS
    from models.registry import DEFAULT_MODEL, MODEL_IDS, SHIPPED_IDS
    from models.retrieval_features import DEFAULT_INDEX_MODEL

    if args.json:
        print(json.dumps({"default": DEFAULT_MODEL, "index_default": DEFAULT_INDEX_MODEL, "models": list(MODEL_IDS),
                          "trained": list(SHIPPED_IDS), "baselines": list(BASELINE_IDS)}))
    else:
        for model_id in MODEL_IDS:
            print(model_id + ("  (default of chroma and train)" if model_id == DEFAULT_MODEL else ""))
        for model_id in SHIPPED_IDS:
            print(f"{model_id}  (trained by this project: models/weights/trained/{model_id}/model.json)")
        for baseline in BASELINE_IDS:
            kind = ("classical CENS chroma" if baseline == "cens" else "deep chroma and CENS of one front end, averaged"
                    if baseline.endswith("+cens") else "mean of the family's five folds")
            print(f"{baseline}  (baseline: {kind})")
        print("a trained model's folder (cli.py train --out DIR) is accepted wherever an id is;")
        print(f"pretrained ids joined by '+' average their networks; an index's default: {DEFAULT_INDEX_MODEL}")
    return 0


def _settings_from_args(args: argparse.Namespace):
    """Index settings named on the command line, or ``None`` to keep an index's own."""
    from dataclasses import replace

    from models.retrieval_features import PRESETS, IndexSettings

    preset = getattr(args, "preset", None)
    given = dict(PRESETS[preset].settings) if preset else {}
    given.update({
        k: getattr(args, k)
        for k in ("model_id", "downsample", "smoothing", "shingle_length", "shingle_hop", "index_factory")
        if getattr(args, k, None) is not None
    })
    if "model_id" in given:
        given.update(_model_settings(given["model_id"]))
    return replace(IndexSettings(), **given) if given or preset else None


def _model_settings(model: str) -> dict[str, str]:
    """``model_id`` and ``model_digest`` of a model id, baseline or trained model (checked before any write)."""
    from models.extractor_factory import is_computed
    from models.registry import model_digest, resolve_model

    if is_computed(model):
        return {"model_id": model, "model_digest": ""}
    return {"model_id": resolve_model(model), "model_digest": model_digest(model)}


def _add_model_check(parser: argparse.ArgumentParser) -> None:
    """``--model`` where an index is only read: a check that it was built with that model."""
    parser.add_argument("--model", dest="model_id", default=None,
                        help="refuse an index built with another model (the index's own model is always used)")


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    from models.retrieval_features import DEFAULT_INDEX_MODEL, PRESETS

    g = parser.add_argument_group("index settings (fixed when an index is created; later runs must match)")
    g.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="named settings (the flags below override them): "
                        + "; ".join(f"{name}: {p.use}" for name, p in PRESETS.items()))
    g.add_argument("--model", dest="model_id", default=None,
                   help=f"deep chroma model: id (default {DEFAULT_INDEX_MODEL}: pretrained ids joined by '+' are "
                        "averaged) or a trained model's folder")
    g.add_argument("--downsample", type=int, default=None,
                   help="25 Hz chroma frames per retrieval frame (1; the default turns to 2 in large collections)")
    g.add_argument("--smoothing", type=int, default=None, help="Hann window in 25 Hz frames (1; 5 at 12.5 Hz)")
    g.add_argument("--shingle-length", type=int, default=None, help="retrieval frames per shingle (32; 16 at 12.5 Hz)")
    g.add_argument("--shingle-hop", type=int, default=None, help="frames between stored shingles (4; 2 at 12.5 Hz)")
    g.add_argument("--index-factory", default=None, help="FAISS index_factory string, or auto (default)")


def _index_options(args: argparse.Namespace):
    """The :class:`indexer.build.IndexOptions` of ``index``'s flags (built once, as audfprint's ``setup_*``)."""
    from indexer.build import IndexOptions, default_workers

    return IndexOptions(
        workers=args.workers if args.workers is not None else default_workers(), device=args.device,
        rebuild=args.rebuild, keep_missing=args.keep_missing, follow_symlinks=not args.no_follow_symlinks,
        progress=not args.quiet, ray=args.ray,
    )


def cmd_index(args: argparse.Namespace) -> int:
    from indexer.build import index_collection

    db = args.db or _default_db()
    report = index_collection(args.audio_dir, db, _settings_from_args(args), _index_options(args))
    if args.json:
        print(json.dumps({"db": str(db), **report.as_dict()}, indent=2))
    else:
        s = report.summary()
        print(
            f"{db}: {s['added']} added, {s['updated']} updated, {s['unchanged']} unchanged, "
            f"{s['removed']} removed, {s['failed']} failed; {s['audio_hours']:.2f} h of audio in {s['seconds']:.0f} s"
            + (" (interrupted: run again to resume)" if report.interrupted else "")
        )
    if report.interrupted:
        return 130
    return 1 if report.failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from db.store import IndexStore

    store = IndexStore.open(args.db or _default_db(), readonly=True)
    stats = store.stats()
    store.close()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    settings = stats["settings"]
    rate = 25 / settings["downsample"]
    print(f"index       {stats['db']}")
    print(f"recordings  {stats['recordings']} ({stats['hours']:.2f} h of audio)")
    print(f"model       {settings['model_id']} (features at {rate:g} Hz, passages of "
          f"{settings['shingle_length'] / rate:g} s every {settings['shingle_hop'] / rate:g} s)")
    lossy = any(code in stats["index_factory"] for code in ("PQ", "SQ", "LSH"))
    size = stats["faiss_bytes"] + stats["frames_bytes"] + stats["db_bytes"]
    per_hour = stats["bytes_per_audio_hour"]
    print(f"size        {size / 2**20:.1f} MiB" + (f" ({per_hour / 2**20:.2f} MiB per audio hour)" if per_hour else "")
          + f"; {'compressed search codes, hits re-scored exactly' if lossy else 'exact search'}")
    if stats["not_yet_searchable"]:
        print(f"pending     {stats['not_yet_searchable']} recording(s) not yet searchable: run index again")
    print(f"failed      {len(stats['failed'])}")
    for f in stats["failed"]:
        print(f"  {printable(f['error'])}")
    if stats["warnings"]:
        print(f"warnings    {len(stats['warnings'])}")
        for w in stats["warnings"]:
            print(f"  {printable(w['warning'])}")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from db.store import IndexStore

    db = args.db or _default_db()
    with IndexStore.writing(db):
        store = IndexStore.open(db)
        before = store.stats()["bytes_per_audio_hour"]
        converted = store.compact()
        reorganised = store.reorganise()
        after = store.stats()
        store.close()
    per_hour = after["bytes_per_audio_hour"]
    if args.json:
        print(json.dumps({"db": str(db), "converted": converted, "reorganised": reorganised,
                          "bytes_per_audio_hour_before": before, "bytes_per_audio_hour": per_hour,
                          "index_factory": after["index_factory"]}, indent=2))
    elif not (converted or reorganised):
        print(f"{db}: already compact ({after['index_factory']}, uint8 frames)")
    else:
        print(f"{db}: {after['index_factory']}, uint8 frames; "
              + (f"{before / 2**20:.2f} → {per_hour / 2**20:.2f} MiB per audio hour" if per_hour else "empty"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from db.store import IndexStore

    store = IndexStore.open(args.db or _default_db(), readonly=True)
    recordings = store.recordings()
    store.close()
    if args.json:
        print(json.dumps([asdict(r) for r in recordings], indent=2))
        return 0
    for r in recordings:
        length = f"{r.duration / 60:6.1f} min" if r.duration else "       ?"
        print(f"{r.id:5d}  {r.status:7s}  {length}  {printable(r.path)}")
    return 0


def _measures(text: str | None) -> tuple[int, int] | None:
    from retrieval.theme import parse_measures

    return None if text is None else parse_measures(text)


def _query_options(args: argparse.Namespace):
    """The :class:`retrieval.query.QueryOptions` of ``query``'s flags (built once)."""
    from retrieval.query import QueryOptions

    return QueryOptions(
        top=args.top, part=args.part, measures=_measures(args.measures), expand_repeats=args.expand_repeats,
        transpose=args.transpose, rendering=args.rendering, program=args.program, exhaustive=args.exhaustive,
        candidates=args.candidates, device=args.device, occurrences=getattr(args, "occurrences", False),
        min_score=getattr(args, "min_score", None), exclude_self=getattr(args, "exclude_self", False),
    )


def _open_for_query(args: argparse.Namespace):
    from db.store import IndexStore

    store = IndexStore.open(args.db or _default_db(), readonly=True)
    asked = _settings_from_args(args)
    if asked is not None:
        asked.check_matches(store.declared)
    return store


PLOT_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
"""The image formats ``--plot`` writes (by the file's extension)."""


def _plot_path(plot: Path, themes: list[Path]) -> Path:
    """Where ``--plot`` writes, checked before searching: the file given, or in a folder given
    ``THEME_match.png``; a one-line :class:`ParameterError` for another format or an unwritable folder."""
    if len(themes) > 1:
        raise ParameterError("--plot draws one theme's match: give one theme with it")
    if plot.is_dir():
        plot = plot / f"{themes[0].stem}_match.png"
    elif plot.suffix.lower() not in PLOT_FORMATS:
        raise ParameterError(f"--plot {plot}: give a file ending in {', '.join(PLOT_FORMATS)} (or a folder)")
    folder = plot.resolve().parent
    if not folder.is_dir():
        raise ParameterError(f"--plot {plot}: no such folder {folder}")
    if not os.access(folder, os.W_OK):
        raise ParameterError(f"--plot {plot}: cannot write into {folder}")
    return plot


def cmd_query(args: argparse.Namespace) -> int:
    from retrieval.query import query_many

    plot = _plot_path(args.plot, args.themes) if args.plot is not None else None
    store = _open_for_query(args)
    options = _query_options(args)
    try:
        results = query_many(store, args.themes, options)
        if plot is not None and results[0].matches:
            from retrieval.plot import plot_match

            plot_match(results[0], store, plot)
    finally:
        store.close()
    if plot is not None:
        print(f"plot: {printable(str(plot))}" if results[0].matches else "plot: none drawn (no match)", file=sys.stderr)
    if args.json and len(results) > 1:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return 0
    for theme, result in zip(args.themes, results, strict=True):
        _print_result(result, theme, args.json)
    return 0


def _print_result(result, theme: Path, as_json: bool) -> None:
    """``query``'s output: JSON, or the ranked table with the timing line."""
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
        return
    if result.theme.notes:
        print(f"theme {printable(str(theme))}: {len(result.theme.notes)} notes, "
              f"{result.theme.duration:.1f} s at nominal tempo")
    else:
        print(f"audio excerpt {printable(str(theme))}: {result.theme.duration:.1f} s")
    if not result.confident:
        print("no confident match (the best recording does not stand out from the others); best candidates:")
    print(f"{'rank':>4}  {'score':>6}  {'lead':>6}  {'start':>8}  {'end':>8}  recording")
    for m in result.matches:
        moved = (m.transposition + 5) % 12 - 5  # the nearer way: +9 semitones up is 3 down
        extra = f"  (theme {moved:+d} semitone{'s' if abs(moved) > 1 else ''})" if moved else ""
        flag = "  (confident)" if m.confident else ""
        lead = f"{m.margin:+6.3f}" if m.rank == 1 and m.margin == m.margin else ""
        print(f"{m.rank:>4}  {m.score:6.3f}  {lead:>6}  {m.start:8.2f}  {m.end:8.2f}  {printable(m.path)}{extra}{flag}")
    if any(m.occurrences for m in result.matches):
        _print_occurrences(result.occurrences)
    print(f"{result.timings.total * 1000:.0f} ms (reading the theme {result.timings.extra.get('parse', 0) * 1000:.0f}, "
          f"render {result.timings.extra.get('render', 0) * 1000:.0f}, "
          f"ANN {result.timings.ann * 1000:.0f}, re-rank {result.timings.rerank * 1000:.0f})")


def _print_occurrences(occurrences: list) -> None:
    """``query --occurrences``' second table: every place, best score first."""
    print(f"\n{len(occurrences)} occurrence{'s' if len(occurrences) != 1 else ''} (every place it sounds, best first):")
    print(f"{'score':>6}  {'start':>8}  {'end':>8}  recording")
    for o in occurrences:
        print(f"{o.score:6.3f}  {o.start:8.2f}  {o.end:8.2f}  {printable(o.path)}")


def _add_query_options(parser: argparse.ArgumentParser) -> None:
    from retrieval.options import CANDIDATES, RENDERINGS

    parser.add_argument("--top", type=int, default=10, help="how many recordings to list (default 10)")
    parser.add_argument("--candidates", type=int, default=None,
                        help=f"recordings the ANN stage passes to DTW re-ranking (default {CANDIDATES}, doubled "
                             "with each doubling of the collection beyond ~130 h, at most 4×); more is slower and "
                             "finds more orchestral themes (docs/benchmarks.md)")
    parser.add_argument("--part", default=None, help="part of the score to search for: name or 0-based index")
    parser.add_argument("--measures", default=None, help="measure range A-B of the score (default: all)")
    parser.add_argument("--expand-repeats", action="store_true", help="play repeats as written out")
    parser.add_argument("--transpose", action="store_true", help="also search all 12 transpositions")
    parser.add_argument("--rendering", choices=RENDERINGS, default="auto",
                        help="theme → chroma: auto (default: a melody symbolically, a full texture such as "
                             "both staves of a piano score synthesised), symbolic, or synthesised with a SoundFont")
    parser.add_argument("--program", type=int, default=None,
                        help="GM program for the synthesised rendering (default: the score's instruments)")
    parser.add_argument("--exhaustive", action="store_true",
                        help="exact subsequence DTW against every recording (slow reference)")
    _add_device_option(parser, "the model of synthesised rendering")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from retrieval.ground_truth import evaluate, read_ground_truth

    rows = read_ground_truth(args.ground_truth)
    store = _open_for_query(args)
    # each query of a benchmark is a whole score: no part or measures; at least the top 10 for the metrics
    options = replace(_query_options(args), part=None, measures=None, top=max(args.top, 10))
    try:
        with tqdm(total=len(rows), unit="query", disable=args.quiet, dynamic_ncols=True) as bar:
            metrics, table = evaluate(store, rows, options, progress=lambda n: bar.update(n - bar.n))
    finally:
        store.close()
    if args.json:
        print(json.dumps({"ground_truth": str(args.ground_truth), "metrics": metrics, "queries": table}, indent=2))
        return 0
    print(f"{'query':<44} {'rank':>4}  {'score':>6}  {'start':>7}  {'truth':>7}  top-1 (start and score are its)")
    for r in table:
        rank = "-" if r["rank"] is None else str(r["rank"])
        fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
        wrong = "  (wrong recording)" if r["top1"] and r["rank"] != 1 else ""
        print(f"{printable(r['query_id']):<44} {rank:>4}  {fmt(r['score']):>6}  {fmt(r['start']):>7}  "
              f"{fmt(r['true_start']):>7}  {printable(r['top1'] or '')}{wrong}")
    m = metrics
    print(f"\n{m['queries']} queries: MRR {m['mrr']:.3f} (mean of 1 / the right recording's rank; - counts 0); "
          f"right recording first {m['top1']:.3f}, in the top 5 {m['top5']:.3f}, in the top 10 {m['top10']:.3f}")
    if m["top1_with_times"]:
        print(f"where: of the {m['top1_with_times']} right first answers whose CSV gives times, "
              f"{m['top1_span_overlap']:.3f} overlap where the theme really sounds")
    print(f"{m['mean_query_seconds'] * 1000:.0f} ms per query")
    if m["not_in_collection"]:
        print(f"{m['not_in_collection']} queries' recordings are not in the index (counted as misses)")
    return 0


def _shared_dir() -> Path:
    """``$SCORE_RETRIEVAL_SHARED``, else ``../shared`` beside the checkout (benchmark data and scores)."""
    import os

    return Path(os.environ.get("SCORE_RETRIEVAL_SHARED", Path(__file__).resolve().parent.parent / "shared"))


def cmd_train(args: argparse.Namespace) -> int:
    """Train a chroma model on score–audio pairs (see :mod:`training`)."""
    import torch

    from models.registry import resolve_model
    from training.cache import HCQTCache
    from training.data import load_training_data
    from training.loop import SCRATCH, TrainConfig, TrainingInterrupted, train
    from training.validation import RetrievalValidation

    if args.init != SCRATCH:
        resolve_model(args.init)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("--device cuda: no CUDA device is available")
    config = TrainConfig(
        init=args.init, loss=args.loss, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
        excerpt_seconds=args.excerpt_seconds, steps_per_epoch=args.steps_per_epoch, patience=args.patience,
        pitch_shift=args.pitch_shift, mix=args.mix, device=args.device,
    )
    cache_dir = args.cache or args.out / "cache"
    data = load_training_data(args.data, args.shared or _shared_dir(), cache_dir, args.validation)
    cache = HCQTCache(cache_dir / "hcqt", device=args.device)
    cache.fill([r.audio for r in data.train + data.selection], progress=not args.quiet)
    validation = None
    if data.selection and data.queries:
        validation = RetrievalValidation(data.selection, data.queries, cache, device=args.device)
    try:
        result = train(config, data.train, args.out, cache, validation=validation, data_card=data.card(),
                       progress=not args.quiet)
    except TrainingInterrupted as stop:
        print(str(stop), file=sys.stderr)
        return 130
    summary = {"out": str(result.out), "best_epoch": result.best_epoch, "best_validation_mrr": result.best_mrr,
               "stopped_early": result.stopped_early, "history": result.history}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        best = "n/a" if result.best_mrr is None else f"{result.best_mrr:.3f}"
        print(f"{result.out}: best epoch {result.best_epoch} (validation MRR {best}); "
              f"use it with --model {result.out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the web page and HTTP API over an index (read-only) with uvicorn."""
    from functools import partial

    import uvicorn

    from db.store import IndexStore
    from web.app import create_app
    from web.workers import WorkerLimits

    db = args.db or _default_db()
    IndexStore.open(db, readonly=True).close()  # a clear error now rather than on the first request
    if min(args.workers, args.request_seconds, args.worker_memory_mb, args.max_upload_mb) <= 0:
        raise ParameterError("--workers, --request-seconds, --worker-memory-mb and --max-upload-mb must be positive")

    def version() -> tuple[int, int]:
        faiss = Path(f"{db}.faiss")
        return (db.stat().st_mtime_ns, faiss.stat().st_mtime_ns if faiss.exists() else 0)

    limits = WorkerLimits(seconds=args.request_seconds, memory_bytes=int(args.worker_memory_mb * 2**20))
    app = create_app(partial(IndexStore.open, db, readonly=True), version=version,
                     max_upload_bytes=int(args.max_upload_mb * 2**20), workers=args.workers, limits=limits,
                     show_paths=args.show_paths, example=_example_theme(db))
    print(f"serving {db} on http://{args.host}:{args.port}/ (API docs at /docs; Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)
    return 0


def _example_theme(db: Path) -> Path | None:
    """The theme ``demo`` writes beside its index, offered by the web page as an example; else ``None``."""
    theme = Path(db).parent / "theme.musicxml"
    return theme if theme.is_file() else None


def cmd_demo(args: argparse.Namespace) -> int:
    """Render the bundled pieces, index them, and find a theme among them (no data needed). The folder
    is kept, so a second run reuses the audio and the index, and the next commands can use them."""
    from indexer.build import index_collection
    from indexer.demo_collection import DEMO_THEME, render_demo_collection
    from retrieval.theme import parse_corpus_work

    work_dir = args.dir
    audio, db, theme = work_dir / "audio", work_dir / "index.db", work_dir / "theme.musicxml"
    print(f"1/3 rendering {audio} from the music21 corpus with the GM SoundFont …", flush=True)
    render_demo_collection(audio)
    print(f"2/3 indexing {audio} into {db} (deep chroma, shingles, FAISS) …", flush=True)
    report = index_collection(audio, db, progress=not args.quiet)
    print(f"    {len(report.added)} added, {len(report.unchanged)} unchanged, {len(report.failed)} failed")
    work, measures, part = DEMO_THEME
    if not theme.exists():
        from models.files import atomic_write

        excerpt = parse_corpus_work(work).measures(*measures).parts[part]
        atomic_write(theme, lambda tmp: excerpt.write("musicxml", fp=tmp))
    print(f"3/3 query: {work}, measures {measures[0]}-{measures[1]}, part {part} ({theme})", flush=True)
    from db.store import IndexStore
    from retrieval.query import QueryOptions, query

    store = IndexStore.open(db, readonly=True)
    try:
        result = query(store, theme, QueryOptions(top=3))
    finally:
        store.close()
    _print_result(result, theme, args.json)
    print(f"\nnext:\n  python cli.py query {theme} --db {db} --transpose    # also in other keys\n"
          f"  python cli.py serve --db {db}                          # search from a browser\n"
          f"  python cli.py index ~/Music --db my_index.db                 # your own recordings",
          file=sys.stderr if args.json else sys.stdout)
    return 0


def _command(sub, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` starts with its one-line ``summary`` and ends with an ``example``."""
    return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                          epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=Path(sys.argv[0]).name,
                                     description="Cross-modal (score-to-audio) music retrieval.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "chroma", "extract deep chroma of audio files or folders into .npz files",
                 "python cli.py chroma recording.mp3 ~/Music/quartets -o chroma/")
    p.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    p.add_argument("-o", "--output", type=Path, default=Path("chroma"), help="output folder (default ./chroma)")
    _add_extractor_options(p)
    _add_output_options(p, "the report")
    p.set_defaults(func=cmd_chroma)

    p = _command(sub, "index", "build or update the search index of a folder of recordings",
                 "python cli.py index ~/Music/quartets --db quartets.db")
    p.add_argument("audio_dir", type=Path, help="folder of recordings (searched recursively)")
    _add_db_option(p)
    _add_settings_options(p)
    p.add_argument("--workers", type=int, default=None, help="extraction processes (default: 1 per 4 cores)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="extract on Ray: a local instance, or the cluster whose head node is ADDRESS (HOST:PORT); "
                        "needs pip install -e '.[cluster]'")
    _add_device_option(p)
    p.add_argument("--rebuild", action="store_true", help="delete the index and start over")
    p.add_argument("--keep-missing", action="store_true", help="keep recordings whose files are gone")
    p.add_argument("--no-follow-symlinks", action="store_true",
                   help="leave out symbolic links to files (by default they are followed, wherever they point)")
    _add_output_options(p, "the report")
    p.set_defaults(func=cmd_index)

    p = _command(sub, "query", "find the recordings that contain a theme given as a score, or an audio excerpt",
                 "python cli.py query theme.musicxml --db quartets.db --measures 1-8 --top 5 --occurrences")
    p.add_argument("themes", type=Path, nargs="+", metavar="THEME",
                   help="score file(s): MusicXML, MIDI, kern, ABC, MEI; or audio excerpts (WAV, FLAC, MP3, Ogg) "
                        "searched with the index's model (several: one result each; --json: a list)")
    _add_db_option(p)
    _add_query_options(p)
    p.add_argument("--occurrences", action="store_true",
                   help="list every place the theme sounds in the matched recordings, not one span per recording")
    p.add_argument("--min-score", type=float, default=None,
                   help="with --occurrences: list every place scoring at least this (default: the places that "
                        "score about as well as the best, see the README)")
    p.add_argument("--exclude-self", action="store_true",
                   help="for an audio excerpt: leave out the recording it was cut from")
    _add_model_check(p)
    p.add_argument("--plot", type=Path, default=None,
                   help="draw the theme beside the best match: an image file (.png, .pdf, .svg, .jpg) or a folder")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_query)

    p = _command(sub, "evaluate", "run the queries of a ground-truth CSV and report MRR and friends",
                 "python cli.py evaluate ../shared/benchmarks/bach_violin/ground_truth.csv --db bach.db")
    _add_db_option(p)
    p.add_argument("ground_truth", type=Path, help="CSV: query_id, query, recording, start_s, end_s")
    _add_query_options(p)
    _add_model_check(p)
    _add_output_options(p, "metrics and per-query rows")
    p.set_defaults(func=cmd_evaluate)

    p = _command(sub, "train", "train or fine-tune a chroma model on score-audio pairs",
                 "python cli.py train --data bach_violin --out models/my_model --epochs 5")
    p.add_argument("--data", action="append", required=True,
                   help="hauptstimme=AUDIO_DIR, bach_violin[=DIR] or a pairs CSV (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="output folder: weights, model card, checkpoint")
    p.add_argument("--init", default="v2_ctc_train123valid4",
                   help="model id or trained model to fine-tune, or scratch (default v2_ctc_train123valid4)")
    p.add_argument("--loss", choices=["ctc", "linear", "strong"], default="ctc", help="labels and loss (default ctc)")
    p.add_argument("--epochs", type=int, default=10, help="at most this many epochs (default 10)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=int, default=8, help="excerpts per step (default 8)")
    p.add_argument("--seed", type=int, default=0, help="data order and augmentation seed (default 0)")
    _add_device_option(p, "training")
    p.add_argument("--excerpt-seconds", type=float, default=10.0, help="longest excerpt (default 10 s)")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="cap on steps per epoch (default: all excerpts)")
    p.add_argument("--patience", type=int, default=3, help="epochs without validation gain before stopping (3)")
    p.add_argument("--pitch-shift", type=int, default=0, help="largest random transposition, semitones (default 0)")
    p.add_argument("--mix", type=float, default=0.0,
                   help="share of excerpts with another recording's excerpt mixed in, 0 to 12 dB below (default 0)")
    p.add_argument("--validation", type=Path, default=None, help="ground-truth CSV of validation queries")
    p.add_argument("--cache", type=Path, default=None, help="front-end cache folder (default OUT/cache)")
    p.add_argument("--shared", type=Path, default=None, help="data folder ($SCORE_RETRIEVAL_SHARED or ../shared)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = _command(sub, "serve", "web page and HTTP API for searching an index (read-only)",
                 "python cli.py serve --db quartets.db --port 8000")
    _add_db_option(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=2, help="worker processes: queries answered at once (default 2)")
    p.add_argument("--max-upload-mb", type=float, default=5.0, help="largest theme upload in MB (default 5)")
    p.add_argument("--request-seconds", type=float, default=120.0,
                   help="longest a query may run; its worker is then stopped and replaced (default 120)")
    p.add_argument("--worker-memory-mb", type=float, default=2048.0,
                   help="memory a query may take in its worker, beyond the libraries (default 2048)")
    p.add_argument("--show-paths", action="store_true",
                   help="answer recordings' absolute paths (default: relative to the collection's folder)")
    p.set_defaults(func=cmd_serve)

    for name, summary, example, func in (
        ("status", "summary of an index: recordings, hours, model, size, failures",
         "python cli.py status --db quartets.db", cmd_status),
        ("compact", "convert an older index to the compact format (uint8 frames, sized vectors)",
         "python cli.py compact --db old_index.db", cmd_compact),
        ("list", "the recordings of an index", "python cli.py list --db quartets.db --json", cmd_list),
    ):
        p = _command(sub, name, summary, example)
        _add_db_option(p)
        p.add_argument("--json", action="store_true", help="print everything as JSON")
        p.set_defaults(func=func)

    p = _command(sub, "models", "list the pretrained deep chroma models",
                 "python cli.py models")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(func=cmd_models)

    p = _command(sub, "demo", "render a small bundled collection, index it and query a theme (no data needed)",
                 "python cli.py demo --dir demo")
    p.add_argument("--dir", type=Path, default=Path("demo"),
                   help="folder for the audio, index and theme, kept and reused by the next run (default ./demo)")
    _add_output_options(p, "the query result")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader went away (`cli.py list --json | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RetrievalError, OSError) as exc:  # caused by input or the file system: one line
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:  # an index changed under a reader (an index run checkpointing)
        print(f"error: the index could not be read ({exc}); if an index run is under way, run this again "
              "when it has saved its next checkpoint", file=sys.stderr)
        return 2
    except Exception:  # a bug: show where, and ask for a report
        traceback.print_exc()
        print("error: this is a bug in the retrieval engine, not in your input; please report it with the "
              "command line and the traceback above", file=sys.stderr)
        return 3


def cli_entry() -> None:
    """The ``score-retrieval`` console script (the same commands as ``python cli.py``)."""
    sys.exit(main())


if __name__ == "__main__":
    cli_entry()
