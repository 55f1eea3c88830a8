"""Rewrite the README's bench leaderboard from the committed bench results (``benchmarks/results/bench/``).

    python benchmarks/bench_readme.py          # rewrite the block between the markers in README.md
    python benchmarks/bench_readme.py --check  # exit 1 when README.md's block is not what the results make

The numbers come from the rows each report's ``.json`` names (what ``teachgym bench`` last reported),
never from a hand-typed table; ``tests/test_benchmark_reports.py`` fails when the two disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results" / "bench"


def block() -> str:
    """The leaderboard block the committed results make."""
    from teachgym.bench import reported_rows
    from teachgym.bench_report import readme_block
    from teachgym.provenance import code_hash

    return readme_block({kind: reported_rows(RESULTS, kind) for kind in ("simulated", "lm")}, code_hash(ROOT))


def current(text: str) -> str:
    """The block now in ``text`` (README's), markers included."""
    from teachgym.bench_report import README_BEGIN, README_END

    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < 0:
        raise SystemExit(f"README.md has no bench leaderboard markers ({README_BEGIN!r} ... {README_END!r})")
    return text[start: end + len(README_END)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    text = README.read_text()
    old, new = current(text), block()
    if args.check:
        print("README.md's bench leaderboard is up to date" if old == new else "README.md's bench leaderboard differs")
        return 0 if old == new else 1
    README.write_text(text.replace(old, new))
    print(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
