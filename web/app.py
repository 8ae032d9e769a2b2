"""The HTTP API and web page over a collection (``cli.py serve``): an ASGI app (FastAPI).

Endpoints (OpenAPI at ``/docs`` and ``/openapi.json``):

- ``POST /api/query``: a theme as a multipart upload (field ``theme``: a score, or an audio excerpt
  by its extension) or JSON ``{"text", "format"}`` (ABC or kern text), with the options of
  ``cli.py query`` (``occurrences``, ``min_score``, ``exclude_self`` among them); answers the
  fields of ``query --json`` (each match's ``notes`` with their times, ``occurrences`` when asked)
  plus ``query_id`` (for the plot), and ``notation`` (SVG) when asked with ``notation=true``.
- ``POST /api/notation``: the same input (a score); the theme engraved as SVG with verovio's time
  map (``timemap``: the note ids beginning at each quarter), before searching.
- ``GET /api/recordings``, ``GET /api/status``: as ``cli.py list --json`` and ``status --json``.
- ``GET /api/recordings/{id}/audio``: the recording's file, by id only (HTTP ranges: 206).
- ``GET /api/recordings/{id}/plot?query_id=…``: theme vs. matched excerpt chroma (PNG).
- ``GET /api/example``: a theme to try (the demo collection's), 404 where the server has none.

Safety: no path from a client reaches the file system (audio by recording id, and only while the
file is still the one indexed: same size and modification time); a request body is counted as
it arrives and refused (413) past ``max_upload_bytes``, chunked or not; an ``.mxl`` upload is
inflated only up to :data:`INFLATE_FACTOR` times that; themes with too many notes answer 422
before they are parsed, unreadable ones 400 with the CLI's one-line message. Parsing, searching,
engraving and plotting run in worker processes limited in time and memory
(:mod:`web.workers`): a runaway request costs its own worker, which is replaced. The
index listings, status and audio are answered by this process's own threads, never behind a
query. Answers name recordings relative to the collection's folder unless ``show_paths``.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import secrets
import sqlite3
import stat
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from models.audio import AUDIO_EXTENSIONS
from models.errors import RetrievalError
from retrieval.options import RENDERINGS
from retrieval.query import QueryOptions
from retrieval.search import SearchableIndex
from retrieval.theme import MAX_THEME_NOTES, ThemeError, parse_measures
from web.tasks import RequestError, notation_task, plot_task, query_task, saved_upload
from web.workers import WorkerLimits, WorkerOverrun, WorkerPool

__all__ = ["AUDIO_FORMATS", "INFLATE_FACTOR", "MAX_MIDI_QUARTERS", "THEME_FORMATS", "create_app"]

STATIC = Path(__file__).parent / "static"
THEME_FORMATS = {"musicxml": ".musicxml", "xml": ".xml", "mxl": ".mxl", "mid": ".mid", "midi": ".mid",
                 "krn": ".krn", "kern": ".krn", "abc": ".abc", "mei": ".mei"}
"""Accepted theme formats (upload extension or JSON ``format``) → the extension music21 reads by."""

AUDIO_FORMATS = {suffix.lstrip("."): suffix for suffix in sorted(AUDIO_EXTENSIONS)}
"""Uploads searched as a recording (an excerpt through the index's model), by their extension."""

_RESULTS_KEPT = 64  # recent query results kept for their plots

MAX_CANDIDATES = 1000
"""At most this many recordings re-ranked for one request (a served page must not let one query
re-rank a whole archive); the CLI and the library take any number."""

INFLATE_FACTOR = 20
"""An ``.mxl`` upload (a zip) may inflate to at most this many times the upload limit."""

MAX_MIDI_QUARTERS = 8000
"""The longest MIDI theme the server parses, in quarter notes (over an hour at 120 bpm; music21
takes about 4 s for it)."""

_FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the other fields, beyond the theme itself

MAX_RECORDING_ID = 2**63 - 1  # SQLite's largest integer


class _Collections:
    """One read-only collection per thread, reopened after an index run saved a checkpoint."""

    def __init__(self, open_collection: Callable[[], SearchableIndex], version: Callable[[], object]) -> None:
        self.open, self.version = open_collection, version
        self.local = threading.local()

    def get(self) -> SearchableIndex:
        current = self.version()
        if getattr(self.local, "version", None) != current:
            old = getattr(self.local, "collection", None)
            if old is not None and hasattr(old, "close"):
                old.close()
            self.local.collection, self.local.version = self.open(), current
        return self.local.collection


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, counted as it arrives: 413 as soon as it passes ``limit`` bytes
    (a declared Content-Length or a chunked stream alike)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"a body of {declared} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"a body of more than {limit} bytes; the limit is {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _inflated_xml(data: bytes, name: str, limit: int) -> list[bytes]:
    """Chunks of the MusicXML files in an ``.mxl`` zip, inflated up to ``limit`` bytes in all:
    413 when the sizes the archive declares, or the bytes it really inflates to, pass it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = [i for i in archive.infolist() if i.filename.lower().endswith((".xml", ".musicxml"))
                       and not i.filename.startswith("META-INF")]
            declared = sum(i.file_size for i in archive.infolist())
            if declared > limit:
                raise HTTPException(413, f"{name}: inflates to {declared} bytes; the limit is {limit} bytes")
            chunks, size = [], 0
            for entry in entries:
                with archive.open(entry) as member:
                    while chunk := member.read(2**16):
                        size += len(chunk)
                        if size > limit:
                            raise HTTPException(413, f"{name}: inflates to more than {limit} bytes "
                                                     f"(its directory says {declared}); the limit is {limit} bytes")
                        chunks.append(chunk)
            return chunks
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as error:
        raise HTTPException(400, f"{name}: not a readable .mxl archive ({str(error)[:80]})") from None


def _check_size_cheaply(data: bytes, extension: str, name: str, inflate_limit: int) -> None:
    """422 for a theme that is plainly too large, found without music21's slow parse: more than
    twice :data:`MAX_THEME_NOTES` notes (``<note`` tags of MusicXML/MXL, note-ons of MIDI), or a
    MIDI file spanning more than :data:`MAX_MIDI_QUARTERS` quarter notes (music21 fills the span
    with measures: a few bytes of delta time cost minutes and gigabytes)."""
    if extension == ".mid":
        import mido

        try:
            midi = mido.MidiFile(file=io.BytesIO(data))
        except Exception:  # noqa: BLE001 - any unreadable MIDI: music21 will report it properly
            return
        notes = sum(1 for track in midi.tracks for m in track if m.type == "note_on" and m.velocity > 0)
        quarters = max((sum(m.time for m in track) for track in midi.tracks), default=0) / max(midi.ticks_per_beat, 1)
        if quarters > MAX_MIDI_QUARTERS:
            raise HTTPException(422, f"{name}: spans {quarters:.0f} quarter notes, too long for a theme (at most "
                                     f"{MAX_MIDI_QUARTERS}); export the passage alone")
    elif extension in (".musicxml", ".xml", ".mxl"):
        chunks = _inflated_xml(data, name, inflate_limit) if extension == ".mxl" else [data]
        notes, tail = 0, b""
        for chunk in chunks:  # a tag split between two chunks is counted once: the tail is shorter than a tag
            joined = tail + chunk
            notes += joined.count(b"<note>") + joined.count(b"<note ")
            tail = joined[-5:]
    else:
        return
    if notes > 2 * MAX_THEME_NOTES:
        raise HTTPException(422, f"{name}: {notes} notes, too many for a theme (at most {MAX_THEME_NOTES}); "
                                 "choose a passage (measures) and/or one part")


def _whole_number(raw: dict, key: str, default: int | None, low: int, high: int) -> int | None:
    """The request field ``key`` as a whole number clamped to [low, high]; 400 for anything else
    (text that is not a number, lists, booleans, infinities)."""
    value = raw.get(key)
    if value is None or value == "":
        return default
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise HTTPException(400, f"{key} must be a whole number, got {str(value)[:40]!r}")
    return max(low, min(number, high))


def _measure_range(raw: dict) -> tuple[int, int] | None:
    """The ``measures`` field ``A-B`` (or ``A``) as ``(A, B)``, or ``None``; 400 when malformed."""
    text = raw.get("measures")
    if text in (None, ""):
        return None
    try:
        return parse_measures(text)
    except ThemeError as error:
        raise HTTPException(400, str(error)) from None


def _options(raw: dict) -> tuple[QueryOptions, bool]:
    """The :class:`QueryOptions` of a request's fields, and whether it asks for notation."""
    def flag(key: str) -> bool:
        return str(raw.get(key, "")).lower() in ("1", "true", "on", "yes")

    rendering = str(raw.get("rendering") or "auto")
    if rendering not in RENDERINGS:
        raise HTTPException(400, f"rendering must be one of {', '.join(RENDERINGS)}, got {rendering[:40]!r}")
    part = raw.get("part")
    options = QueryOptions(
        top=_whole_number(raw, "top", 10, 1, 100), part=None if part in (None, "") else str(part)[:200],
        measures=_measure_range(raw), transpose=flag("transpose"), rendering=rendering, exhaustive=flag("exhaustive"),
        candidates=_whole_number(raw, "candidates", None, 1, MAX_CANDIDATES),
        occurrences=flag("occurrences"), min_score=_similarity(raw, "min_score"), exclude_self=flag("exclude_self"),
    )
    return options, flag("notation")


def _similarity(raw: dict, key: str) -> float | None:
    """The request field ``key`` as a similarity in [−1, 1], or ``None``; 400 for anything else."""
    value = raw.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not -1.0 <= number <= 1.0:
        raise HTTPException(400, f"{key} must be a number from -1 to 1, got {str(value)[:40]!r}")
    return number


def _private_prefixes(collection: SearchableIndex) -> list[str]:
    """Folder prefixes an answer does not show: the collection's (the recordings' common folder)
    and the index's, longest first."""
    folders = [os.path.dirname(r.path) for r in collection.recordings()]
    prefixes = {os.path.commonpath(folders)} if folders else set()
    path = getattr(collection, "path", None)
    if path is not None:
        prefixes.add(str(Path(path).resolve().parent))
    return sorted((p.rstrip(os.sep) + os.sep for p in prefixes if p.rstrip(os.sep)), key=len, reverse=True)


def _without_prefixes(value: Any, prefixes: list[str]) -> Any:
    """``value`` (JSON-like) with every string's private folder prefixes removed."""
    if isinstance(value, str):
        for prefix in prefixes:
            value = value.replace(prefix, "")
        return value
    if isinstance(value, dict):
        return {k: _without_prefixes(v, prefixes) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_prefixes(v, prefixes) for v in value]
    return value


async def _theme_input(request: Request, max_upload_bytes: int) -> tuple[bytes, str, str, dict]:
    """(bytes, file name, extension, options) of a multipart upload or a JSON body; 4xx on bad input."""
    body = await _read_body(request, max_upload_bytes + _FORM_OVERHEAD)
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        try:
            raw = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise HTTPException(400, f"the body is not valid JSON ({str(error)[:80]})") from None
        if not isinstance(raw, dict):
            raise HTTPException(400, "the JSON body must be an object: {\"text\": …, \"format\": \"abc\", …}")
        fmt = str(raw.get("format", "abc")).lower()
        if fmt not in THEME_FORMATS or not isinstance(raw.get("text"), str):
            raise HTTPException(400, "JSON needs 'text' (the theme) and 'format' (abc or kern)")
        data, name = raw["text"].encode(), f"the pasted {'ABC' if fmt == 'abc' else 'kern'} text"
    elif kind.startswith("multipart/form-data"):
        async def replay() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_part_size=max_upload_bytes + 1)
        except HTTPException:
            raise
        except Exception as error:  # noqa: BLE001 - a malformed multipart body
            raise HTTPException(400, f"not a readable multipart body ({str(error)[:80]})") from None
        upload = form.get("theme")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "multipart upload needs a file field 'theme'")
        data, name = await upload.read(max_upload_bytes + 1), Path(upload.filename or "theme").name
        raw = {k: v for k, v in form.items() if isinstance(v, str)}
    else:
        raise HTTPException(415, "send the theme as multipart/form-data (field 'theme') or JSON {text, format}")
    if len(data) > max_upload_bytes:
        raise HTTPException(413, f"{name}: larger than the limit of {max_upload_bytes} bytes")
    pasted = kind.startswith("application/json")
    given = fmt if pasted else Path(name).suffix.lower().lstrip(".")
    extension = THEME_FORMATS.get(given) or (None if pasted else AUDIO_FORMATS.get(given))
    if extension is None:
        raise HTTPException(400, f"{name}: not a theme format the engine reads "
                                 f"({', '.join(sorted(set(THEME_FORMATS.values())))}, or audio: "
                                 f"{', '.join(AUDIO_FORMATS.values())})")
    _check_size_cheaply(data, extension, name, INFLATE_FACTOR * max_upload_bytes)
    return data, name, extension, raw


class _Server:
    """What the routes share: the collection per thread, the worker pool (started on first use),
    the listing threads, recent results for their plots, and how answers hide the server's folders."""

    def __init__(self, open_collection: Callable[[], SearchableIndex], version: Callable[[], object],
                 workers: int, limits: WorkerLimits, show_paths: bool) -> None:
        self.open_collection, self.version, self.workers, self.limits = open_collection, version, workers, limits
        self.show_paths = show_paths
        self.collections = _Collections(open_collection, version)
        self.light = ThreadPoolExecutor(4, thread_name_prefix="listing")  # SQLite rows and file checks: never a query
        self.results: OrderedDict[str, Any] = OrderedDict()
        self.prefixes: dict[object, list[str]] = {}
        self.pool: WorkerPool | None = None

    def workers_pool(self) -> WorkerPool:
        if self.pool is None:
            self.pool = WorkerPool(self.open_collection, self.workers, self.limits)
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    async def in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.light, function, *args)

    async def in_worker(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self.workers_pool().run(function, self.version(), *args)
        except (RequestError, WorkerOverrun) as error:
            raise HTTPException(error.status, error.message) from None

    async def public(self, value: Any) -> Any:
        """``value`` as a client may see it: without the collection's and the index's folders."""
        if self.show_paths:
            return value
        current = self.version()
        if current not in self.prefixes:
            self.prefixes.clear()
            self.prefixes[current] = await self.in_thread(lambda: _private_prefixes(self.collections.get()))
        return _without_prefixes(value, self.prefixes[current])

    async def error_answer(self, message: str, status: int) -> JSONResponse:
        """``{"error": message}``: one line, without the server's folders (or, where the index
        is too broken to say which those are, a general line)."""
        try:
            message = await self.public(message.splitlines()[0] if message else "")
        except Exception:  # noqa: BLE001 - the index is unreadable: the folders to hide are unknown
            message = "the index cannot be read now (an index run may be rebuilding it); try again shortly"
        return JSONResponse({"error": message}, status_code=status)

    def keep(self, result: Any) -> str:
        """Keep a query's result for its plots (the most recent :data:`_RESULTS_KEPT`); its id."""
        query_id = secrets.token_urlsafe(16)
        self.results[query_id] = result
        while len(self.results) > _RESULTS_KEPT:
            self.results.popitem(last=False)
        return query_id

    def recording_or_404(self, recording_id: int):
        rec = self.collections.get().recording(recording_id) if 0 <= recording_id <= MAX_RECORDING_ID else None
        if rec is None or rec.status != "indexed":
            raise HTTPException(404, f"no indexed recording {recording_id}")
        return rec

    def indexed_file(self, recording_id: int) -> tuple[Path, os.stat_result, str]:
        """(the file's real path, its status, the name to give it) while it is the file indexed, else 410."""
        rec = self.recording_or_404(recording_id)
        try:
            real = Path(rec.path).resolve(strict=True)
            status = real.stat()
        except (OSError, RuntimeError):
            raise HTTPException(410, f"recording {recording_id}: its file is gone from the collection") from None
        if not stat.S_ISREG(status.st_mode) or (status.st_size, status.st_mtime) != (rec.size, rec.mtime):
            raise HTTPException(410, f"recording {recording_id}: its file changed since it was indexed "
                                     "(run index again)")
        return real, status, Path(rec.path).name


def create_app(open_collection: Callable[[], SearchableIndex], *, version: Callable[[], object] = lambda: 0,
               max_upload_bytes: int = 5 * 2**20, workers: int = 2, limits: WorkerLimits | None = None,
               show_paths: bool = False, example: Path | None = None) -> FastAPI:
    """The application over the collection ``open_collection()`` returns (read-only).

    ``open_collection`` must be picklable (e.g. ``functools.partial(IndexStore.open, db,
    readonly=True)``): each of the ``workers`` processes opens its own. ``version()`` changes
    when the index on disk changed (e.g. the FAISS file's mtime), so every reader reopens it and
    sees the last checkpoint. ``limits``: each request's time and memory (:class:`WorkerLimits`).
    ``show_paths``: answer recordings' absolute paths (by default relative to the collection's folder).
    ``example``: a theme the page offers to try with one click (the demo's, where it is served).
    """
    server = _Server(open_collection, version, workers, limits or WorkerLimits(), show_paths)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.workers_pool().start()
        yield
        server.close()

    app = FastAPI(title="Score-to-audio retrieval", description=__doc__.split("\n\n")[0], docs_url=None,
                  lifespan=lifespan)
    app.openapi_version = "3.0.3"  # the Swagger UI bundled for /docs (4.x) cannot show a 3.1 document

    @app.exception_handler(HTTPException)
    async def one_line(request: Request, error: HTTPException) -> JSONResponse:
        return await server.error_answer(str(error.detail), error.status_code)

    @app.exception_handler(RetrievalError)
    @app.exception_handler(sqlite3.DatabaseError)
    async def index_unreadable(request: Request, error: Exception) -> JSONResponse:
        """The index cannot be read now (an index run rebuilding it, a damaged file): 503."""
        return await server.error_answer(str(error), 503)

    _query_routes(app, server, max_upload_bytes)
    _recording_routes(app, server)
    _collection_routes(app, server, example)
    _page_routes(app)
    return app


def _query_routes(app: FastAPI, server: _Server, max_upload_bytes: int) -> None:
    """Queries, the theme's notation, and a match's plot."""

    @app.post("/api/query")
    async def api_query(request: Request) -> dict:
        data, name, extension, raw = await _theme_input(request, max_upload_bytes)
        options, with_notation = _options(raw)
        with saved_upload(data, name, extension) as path:
            answer, result = await server.in_worker(query_task, path, name, options, with_notation)
        answer["query_id"] = server.keep(result)
        return await server.public(answer)

    @app.post("/api/notation")
    async def api_notation(request: Request) -> dict:
        data, name, extension, raw = await _theme_input(request, max_upload_bytes)
        options, _ = _options(raw)
        with saved_upload(data, name, extension) as path:
            return await server.in_worker(notation_task, path, name, options.part, options.measures)

    @app.get("/api/recordings/{recording_id}/plot")
    async def api_plot(recording_id: int, query_id: str) -> Response:
        result = server.results.get(query_id)
        if result is None:
            raise HTTPException(404, "no recent query with that query_id (run the query again)")
        ranks = [m.rank for m in result.matches if m.recording_id == recording_id]
        if not ranks:
            raise HTTPException(404, f"recording {recording_id} is not among the matches of that query")
        return Response(await server.in_worker(plot_task, result, ranks[0]), media_type="image/png")


def _recording_routes(app: FastAPI, server: _Server) -> None:
    """The indexed recordings: their list and their audio."""

    @app.get("/api/recordings")
    async def api_recordings() -> list[dict]:
        listing = await server.in_thread(lambda: [asdict(r) for r in server.collections.get().recordings()])
        return await server.public(listing)

    @app.get("/api/recordings/{recording_id}/audio")
    async def api_audio(recording_id: int) -> FileResponse:
        real, status, name = await server.in_thread(server.indexed_file, recording_id)
        return FileResponse(real, stat_result=status, filename=name)


def _collection_routes(app: FastAPI, server: _Server, example: Path | None) -> None:
    """What is indexed, and the example theme."""

    @app.get("/api/status")
    async def api_status() -> dict:
        return await server.public(await server.in_thread(lambda: server.collections.get().stats()))

    @app.get("/api/example")
    async def api_example() -> Response:
        """The example theme of this collection (MusicXML), where the server offers one: 404 otherwise."""
        if example is None or not example.is_file():
            raise HTTPException(404, "this collection has no example theme")
        return FileResponse(example, media_type="application/vnd.recordare.musicxml+xml", filename=example.name)


def _page_routes(app: FastAPI) -> None:
    """The page, its icon, and the API docs with Swagger UI's own files served here (FastAPI's
    default loads them from a CDN)."""

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title}: API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
