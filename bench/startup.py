"""Start-up of the command line: ``--help`` and a plain query, this tree against another, side by side.

    python bench/startup.py --db INDEX.db --theme THEME.xml [--baseline OTHER_TREE] [--runs 5]

Times fresh processes (wall clock, what a user waits for): ``cli.py --help``, ``cli.py query
--help`` and ``cli.py query THEME --db INDEX.db``, alternating between this tree and
``--baseline`` (another checkout of the project, e.g. ``git worktree add /tmp/before COMMIT``)
so that both see the same machine load. Prints the median of ``--runs`` per command and tree and
their ratio; ``--json-out`` keeps them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def wall_seconds(tree: Path, args: list[str]) -> float:
    """Seconds a fresh ``python cli.py ARGS`` in ``tree`` takes to exit (it must succeed)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(tree / "cli.py"), *args], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True, help="an index to query (e.g. the demo's)")
    parser.add_argument("--theme", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare with")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    commands = {"--help": ["--help"], "query --help": ["query", "--help"],
                "query": ["query", str(args.theme.resolve()), "--db", str(args.db.resolve())]}
    trees = {"this tree": HERE} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    for tree in trees.values():  # warm-up: compiled numba caches and the page cache
        wall_seconds(tree, commands["query"])
    times: dict[str, dict[str, list[float]]] = {name: {c: [] for c in commands} for name in trees}
    for _ in range(args.runs):
        for command, cli_args in commands.items():
            for name, tree in trees.items():
                times[name][command].append(wall_seconds(tree, cli_args))
    medians = {name: {c: statistics.median(t) for c, t in per.items()} for name, per in times.items()}
    print(f"{'command':<14}" + "".join(f"{name:>12}" for name in trees) + ("       ratio" if args.baseline else ""))
    for command in commands:
        row = "".join(f"{medians[name][command]:>11.2f}s" for name in trees)
        ratio = f"{medians['this tree'][command] / medians['baseline'][command]:>12.2f}" if args.baseline else ""
        print(f"{command:<14}{row}{ratio}")
    if args.json_out:
        args.json_out.write_text(json.dumps({"runs": args.runs, "median_s": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
