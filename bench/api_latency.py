"""A query through the HTTP API against the same library call, on the demo collection.

    python bench/api_latency.py [--runs 20] [--dir WORK_DIR]

Renders and indexes the demo collection (``cli.py demo``'s) if ``WORK_DIR`` holds none, starts the
app with uvicorn on a free loopback port, and times ``POST /api/query`` (multipart upload of the
demo theme, over real HTTP) and ``retrieval.query`` on the same theme file, alternating, after one
warm-up each. Prints p50/p95 of both and the difference of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2
import uvicorn

from db.store import IndexStore
from indexer.build import index_collection
from indexer.demo_collection import DEMO_THEME, render_demo_collection
from retrieval.query import query
from retrieval.theme import parse_corpus_work
from web.app import create_app


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "score_retrieval_api_bench")
    args = parser.parse_args(argv)
    db = args.dir / "index.db"
    if not db.exists():
        render_demo_collection(args.dir / "audio")
        index_collection(args.dir / "audio", db, progress=False)
    work, measures, part = DEMO_THEME
    theme = args.dir / "theme.musicxml"
    parse_corpus_work(work).measures(*measures).parts[part].write("musicxml", fp=theme)

    server = uvicorn.Server(uvicorn.Config(create_app(lambda: IndexStore.open(db, readonly=True)),
                                           host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/api/query"
    store = IndexStore.open(db, readonly=True)
    data = theme.read_bytes()
    api, library = [], []
    with httpx2.Client(timeout=60) as http:
        for i in range(args.runs + 1):
            t0 = time.perf_counter()
            response = http.post(url, files={"theme": (theme.name, data)}, data={"top": "10"})
            response.raise_for_status()
            t1 = time.perf_counter()
            query(store, theme, top=10)
            t2 = time.perf_counter()
            if i:  # the first round warms both up
                api.append(t1 - t0)
                library.append(t2 - t1)
    server.should_exit = True
    thread.join(timeout=10)
    store.close()
    print(f"demo collection, {args.runs} alternating runs (p50 / p95, ms):")
    print(f"  library call  {1000 * statistics.median(library):6.1f} / {1000 * _percentile(library, 0.95):6.1f}")
    print(f"  HTTP API      {1000 * statistics.median(api):6.1f} / {1000 * _percentile(api, 0.95):6.1f}"
          "   (upload, HTTP, JSON)")
    print(f"  API − library {1000 * (statistics.median(api) - statistics.median(library)):6.1f} ms at p50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
