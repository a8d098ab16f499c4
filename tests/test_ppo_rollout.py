"""PPO rollout tensors on the tiny model: padding and EOS truncation, log-probs that do not depend on the padding
or the batch, the reference = adapter disabled, gradients only through valid tokens."""

from __future__ import annotations

import pytest
import torch

from tasks.common.logprobs import pack, reference, token_logprobs


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from tasks.common.modeling import load_causal_lm, load_tokenizer

    return load_causal_lm(tiny_model_dir), load_tokenizer(tiny_model_dir)


def test_pack_pads_and_cuts_after_the_first_eos(tiny):
    _, tok = tiny
    eos, pad = tok.eos_token_id, tok.pad_token_id
    b = pack([[5, 6, 7], [8]], [[9, eos, 10, 11], [12, 13]], pad, eos)
    assert b.query.tolist() == [[5, 6, 7], [pad, pad, 8]] and b.query_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert b.response.tolist() == [[9, eos, pad, pad], [12, 13, pad, pad]]
    assert b.mask.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]] and b.has_eos.tolist() == [True, False]


def test_logprobs_do_not_depend_on_padding_or_batch(tiny):
    model, tok = tiny
    eos, pad = tok.eos_token_id, tok.pad_token_id
    queries, responses = [[10, 11, 12, 13], [14, 15]], [[20, 21, eos], [22, 23, 24, 25, 26]]
    together = token_logprobs(model, pack(queries, responses, pad, eos), temperature=0.7)
    for i in range(2):
        alone = token_logprobs(model, pack([queries[i]], [responses[i]], pad, eos), temperature=0.7)
        n = len(responses[i])
        torch.testing.assert_close(together[i, :n], alone[0, :n], atol=1e-5, rtol=1e-5)
        assert together[i, n:].abs().sum() == 0
    # the same numbers as a plain forward pass over the unpadded sequence, logits / temperature
    ids = torch.tensor([queries[1] + responses[1]])
    logits = model(input_ids=ids).logits[0, len(queries[1]) - 1 : -1] / 0.7
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(responses[1])[:, None]).squeeze(-1)
    torch.testing.assert_close(together[1, :5], expected, atol=1e-5, rtol=1e-5)


def test_reference_is_the_model_with_its_adapter_disabled(tiny, tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from tasks.common.modeling import load_causal_lm

    _, tok = tiny
    base = load_causal_lm(tiny_model_dir)
    policy = get_peft_model(load_causal_lm(tiny_model_dir), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    b = pack([[10, 11, 12]], [[20, 21, tok.eos_token_id]], tok.pad_token_id, tok.eos_token_id)
    with torch.no_grad():
        with reference(policy):
            ref = token_logprobs(policy, b, 1.0)
        moved = token_logprobs(policy, b, 1.0)
        torch.testing.assert_close(ref, token_logprobs(base, b, 1.0), atol=1e-5, rtol=1e-5)
    assert (moved - ref).abs().max() > 1e-3  # the adapter is back on after the block

    logp, entropy = token_logprobs(policy, b, 1.0, with_entropy=True)
    logp.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in policy.named_parameters() if "lora" in n)
    assert (entropy > 0).all()
