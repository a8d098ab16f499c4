"""Quality signals of a labeller, computed from its judgments: an AI labeller's agreement with gold or human labels
and its position-bias rate are reported with every run (docs/methods.md, "Constitutional AI and RLAIF").

- agreement: of the pairs where both labellers express a preference (neither says exactly ½), the fraction where
  they prefer the same option. Ties are excluded, not counted as disagreement, and their number is reported.
- position-bias rate: fraction of pairs whose preferred option flips when the two options swap places.
- first-position rate: over both orders, how often the option shown first wins (½ = no position preference).
- label confidence: histogram of the soft label p(a better) in ten bins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _side(p: float) -> int:
    return (p > 0.5) - (p < 0.5)


def agreement(p: Sequence[float], q: Sequence[float]) -> tuple[float, int]:
    """(agreement, pairs compared) over the pairs where both labels prefer an option."""
    both = [(_side(a), _side(b)) for a, b in zip(p, q, strict=True) if _side(a) and _side(b)]
    if not both:
        return 0.0, 0
    return sum(a == b for a, b in both) / len(both), len(both)


def confidence_histogram(p: Sequence[float], bins: int = 10) -> list[dict[str, float]]:
    """Rows {bin_low, bin_high, count} over [0, 1]; p = 1 falls in the last bin."""
    counts = [0] * bins
    for x in p:
        counts[min(int(x * bins), bins - 1)] += 1
    return [{"bin_low": i / bins, "bin_high": (i + 1) / bins, "count": c} for i, c in enumerate(counts)]


def judge_signals(judgments: Sequence[dict[str, Any]], hard_threshold: float, prefix: str = "judge") -> dict[str, float]:
    """Position bias, disagreement, confidence and tie counts of one labeller's judgment records."""
    n = len(judgments)
    if n == 0:
        return {}
    p = [j["p_a"] for j in judgments]
    firsts = [x for j in judgments for x in (j["p_ab"], j["p_ba"])]
    return {
        f"{prefix}/pairs": n,
        f"{prefix}/position_bias_rate": sum(bool(j["position_flip"]) for j in judgments) / n,
        f"{prefix}/first_position_rate": sum(_side(x) > 0 for x in firsts) / len(firsts),
        f"{prefix}/mean_disagreement": sum(j["disagreement"] for j in judgments) / n,
        f"{prefix}/mean_confidence": sum(abs(x - 0.5) for x in p) / n,
        f"{prefix}/exact_ties": sum(1 for x in p if x == 0.5),
        f"{prefix}/below_threshold": sum(1 for x in p if abs(x - 0.5) <= hard_threshold),
    }
