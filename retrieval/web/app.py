"""The HTTP API and web page over a collection (``cli.py serve``): an ASGI app (FastAPI).

Endpoints (OpenAPI at ``/docs`` and ``/openapi.json``):

- ``POST /api/query``: a theme as a multipart upload (field ``theme``) or JSON ``{"text", "format"}``
  (ABC or kern text), with the options of ``cli.py query``; answers the fields of ``query --json``
  plus ``query_id`` (for the plot), and ``notation`` (SVG) when asked with ``notation=true``.
- ``POST /api/notation``: the same input; the theme engraved as SVG (before searching).
- ``GET /api/recordings``, ``GET /api/status``: as ``cli.py list --json`` and ``status --json``.
- ``GET /api/recordings/{id}/audio``: the recording's file, by id only (HTTP ranges: 206).
- ``GET /api/recordings/{id}/plot?query_id=…``: theme vs. matched excerpt chroma (PNG).

Safety: no path from a client reaches the file system (audio by recording id; an upload is saved
under a sanitised name in a private temporary folder); uploads above ``max_upload_bytes`` answer
413, themes with too many notes 422 before they are parsed, unreadable ones 400 with the CLI's
one-line message; queries run in a bounded worker pool (the event loop never blocks) and give up
after ``query_seconds`` (504). The server only reads the index: each worker thread holds its own
read-only connection and reopens it when an ``index`` run has saved a new checkpoint.
"""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from models.errors import RetrievalError
from retrieval.search import CANDIDATES, Collection
from retrieval.theme import MAX_THEME_NOTES, ThemeError

__all__ = ["THEME_FORMATS", "create_app"]

STATIC = Path(__file__).parent / "static"
THEME_FORMATS = {"musicxml": ".musicxml", "xml": ".xml", "mxl": ".mxl", "mid": ".mid", "midi": ".mid",
                 "krn": ".krn", "kern": ".krn", "abc": ".abc", "mei": ".mei"}
"""Accepted theme formats (upload extension or JSON ``format``) → the extension music21 reads by."""

_RESULTS_KEPT = 64  # recent query results kept for their plots

MAX_CANDIDATES = 1000
"""At most this many recordings re-ranked for one request (a served page must not let one query
re-rank a whole archive); the CLI and the library take any number."""


class _Collections:
    """One read-only collection per worker thread, reopened after an index run saved a checkpoint."""

    def __init__(self, open_collection: Callable[[], Collection], version: Callable[[], object]) -> None:
        self.open, self.version = open_collection, version
        self.local = threading.local()

    def get(self) -> Collection:
        current = self.version()
        if getattr(self.local, "version", None) != current:
            old = getattr(self.local, "collection", None)
            if old is not None and hasattr(old, "close"):
                old.close()
            self.local.collection, self.local.version = self.open(), current
        return self.local.collection


def _safe_name(filename: str | None, extension: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename or "theme").stem)[:60].strip("._") or "theme"
    return stem + extension


def _count_notes_cheaply(data: bytes, extension: str) -> int | None:
    """Notes of a MusicXML/MXL theme (``<note`` tags) or a MIDI file (note-on messages, read by mido)
    counted without music21's slow parse; ``None`` for other formats or unreadable bytes."""
    if extension == ".mid":
        import mido

        try:
            midi = mido.MidiFile(file=io.BytesIO(data))
        except Exception:  # noqa: BLE001 - any unreadable MIDI: music21 will report it properly
            return None
        return sum(1 for track in midi.tracks for m in track if m.type == "note_on" and m.velocity > 0)
    if extension == ".mxl":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                data = b"".join(archive.read(n) for n in archive.namelist() if n.lower().endswith((".xml", ".musicxml"))
                                and not n.startswith("META-INF"))
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
    if extension in (".musicxml", ".xml", ".mxl"):
        return data.count(b"<note>") + data.count(b"<note ")
    return None


def create_app(open_collection: Callable[[], Collection], *, version: Callable[[], object] = lambda: 0,
               max_upload_bytes: int = 5 * 2**20, workers: int = 2, query_seconds: float = 120.0) -> FastAPI:
    """The application over the collection ``open_collection()`` returns (read-only, one per worker thread).

    ``version()`` changes when the index on disk changed (e.g. the FAISS file's mtime), so workers
    reopen their collection and see the last checkpoint.
    """
    from retrieval.query import QueryOptions, query

    app = FastAPI(title="Score-to-audio retrieval", description=__doc__.split("\n\n")[0], docs_url=None)
    collections = _Collections(open_collection, version)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="query")
    results: OrderedDict[str, object] = OrderedDict()

    async def in_pool(function, *args):
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(pool, function, *args), query_seconds)
        except TimeoutError:
            raise HTTPException(504, f"the query took longer than {query_seconds:.0f} s") from None

    async def theme_input(request: Request) -> tuple[bytes, str, dict]:
        """(bytes, file name, options) of a multipart upload or a JSON body; 413/400 on bad input."""
        declared = int(request.headers.get("content-length") or 0)
        if declared > max_upload_bytes + 64 * 1024:
            raise HTTPException(413, f"upload of {declared} bytes; the limit is {max_upload_bytes} bytes")
        kind = request.headers.get("content-type", "")
        if kind.startswith("application/json"):
            body = await request.json()
            fmt = str(body.get("format", "abc")).lower()
            if fmt not in THEME_FORMATS or not isinstance(body.get("text"), str):
                raise HTTPException(400, "JSON needs 'text' (the theme) and 'format' (abc or kern)")
            data, name, options = body["text"].encode(), f"theme.{fmt}", body
        elif kind.startswith("multipart/form-data"):
            form = await request.form(max_part_size=max_upload_bytes + 1)
            upload = form.get("theme")
            if upload is None or isinstance(upload, str):
                raise HTTPException(400, "multipart upload needs a file field 'theme'")
            data, name = await upload.read(max_upload_bytes + 1), upload.filename or "theme"
            options = {k: v for k, v in form.items() if isinstance(v, str)}
        else:
            raise HTTPException(415, "send the theme as multipart/form-data (field 'theme') or JSON {text, format}")
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"{name}: larger than the limit of {max_upload_bytes} bytes")
        return data, name, options

    def options_of(raw: dict) -> tuple[QueryOptions, bool]:
        """The :class:`QueryOptions` of a request's fields, and whether it asks for notation."""
        def flag(key: str) -> bool:
            return str(raw.get(key, "")).lower() in ("1", "true", "on", "yes")

        measures = None
        if raw.get("measures"):
            first, _, last = str(raw["measures"]).partition("-")
            try:
                measures = (int(first), int(last or first))
            except ValueError:
                raise HTTPException(400, f"measures must look like A-B, got {raw['measures']!r}") from None
        try:
            top = int(raw.get("top") or 10)
        except ValueError:
            raise HTTPException(400, f"top must be a number, got {raw['top']!r}") from None
        try:
            candidates = int(raw.get("candidates") or CANDIDATES)
        except ValueError:
            raise HTTPException(400, f"candidates must be a number, got {raw['candidates']!r}") from None
        rendering = str(raw.get("rendering") or "symbolic")
        if rendering not in ("symbolic", "synthesised"):
            raise HTTPException(400, f"rendering must be symbolic or synthesised, got {rendering!r}")
        options = QueryOptions(top=max(1, min(top, 100)), part=raw.get("part") or None, measures=measures,
                               transpose=flag("transpose"), rendering=rendering, exhaustive=flag("exhaustive"),
                               candidates=max(1, min(candidates, MAX_CANDIDATES)))
        return options, flag("notation")

    def run_with_file(data: bytes, name: str, work: Callable[[Path], object]):
        extension = THEME_FORMATS.get(Path(name).suffix.lower().lstrip("."))
        if extension is None:
            raise HTTPException(400, f"{name}: not a theme format the engine reads "
                                     f"({', '.join(sorted(set(THEME_FORMATS.values())))})")
        notes = _count_notes_cheaply(data, extension)
        if notes is not None and notes > 2 * MAX_THEME_NOTES:
            raise HTTPException(422, f"{name}: {notes} notes, too many for a theme (at most {MAX_THEME_NOTES}); "
                                     "choose a passage (measures) and/or one part")
        with tempfile.TemporaryDirectory(prefix="theme_upload_") as folder:
            path = Path(folder) / _safe_name(name, extension)
            path.write_bytes(data)
            try:
                return work(path)
            except RetrievalError as error:  # the CLI's one-line message, the upload's name in place of ours
                message = str(error).replace(str(path), Path(name).name)
                status = 422 if "too many" in message or "longer than" in message else 400
                raise HTTPException(status, message) from None

    @app.exception_handler(HTTPException)
    async def one_line(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.post("/api/query")
    async def api_query(request: Request) -> dict:
        data, name, raw = await theme_input(request)
        options, with_notation = options_of(raw)

        def work(path: Path) -> dict:
            from retrieval.web.notation import notation_svg

            t0 = time.perf_counter()
            result = query(collections.get(), path, options)
            answer = result.as_dict()
            answer["theme"] = Path(name).name
            answer["query_id"] = f"q{time.monotonic_ns()}"
            answer["timings"]["server"] = time.perf_counter() - t0
            results[answer["query_id"]] = result
            while len(results) > _RESULTS_KEPT:
                results.popitem(last=False)
            if with_notation:
                try:
                    answer["notation"] = notation_svg(path, options.part, options.measures)
                except ThemeError:
                    answer["notation"] = None
            return answer

        return await in_pool(run_with_file, data, name, work)

    @app.post("/api/notation")
    async def api_notation(request: Request) -> dict:
        data, name, raw = await theme_input(request)
        options, _ = options_of(raw)

        def work(path: Path) -> dict:
            from retrieval.web.notation import notation_svg

            return {"theme": Path(name).name, "svg": notation_svg(path, options.part, options.measures)}

        return await in_pool(run_with_file, data, name, work)

    @app.get("/api/recordings")
    async def api_recordings() -> list[dict]:
        return await in_pool(lambda: [asdict(r) for r in collections.get().recordings()])

    @app.get("/api/status")
    async def api_status() -> dict:
        return await in_pool(lambda: collections.get().stats())

    def recording_or_404(recording_id: int):
        rec = collections.get().recording(recording_id)
        if rec is None or rec.status != "indexed":
            raise HTTPException(404, f"no indexed recording {recording_id}")
        return rec

    @app.get("/api/recordings/{recording_id}/audio")
    async def api_audio(recording_id: int) -> FileResponse:
        rec = await in_pool(recording_or_404, recording_id)
        path = Path(rec.path)
        if not path.is_file():
            raise HTTPException(410, f"recording {recording_id}: its file is gone from the collection")
        return FileResponse(path, filename=path.name)

    @app.get("/api/recordings/{recording_id}/plot")
    async def api_plot(recording_id: int, query_id: str) -> Response:
        result = results.get(query_id)
        if result is None:
            raise HTTPException(404, f"no recent query {query_id!r} (run the query again)")
        ranks = [m.rank for m in result.matches if m.recording_id == recording_id]
        if not ranks:
            raise HTTPException(404, f"recording {recording_id} is not among the matches of {query_id}")

        def draw() -> bytes:
            from retrieval.plot import plot_match

            buffer = io.BytesIO()
            plot_match(result, collections.get(), buffer, rank=ranks[0])
            return buffer.getvalue()

        return Response(await in_pool(draw), media_type="image/png")

    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html

    # the API docs with Swagger UI's own files served here (FastAPI's default loads them from a CDN)
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title}: API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app
