"""What the benchmark scripts share when they report: rows printed and kept as JSON, CSV ground truths."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def keep_json(path: Path | None, value: Any) -> None:
    """Write ``value`` as JSON to ``path`` when one is given; called after every measured row, so
    an interrupted run keeps what it measured."""
    if path is not None:
        path.write_text(json.dumps(value, indent=2))


def record(table: list[dict], row: dict, line: str, path: Path | None) -> None:
    """Add ``row`` to ``table``, print its ``line`` of the Markdown table, and keep ``table`` in ``path``."""
    table.append(row)
    print(line, flush=True)
    keep_json(path, table)


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    """``rows`` as a CSV with a header of ``fields`` (a ground truth: ``query_id``, ``query``, …)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
