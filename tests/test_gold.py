"""The default task's gold judge: VADER compound sentiment, one analyzer per process."""

from __future__ import annotations

import pytest

from tasks.common.gold import _analyzer, gold_scores


def test_gold_scores_sentiment_direction_and_range():
    pos, neg, neutral, empty = gold_scores(
        ["a wonderful , moving film : i loved it", "a terrible , boring mess", "the film is two hours", ""])
    assert 0.5 < pos <= 1.0 and -1.0 <= neg < -0.5
    assert neutral == 0.0 and empty == 0.0


def test_gold_scores_known_value():
    # VADER's published lexicon: "great" has valence 3.1, and compound = x / sqrt(x² + 15) for a lone word.
    assert gold_scores(["great"]) == [pytest.approx(3.1 / (3.1**2 + 15) ** 0.5, abs=1e-4)]


def test_one_analyzer_per_process():
    assert _analyzer() is _analyzer()
    assert gold_scores([]) == []
