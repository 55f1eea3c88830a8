"""What an item is about, beside its wording: so that an eval item's content never reaches training through
another skill whose questions phrase the same content differently.

reasoning-gym's ``chain_sum`` asks "0 - 4 =" and ``basic_arithmetic`` asks "Calculate 0 - 4.": the exact
prompts differ, the content (the numbers and the answer) is the same. An item's *signature* is the numbers
in its question, in order, with its answer (case and spacing ignored); a question without numbers is
signed by its answer alone when the answer is long enough to say something (a word spelt backward), and is
not signed otherwise (a yes/no or a one-letter answer says nothing about content).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping


class ContentOverlapWarning(UserWarning):
    """Eval items were skipped because another skill's training rows have their content."""


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
MIN_ANSWER = 4  # characters: a shorter answer without numbers in its question signs nothing


def signature(question: str, answer: str) -> tuple | None:
    """The content of one item, or None when it cannot be told from the text."""
    numbers = tuple(_NUMBER.findall(question))
    said = " ".join(str(answer).split()).lower()
    if numbers:
        return numbers, said
    return ((), said) if len(said) >= MIN_ANSWER else None


def owners(rows: Iterable[Mapping]) -> dict[tuple, set[str]]:
    """``{signature: the skills whose rows have it}`` over rows with ``prompt``, ``completion`` and ``skills``."""
    out: dict[tuple, set[str]] = {}
    for r in rows:
        sig = signature(r["prompt"], r["completion"])
        if sig is not None:
            out.setdefault(sig, set()).update(r["skills"])
    return out


def taken_elsewhere(row: Mapping, signatures: Mapping[tuple, set[str]]) -> set[str]:
    """The other skills (not ``row``'s own) whose rows have ``row``'s content."""
    sig = signature(row["prompt"], row["completion"])
    return set() if sig is None else signatures.get(sig, set()) - set(row["skills"])
