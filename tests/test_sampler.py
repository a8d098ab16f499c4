"""The inverse-CDF sampler behind `generate` draws from the same distribution transformers' sampling mode does."""

from __future__ import annotations

import math

import pytest


def test_inverse_cdf_draws_match_the_probabilities():
    import torch

    from tasks.common.sampler import InverseCdfSampling

    torch.manual_seed(0)
    probs = torch.tensor([0.05, 0.0, 0.15, 0.3, 0.5])
    n = 40_000
    scores = probs.log().expand(n, -1).contiguous()  # log 0 = −inf: that token must never come out
    out = InverseCdfSampling()(None, scores)
    assert torch.isfinite(out).sum(dim=1).eq(1).all()  # one finite score per row: greedy's argmax is the draw
    counts = torch.bincount(out.argmax(dim=1), minlength=5).double()
    assert counts[1] == 0
    expected = probs.double() * n
    keep = expected > 0
    chi2 = float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    assert chi2 < 18.5  # χ² with 3 degrees of freedom: p ≈ 0.0003


@pytest.mark.parametrize(("temperature", "top_p", "top_k"), [(0.7, 1.0, 0), (1.0, 0.6, 0), (1.0, 1.0, 2)])
def test_warpers_then_draw_match_transformers_distribution(temperature, top_p, top_k):
    """Temperature, top-k, top-p as transformers' sampling mode applies them: the drawn tokens' frequencies match
    softmax of the warped scores."""
    import torch
    from transformers import LogitsProcessorList

    from tasks.common.sampler import sampling_processors

    torch.manual_seed(1)
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    n = 40_000
    procs = sampling_processors(temperature, top_p, top_k)
    warped = LogitsProcessorList(procs[:-1])(None, logits.expand(1, -1).clone())
    target = torch.softmax(warped[0].double(), -1)
    out = procs(None, logits.expand(n, -1).clone())
    counts = torch.bincount(out.argmax(dim=1), minlength=5).double() / n
    assert counts[target == 0].sum() == 0
    if top_k or top_p < 1:
        assert (target == 0).any()  # the truncation really removed tokens
    for got, want in zip(counts.tolist(), target.tolist(), strict=True):
        assert math.isclose(got, want, abs_tol=4 * math.sqrt(want * (1 - want) / n) + 1e-9)


def test_generate_samples_reproducibly_and_by_seed(tiny_model_dir):
    from tasks.common.modeling import generate, load_causal_lm, load_tokenizer

    model, tok = load_causal_lm(tiny_model_dir), load_tokenizer(tiny_model_dir)
    prompts = [[{"role": "user", "content": "a better answer"}], [{"role": "user", "content": "explain"}]]

    def ids(seed):
        out = generate(model, tok, prompts, max_new_tokens=6, num_return_sequences=3, seed=seed)
        assert [len(p) for p in out] == [3, 3]
        return [[s["ids"] for s in p] for p in out]

    assert ids(0) == ids(0)
    assert ids(0) != ids(1)
    assert len({tuple(x) for p in ids(0) for x in p}) > 1  # K samples of one prompt differ
