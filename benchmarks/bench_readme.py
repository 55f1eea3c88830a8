"""Rewrite what the committed bench results make: the reports (``benchmarks/results/bench/<kind>.md`` and
``benchmarks/results/per_step/lm.md``) and the README's bench leaderboard.

    python benchmarks/bench_readme.py          # rewrite the reports and the block between the markers in README.md
    python benchmarks/bench_readme.py --check  # exit 1 when any of them is not what the results make

The numbers come from the rows each report's ``.json`` names (what ``teachgym bench`` last reported),
never from a hand-typed table; a row whose key is not its case's current key is said to be stale, with the
modules that changed; ``tests/test_benchmark_reports.py`` fails when a file disagrees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results" / "bench"


REPORTS = [(RESULTS, "simulated"), (RESULTS, "lm"), (ROOT / "benchmarks" / "results" / "per_step", "lm")]


def reports() -> dict[Path, str]:
    """Each committed bench report's file and the text its rows make."""
    from teachgym.bench_command import stored_report

    out = {}
    for folder, kind in REPORTS:
        text = stored_report(folder, kind, ROOT / "configs" / "bench")
        if text is not None:
            out[folder / f"{kind}.md"] = text
    return out


def block() -> str:
    """The leaderboard block the committed results make."""
    from teachgym.bench import load_challenges
    from teachgym.bench_command import protocol_of, report_staleness, reported_rows
    from teachgym.bench_report import readme_block

    boards = {kind: reported_rows(RESULTS, kind) for kind in ("simulated", "lm")}
    challenges = load_challenges(ROOT / "configs" / "bench")
    names = {"simulated": "Simulated twins", "lm": "LM student"}
    notes = [f"{names[k]}: {said}" for k, rows in boards.items() if rows
             and (said := report_staleness(rows, challenges, k == "simulated", RESULTS))]
    return readme_block(boards, "\n\n".join(notes), {k: protocol_of(rows or []) for k, rows in boards.items()})


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
    files = reports()
    differ = [str(f.relative_to(ROOT)) for f, t in files.items() if f.read_text() != t]
    if args.check:
        differ += ["README.md"] if old != new else []
        print("the bench reports and README.md's leaderboard are up to date" if not differ else
              f"these differ from what the results make: {', '.join(differ)}")
        return 1 if differ else 0
    for f, t in files.items():
        f.write_text(t)
    README.write_text(text.replace(old, new))
    print(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
