"""The HTTP API and the page (issue 13): every endpoint, bad input, safety, and a real browser."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from db.store import IndexStore
from retrieval.theme import parse_corpus_work
from retrieval.web.app import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _app(indexed: Path, **options):
    return create_app(lambda: IndexStore.open(indexed, readonly=True), **options)


@pytest.fixture(scope="module")
def client(indexed):
    with TestClient(_app(indexed)) as client:
        yield client


@pytest.fixture(scope="module")
def haydn_theme(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("web") / "haydn_theme.musicxml"
    parse_corpus_work("haydn/opus74no1/movement3").measures(9, 12).parts[0].write("musicxml", fp=path)
    return path


def _upload(client, path: Path, **options):
    with open(path, "rb") as f:
        return client.post("/api/query", files={"theme": (path.name, f)}, data={k: str(v) for k, v in options.items()})


def test_query_by_upload_answers_the_cli_fields(client, haydn_theme):
    response = _upload(client, haydn_theme, top=3, notation="true")
    assert response.status_code == 200
    answer = response.json()
    assert {"theme", "confident_match", "timings", "matches", "query_id", "notation"} <= set(answer)
    best = answer["matches"][0]
    assert best["path"].endswith("haydn_op74.wav") and best["confident"]
    assert 10.0 < best["start"] < 14.0 and 16.0 < best["end"] < 20.0  # bars 9-12 of the rendering
    assert answer["notation"].startswith("<svg")
    plot = client.get(f"/api/recordings/{best['recording_id']}/plot", params={"query_id": answer["query_id"]})
    assert plot.status_code == 200 and plot.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_query_by_pasted_abc_and_notation(client):
    text = "X:1\nM:4/4\nL:1/4\nK:C\nC E G c|G E C2|]\n"
    answer = client.post("/api/query", json={"text": text, "format": "abc", "top": 2}).json()
    assert len(answer["matches"]) == 2
    svg = client.post("/api/notation", json={"text": text, "format": "abc"}).json()["svg"]
    assert svg.startswith("<svg")


def test_api_docs_are_served_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert "/api/query" in client.get("/openapi.json").json()["paths"]


def test_recordings_and_status(client):
    recordings = client.get("/api/recordings").json()
    assert len(recordings) == 5 and {"id", "path", "duration", "status"} <= set(recordings[0])
    status = client.get("/api/status").json()
    assert status["recordings"] == 5 and status["settings"]["model_id"]


def test_audio_by_id_with_ranges(client):
    rid = client.get("/api/recordings").json()[0]["id"]
    whole = client.get(f"/api/recordings/{rid}/audio")
    assert whole.status_code == 200 and whole.content[:4] == b"RIFF"
    part = client.get(f"/api/recordings/{rid}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert client.get("/api/recordings/99999/audio").status_code == 404


@pytest.mark.parametrize("attempt", [
    "/api/recordings/..%2F..%2F..%2Fetc%2Fpasswd/audio",
    "/api/recordings/1%2F..%2F..%2Fetc%2Fpasswd/audio",
    "/..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/../../../../etc/passwd",
])
def test_no_client_path_reaches_the_file_system(client, attempt):
    response = client.get(attempt)
    assert response.status_code in (404, 422)
    assert b"root:" not in response.content


def test_bad_uploads_answer_one_line(client, tmp_path):
    broken = tmp_path / "broken.musicxml"
    broken.write_text("<score-partwise><part")
    response = _upload(client, broken)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("broken.musicxml: not a readable score") and "\n" not in error
    assert str(tmp_path) not in error  # the server's temporary paths stay private
    unknown = tmp_path / "theme.docx"
    unknown.write_bytes(b"PK\x03\x04")
    assert _upload(client, unknown).status_code == 400
    assert client.post("/api/query", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/api/query", json={"format": "abc"}).status_code == 400
    assert _upload(client, broken, measures="x-y").status_code == 400


def test_oversized_and_huge_themes_are_refused(indexed, tmp_path):
    big = tmp_path / "big.musicxml"
    big.write_bytes(b"<note>" * 300_000)  # 1.8 MB
    with TestClient(_app(indexed, max_upload_bytes=2**20)) as small:
        assert _upload(small, big).status_code == 413
    with TestClient(_app(indexed)) as client:
        response = _upload(client, big)  # under 5 MB but 300,000 notes: refused before parsing
        assert response.status_code == 422 and "too many for a theme" in response.json()["error"]
        import mido

        notes = [m for i in range(20_000) for m in (mido.Message("note_on", note=60 + i % 12, time=0),
                                                     mido.Message("note_off", note=60 + i % 12, time=10))]
        midi = mido.MidiFile()
        midi.tracks.append(mido.MidiTrack(notes))
        midi.save(tmp_path / "many.mid")
        response = _upload(client, tmp_path / "many.mid")
        assert response.status_code == 422 and "20000 notes" in response.json()["error"]


def test_a_slow_query_does_not_block_other_requests(indexed, haydn_theme, monkeypatch):
    import sys

    module = sys.modules["retrieval.query"]  # the package re-exports the function under the module's name
    real = module.query

    def slow(*args, **kwargs):
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "query", slow)
    app = _app(indexed, workers=2)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            finished = {}

            async def timed(name, request):
                response = await request
                finished[name] = time.perf_counter()
                return response

            data = haydn_theme.read_bytes()
            query = timed("query", http.post("/api/query", files={"theme": ("h.musicxml", data)}))
            status = timed("status", http.get("/api/status"))
            q, s = await asyncio.gather(query, status)
            return q, s, finished

    q, s, finished = asyncio.run(scenario())
    assert q.status_code == 200 and s.status_code == 200
    assert finished["status"] < finished["query"] - 1.0


def test_the_server_sees_a_new_checkpoint(indexed, rendered_dir, tmp_path, haydn_theme):
    from indexer.build import index_collection

    db = tmp_path / "index.db"
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "mozart_k155.wav").symlink_to(rendered_dir / "mozart_k155.wav")
    index_collection(audio, db, progress=False)
    app = create_app(lambda: IndexStore.open(db, readonly=True),
                     version=lambda: Path(f"{db}.faiss").stat().st_mtime_ns)
    with TestClient(app) as client:
        assert len(client.get("/api/recordings").json()) == 1
        (audio / "haydn_op74.wav").symlink_to(rendered_dir / "haydn_op74.wav")
        index_collection(audio, db, progress=False)
        assert len(client.get("/api/recordings").json()) == 2
        assert _upload(client, haydn_theme).json()["matches"][0]["path"].endswith("haydn_op74.wav")


# -- a real browser ------------------------------------------------------------------------------------------


@pytest.fixture
def served(indexed):
    import uvicorn

    config = uvicorn.Config(_app(indexed), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (the README's test command does)")
def test_the_page_finds_a_theme_in_a_real_browser(served, haydn_theme, tmp_path):
    import os

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(served + "/")
        page.set_input_files("#theme-file", str(haydn_theme))
        page.wait_for_selector("#notation svg", timeout=60_000)  # the theme as notation before searching
        page.click("#search-button")
        page.wait_for_selector("#result-rows tr", timeout=120_000)
        first = page.locator("#result-rows tr").first
        assert "haydn_op74.wav" in first.locator(".recording").inner_text()
        span = first.locator(".span").inner_text()
        start = float(span.split("–")[0].split(":")[1])
        assert 10.0 < start < 14.0
        src = first.locator("audio").get_attribute("src")
        assert "#t=" in src
        status = page.evaluate(
            "async (src) => (await fetch(src.split('#')[0], {headers: {Range: 'bytes=0-1023'}})).status", src)
        assert status == 206
        page.wait_for_selector("#plot-figure:not([hidden])")
        page.wait_for_function("() => { const img = document.getElementById('plot'); "
                               "return img.complete && img.naturalWidth > 0; }", timeout=60_000)
        if os.environ.get("SCREENSHOT"):
            page.screenshot(path=os.environ["SCREENSHOT"], full_page=True)
        page.goto(served + "/#collection")
        page.wait_for_selector("#recording-rows tr")
        assert page.locator("#recording-rows tr").count() == 5
        browser.close()


def test_notation_from_several_threads_at_once(haydn_theme):
    from concurrent.futures import ThreadPoolExecutor

    from retrieval.web.notation import notation_svg

    with ThreadPoolExecutor(3) as pool:
        svgs = list(pool.map(lambda _: notation_svg(haydn_theme), range(3)))
    assert all(svg.startswith("<svg") for svg in svgs)


def test_an_index_without_vectors_answers_one_line(tmp_path, haydn_theme):
    from models.retrieval_features import FeatureSettings

    store = IndexStore.create(tmp_path / "empty.db", FeatureSettings())
    store.close()
    with TestClient(_app(tmp_path / "empty.db")) as client:
        response = _upload(client, haydn_theme)
    assert response.status_code == 400 and "\n" not in response.json()["error"]


def test_candidates_option_is_passed_and_checked(client, haydn_theme):
    """One candidate re-ranked: the best match has no other score to have a margin over."""
    alone = _upload(client, haydn_theme, top=1, candidates=1).json()["matches"][0]
    every = _upload(client, haydn_theme, top=1, candidates=1000).json()["matches"][0]
    assert alone["path"] == every["path"] and alone["score"] == every["score"]
    assert alone["margin"] is None and every["margin"] > 0.05
    bad = _upload(client, haydn_theme, candidates="many")
    assert bad.status_code == 400 and "candidates" in bad.json()["error"]
