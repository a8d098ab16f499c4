"""Boilerplate: how often replies use the assistant's stock phrases, and how often they open the same way.

Judges and reward models reward the polite assistant register, so preference tuning can teach a policy template
phrases ("great question", "i hope this helps") that raise reward without adding content. Two signals:

- `boilerplate_rate`: the share of replies containing at least one phrase of a documented list
  (data/probes/boilerplate.txt, `params.evaluate.probes.boilerplate`); `top_phrases` names the culprits;
- `opening_share`: the share of replies that begin with the single most common opening of `words` words. It needs
  no list, so it also catches a template the list does not know (every reply starting "sure here is").

Matching is case-insensitive on normalised text (curly quotes → straight, runs of whitespace → one space), and a
phrase that starts or ends with a letter or digit must meet a word boundary there ("feel free to" does not match
"feel free tomorrow"). Rates are over replies, so the caller gives a Wilson interval (`proportion_ci`) on
`round(rate * n)` of n replies.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})


def normalise(text: str) -> str:
    """Lower case, straight quotes, single spaces: the form phrases and replies are compared in."""
    return " ".join(text.translate(_QUOTES).lower().split())


def load_phrases(path: str | Path) -> list[str]:
    """The normalised phrases of a list file; an error names the file and line of an empty or repeated phrase.

    `#` starts a comment; blank lines are skipped. A phrase without a letter or digit ("!!", "'") is an error:
    it would match nearly every reply, which is never what the author meant.
    """
    path = Path(path)
    phrases: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        content = raw.split("#", 1)[0]
        if not content.strip():
            continue
        phrase = normalise(content)
        if not re.search(r"\w", phrase):
            raise ValueError(f"{path}:{lineno}: empty phrase {raw.strip()!r} (no letter or digit)")
        if phrase in first_line:
            raise ValueError(f"{path}:{lineno}: duplicate phrase {phrase!r} (first on line {first_line[phrase]})")
        first_line[phrase] = lineno
        phrases.append(phrase)
    if not phrases:
        raise ValueError(f"{path}: no phrases")
    return phrases


@functools.lru_cache(maxsize=8)
def _patterns(phrases: tuple[str, ...]) -> list[tuple[str, re.Pattern[str]]]:
    out = []
    for p in phrases:
        p = normalise(p)
        left = r"(?<!\w)" if re.match(r"\w", p) else ""
        right = r"(?!\w)" if re.search(r"\w$", p) else ""
        out.append((p, re.compile(left + re.escape(p) + right)))
    return out


def boilerplate_hits(text: str, phrases: Sequence[str]) -> list[str]:
    """The phrases (normalised, in list order) that occur in `text`."""
    norm = normalise(text)
    return [p for p, pattern in _patterns(tuple(phrases)) if pattern.search(norm)]


def boilerplate_rate(texts: Sequence[str], phrases: Sequence[str]) -> float:
    """Share of replies with at least one phrase (NaN for no replies)."""
    if not texts:
        return math.nan
    return sum(1 for t in texts if boilerplate_hits(t, phrases)) / len(texts)


def top_phrases(texts: Sequence[str], phrases: Sequence[str], n: int = 5) -> list[tuple[str, int]]:
    """The n phrases found in the most replies, with the number of replies (each reply counts a phrase once);
    phrases never found are left out; ties in list order."""
    counts = Counter(p for t in texts for p in boilerplate_hits(t, phrases))
    order = {p: i for i, (p, _) in enumerate(_patterns(tuple(phrases)))}
    return sorted(counts.items(), key=lambda kv: (-kv[1], order[kv[0]]))[:n]


def opening_share(texts: Sequence[str], words: int = 3) -> float:
    """Share of replies that begin with the most common opening of `words` words (NaN for no replies).

    Words are lower-cased runs of letters, digits and apostrophes, so punctuation does not split a template
    ("Sure! Here is" = "sure, here is"). A reply shorter than `words` words has no opening: it counts in the
    denominator, never in the numerator. Worked example, words=2: ["Sure, here it is", "sure here we go",
    "No.", "Well here"] → openings (sure here), (sure here), none, (well here) → 2 / 4 = 0.5.
    """
    if not texts:
        return math.nan
    openings = Counter()
    for t in texts:
        tokens = re.findall(r"[\w']+", t.translate(_QUOTES).lower())
        if len(tokens) >= words:
            openings[tuple(tokens[:words])] += 1
    return openings.most_common(1)[0][1] / len(texts) if openings else 0.0
