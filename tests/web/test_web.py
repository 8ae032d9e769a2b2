"""The HTTP API and the page: every endpoint, bad input, safety, and a real browser."""

from __future__ import annotations

import shutil
import threading
import time
from functools import partial
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from db.store import IndexStore
from retrieval.theme import parse_corpus_work
from web.app import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _app(indexed: Path, **options):
    return create_app(partial(IndexStore.open, indexed, readonly=True), **options)


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


def test_occurrences_note_times_and_an_audio_excerpt_by_api(client, haydn_theme, rendered_dir, tmp_path):
    import soundfile as sf

    answer = _upload(client, haydn_theme, top=3, occurrences="true").json()
    assert answer["occurrences"] and answer["occurrences"][0]["path"].endswith("haydn_op74.wav")
    notes = answer["matches"][0]["notes"]
    assert {"measure", "beat", "pitch", "time", "quarter"} == set(notes[0]) and notes[0]["measure"] == 9
    times, best = [n["time"] for n in notes], answer["matches"][0]
    assert times == sorted(times) and best["start"] <= times[0] < times[-1] <= best["end"]
    engraved = client.post("/api/notation", files={"theme": (haydn_theme.name, haydn_theme.read_bytes())}).json()
    quarters = {round(entry["quarter"], 3) for entry in engraved["timemap"]}
    assert {round(n["quarter"], 3) for n in notes} <= quarters  # every timed note has engraved notes to light
    bad = _upload(client, haydn_theme, occurrences="true", min_score="lots")
    assert bad.status_code == 400 and "min_score must be a number" in bad.json()["error"]
    audio, rate = sf.read(rendered_dir / "haydn_op74.wav")
    excerpt = tmp_path / "excerpt.flac"
    sf.write(excerpt, audio[int(11 * rate): int(19 * rate)], rate)
    answer = _upload(client, excerpt, top=3).json()
    assert answer["query_kind"] == "audio" and answer["matches"][0]["path"].endswith("haydn_op74.wav")
    assert answer["matches"][0]["start"] == pytest.approx(11.0, abs=0.3)
    garbage = tmp_path / "noise.mp3"
    garbage.write_bytes(b"not audio at all" * 10)
    refused = _upload(client, garbage)
    assert refused.status_code == 400 and refused.json()["error"].startswith("noise.mp3: not a decodable audio file")


def test_query_by_pasted_abc_and_notation(client):
    text = "X:1\nM:4/4\nL:1/4\nK:C\nC E G c|G E C2|]\n"
    answer = client.post("/api/query", json={"text": text, "format": "abc", "top": 2}).json()
    assert len(answer["matches"]) == 2
    svg = client.post("/api/notation", json={"text": text, "format": "abc"}).json()["svg"]
    assert svg.startswith("<svg")


def test_a_bad_pasted_theme_is_named_and_explained_in_plain_words(client):
    answer = client.post("/api/query", json={"text": "X:1\nK:C\nabc d|e f g\n", "format": "abc"})
    error = answer.json()["error"]
    assert answer.status_code == 400 and error.startswith("the pasted ABC text: not a readable score")
    assert "L:1/8" in error and "music21" not in error and "theme.abc" not in error


def test_api_docs_are_served_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/query" in schema["paths"] and schema["openapi"].startswith("3.0")  # what the bundled UI reads


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
        long = mido.MidiFile()  # two notes a million beats apart: music21 would fill the gap with measures
        long.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, time=0),
                                           mido.Message("note_off", note=60, time=480),
                                           mido.Message("note_on", note=62, time=480 * 10**6),
                                           mido.Message("note_off", note=62, time=480)]))
        long.save(tmp_path / "long.mid")
        response = _upload(client, tmp_path / "long.mid")
        assert response.status_code == 422 and "quarter notes, too long for a theme" in response.json()["error"]


def _faiss_mtime(db: Path) -> int:
    return Path(f"{db}.faiss").stat().st_mtime_ns


def test_the_server_sees_a_new_checkpoint(indexed, rendered_dir, tmp_path, haydn_theme):
    from indexer.build import index_collection

    db = tmp_path / "index.db"
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "mozart_k155.wav").symlink_to(rendered_dir / "mozart_k155.wav")
    index_collection(audio, db, progress=False)
    app = create_app(partial(IndexStore.open, db, readonly=True), version=partial(_faiss_mtime, db), workers=1)
    with TestClient(app) as client:
        assert len(client.get("/api/recordings").json()) == 1
        (audio / "haydn_op74.wav").symlink_to(rendered_dir / "haydn_op74.wav")
        index_collection(audio, db, progress=False)
        assert len(client.get("/api/recordings").json()) == 2
        assert _upload(client, haydn_theme).json()["matches"][0]["path"].endswith("haydn_op74.wav")


# -- a real browser ------------------------------------------------------------------------------------------


@pytest.fixture
def served(indexed, haydn_theme):
    import uvicorn

    config = uvicorn.Config(_app(indexed, example=haydn_theme), host="127.0.0.1", port=0, log_level="warning")
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


def _browser(playwright):
    """Headless Debian Chromium that may play audio without a click."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (the README's test command does)")
def test_the_page_finds_a_theme_in_a_real_browser(served):
    """The landing page says what is searched and offers the example; one click finds it; the player
    opens at the match and plays on past it; the API docs list the operations; at 420 px nothing
    runs off the side. SCREENSHOT=DIR keeps the wide and narrow pages as DIR/web.png, web_narrow.png."""
    import os

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(served + "/")
        page.wait_for_function("() => document.getElementById('collection-line').textContent.includes('5 recordings')")
        page.click("#example-button", timeout=30_000)  # the example theme, searched at once
        page.wait_for_selector("#result-rows tr", timeout=120_000)
        page.wait_for_selector("#notation svg", timeout=60_000)
        first = page.locator("#result-rows tr").first
        assert "haydn_op74.wav" in first.locator(".recording").inner_text()
        start, end = (float(t.split(":")[1]) for t in first.locator(".span").inner_text().split("–"))
        assert 10.0 < start < 14.0
        src = first.locator("audio").get_attribute("src")
        status = page.evaluate("async (src) => (await fetch(src, {headers: {Range: 'bytes=0-1023'}})).status", src)
        assert status == 206
        first.locator(".play-match").click()
        page.wait_for_function(f"() => document.querySelector('#result-rows audio').currentTime > {start + 0.3}",
                               timeout=30_000)
        # a listener can go on past the match: seek beyond its end and play again
        page.evaluate(f"() => {{ const a = document.querySelector('#result-rows audio'); a.pause(); "
                      f"a.currentTime = {end + 1.0}; a.play(); }}")
        page.wait_for_function(f"() => document.querySelector('#result-rows audio').currentTime > {end + 1.3}",
                               timeout=30_000)
        page.wait_for_selector("#plot-figure:not([hidden])")
        page.wait_for_function("() => { const img = document.getElementById('plot'); "
                               "return img.complete && img.naturalWidth > 0; }", timeout=60_000)
        if os.environ.get("SCREENSHOT"):
            page.screenshot(path=f"{os.environ['SCREENSHOT']}/web.png", full_page=True)
        page.set_viewport_size({"width": 420, "height": 900})
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        if os.environ.get("SCREENSHOT"):
            page.screenshot(path=f"{os.environ['SCREENSHOT']}/web_narrow.png", full_page=True)
        page.goto(served + "/#collection")
        page.wait_for_selector("#recording-rows tr")
        assert page.locator("#recording-rows tr").count() == 5
        assert page.evaluate("async () => (await fetch('/favicon.ico')).status") == 200
        page.set_viewport_size({"width": 1200, "height": 1000})
        page.goto(served + "/docs")
        page.wait_for_selector(".opblock-summary-path[data-path='/api/query']", timeout=30_000)
        assert "Unable to render" not in page.content()
        browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (the README's test command does)")
def test_occurrences_the_sounding_note_and_an_audio_query_in_a_real_browser(served, rendered_dir, tmp_path):
    """With "every occurrence" the places are listed; while the match plays, the lit note of the
    engraved theme moves on; a clicked note seeks the player to it; an uploaded excerpt is searched."""
    import soundfile as sf
    from playwright.sync_api import sync_playwright

    audio, rate = sf.read(rendered_dir / "haydn_op74.wav")
    excerpt = tmp_path / "excerpt.wav"
    sf.write(excerpt, audio[int(20 * rate): int(28 * rate)], rate)
    lit = "() => [...document.querySelectorAll('#notation .playing')].map((e) => e.id).join(' ')"
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(served + "/")
        page.check("#occurrences")
        page.click("#example-button", timeout=30_000)
        page.wait_for_selector("#occurrence-rows tr", timeout=120_000)
        assert "haydn_op74.wav" in page.locator("#occurrence-rows tr").first.inner_text()
        page.wait_for_selector("#notation svg g.note", timeout=60_000)
        page.wait_for_function("() => timemap !== null", timeout=60_000)
        page.locator("#result-rows .play-match").first.click()
        page.wait_for_function(f"() => ({lit})() !== ''", timeout=30_000)
        first = page.evaluate(lit)
        page.wait_for_function(f"(first) => ({lit})() !== '' && ({lit})() !== first", arg=first, timeout=30_000)
        # a clicked note: the player jumps to where it sounds
        page.evaluate("() => document.querySelector('#result-rows audio').pause()")
        last_note = page.locator("#notation svg g.note").last
        target = page.evaluate("(id) => { const q = timemap.find((e) => e.notes.includes(id)).quarter; "
                               "return firstMatch.match.notes.find((n) => Math.abs(n.quarter - q) < 1e-3).time; }",
                               last_note.get_attribute("id"))
        last_note.locator(".notehead").first.click()  # where a reader clicks: the note head
        player = "document.querySelector('#result-rows audio')"
        page.wait_for_function(f"() => Math.abs({player}.currentTime - {target}) < 0.5", timeout=30_000)
        # a recording as the query
        page.uncheck("#occurrences")
        page.set_input_files("#theme-file", str(excerpt))
        page.click("#search-button")
        page.wait_for_function("() => !document.getElementById('results').hidden && "
                               "document.querySelector('#result-rows tr .recording') && "
                               "document.getElementById('occurrence-list').hidden", timeout=120_000)
        assert "haydn_op74.wav" in page.locator("#result-rows tr").first.locator(".recording").inner_text()
        assert page.locator("#notation svg").count() == 0
        browser.close()


def test_notation_from_several_threads_at_once(haydn_theme):
    from concurrent.futures import ThreadPoolExecutor

    from web.notation import engrave_theme

    with ThreadPoolExecutor(3) as pool:
        svgs = list(pool.map(lambda _: engrave_theme(haydn_theme)["svg"], range(3)))
    assert all(svg.startswith("<svg") for svg in svgs)


def test_an_index_without_vectors_answers_one_line(tmp_path, haydn_theme):
    from models.retrieval_features import IndexSettings

    store = IndexStore.create(tmp_path / "empty.db", IndexSettings())
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


@pytest.mark.parametrize("body", [
    b"{bad", b"[]", b'"x"', b'{"text": "X:1", "format": "abc", "top": Infinity}',
    b'{"text": "X:1", "format": "abc", "top": [1]}', b'{"text": "X:1", "format": "abc", "candidates": 1e400}',
    b"[" * 100_000, b'{"text": ["x"], "format": "abc"}', b'{"text": "X:1", "format": {"a": 1}}',
])
def test_malformed_json_is_a_one_line_4xx(client, body):
    response = client.post("/api/query", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500 and "\n" not in response.json()["error"]


def test_ids_beyond_sqlite_integers_are_404(client):
    for path in (f"/api/recordings/{2**63}/audio", f"/api/recordings/{10**30}/audio", "/api/recordings/-1/audio"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"].startswith("no indexed recording")


def test_a_chunked_body_is_cut_at_the_limit(indexed):
    """The app reads a body without Content-Length chunk by chunk and stops at the limit."""
    import asyncio

    app = _app(indexed, max_upload_bytes=2**20)
    handed, sent = [], []

    async def receive() -> dict:
        handed.append(1)  # 1,000 × 64 kB = 64 MB offered
        return {"type": "http.request", "body": b"a" * 65536, "more_body": len(handed) < 1000}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/query", "raw_path": b"/api/query", "root_path": "", "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
             "server": ("test", 80), "client": ("test", 1)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413 and b"limit" in sent[1]["body"]
    assert len(handed) <= 2**20 // 65536 + 2  # read up to the limit, not the 64 MB


def test_an_mxl_that_inflates_past_the_limit_is_refused_before_parsing(indexed, tmp_path):
    import zipfile

    def mxl(name: str, size: int, lie: bool = False) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("META-INF/container.xml", '<container><rootfiles><rootfile full-path="a.xml"/>'
                                                       "</rootfiles></container>")
            archive.writestr("a.xml", "<score-partwise>" + " " * size + "</score-partwise>")
        if lie:  # the directory claims 100 bytes for a.xml: only inflating tells the truth
            data = bytearray(path.read_bytes())
            for header in (b"PK\x03\x04", b"PK\x01\x02"):
                at = data.rfind(header)
                offset = 22 if header == b"PK\x03\x04" else 24
                data[at + offset:at + offset + 4] = (100).to_bytes(4, "little")
            path.write_bytes(bytes(data))
        return path

    with TestClient(_app(indexed, max_upload_bytes=2**20)) as small:
        for bomb in (mxl("declared.mxl", 30 * 2**20), mxl("lying.mxl", 30 * 2**20, lie=True)):
            response = _upload(small, bomb)
            assert response.status_code in (400, 413), response.text
            assert "\n" not in response.json()["error"]
        assert _upload(small, mxl("declared.mxl", 30 * 2**20)).json()["error"].startswith("declared.mxl: inflates to")


def test_answers_hide_server_paths_unless_asked(indexed, haydn_theme):
    with TestClient(_app(indexed, workers=1)) as hidden:
        answer = _upload(hidden, haydn_theme, top=1).json()
        status = hidden.get("/api/status").json()
        listing = hidden.get("/api/recordings").json()
    folder = str(indexed.parent)
    assert answer["matches"][0]["path"] == "haydn_op74.wav"
    assert not any(folder in str(v) for v in (answer, status, listing))
    assert status["db"] == indexed.name and {r["path"] for r in listing} >= {"haydn_op74.wav"}
    assert len(answer["query_id"]) >= 20 and answer["query_id"].replace("-", "").replace("_", "").isalnum()
    with TestClient(_app(indexed, workers=1, show_paths=True)) as shown:
        assert shown.get("/api/recordings").json()[0]["path"].startswith("/")


def test_audio_is_served_only_while_it_is_the_file_indexed(rendered_dir, tmp_path):
    import os

    from indexer.build import index_collection

    audio = tmp_path / "audio"
    audio.mkdir()
    shutil.copy(rendered_dir / "mozart_k155.wav", audio / "a.wav")
    db = tmp_path / "index.db"
    index_collection(audio, db, progress=False)
    with TestClient(_app(db, workers=1)) as client:
        assert client.get("/api/recordings/1/audio").status_code == 200
        (audio / "a.wav").unlink()
        (audio / "a.wav").symlink_to("/etc/passwd")
        response = client.get("/api/recordings/1/audio")
        assert response.status_code == 410 and b"root:" not in response.content
        assert "changed since it was indexed" in response.json()["error"]
        (audio / "a.wav").unlink()
        shutil.copy(rendered_dir / "mozart_k155.wav", audio / "a.wav")
        os.utime(audio / "a.wav", (0, 0))  # same bytes, another mtime: not provably the file indexed
        assert client.get("/api/recordings/1/audio").status_code == 410
        (audio / "a.wav").unlink()
        assert client.get("/api/recordings/1/audio").status_code == 410


def test_an_index_being_rebuilt_is_a_one_line_503(indexed, tmp_path, haydn_theme):
    db = tmp_path / "index.db"
    shutil.copy(indexed, db)  # its vector file is gone, as while an index run replaces it
    with TestClient(_app(db, workers=1)) as client:
        response = _upload(client, haydn_theme)
    assert response.status_code == 503 and "\n" not in response.json()["error"]
    assert "vector file is missing" in response.json()["error"] and str(tmp_path) not in response.json()["error"]
