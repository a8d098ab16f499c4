"""The default task's gold judge: VADER compound sentiment of the continuation (docs/methods.md, "The default task").

VADER (Hutto & Gilbert 2014) is a published lexicon-and-rules sentiment model; its compound score lies in
[-1, 1]. It stands in for the human raters of the DPO paper's IMDb experiment (which used a sentiment
classifier): collect_preferences labels sampled pairs with it and evaluate reports it as ground truth. Only the
continuation is scored, never the prompt, so a policy cannot gain reward from text it did not write.

`gold_preference` is the one rule that turns two gold scores into a preference: the gold judge's verdicts, the
`gold_label` of a preference row, the agreement of the AI judge and of human labellers with gold, and evaluate's
judge calibration all call it, so "which side does gold prefer, and what is a tie" cannot drift between them.
"""

from __future__ import annotations

import functools

LABELLER = "vader"


@functools.lru_cache(maxsize=1)
def _analyzer():
    """One analyzer per process: building it parses the lexicon (~10 ms), scoring is ~0.1 ms per text."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def gold_scores(texts: list[str]) -> list[float]:
    """VADER compound sentiment in [-1, 1] of each text (an empty text scores 0.0)."""
    analyzer = _analyzer()
    return [float(analyzer.polarity_scores(t)["compound"]) for t in texts]


def gold_preference(first: float, second: float) -> float:
    """p(first better) by the gold rule: 1.0 when the first scores higher, 0.0 when lower, 0.5 on an exact tie
    (hard labels: the gold judge has no confidence, only an order; ties carry no direction and are kept as ½)."""
    return 0.5 if first == second else float(first > second)
