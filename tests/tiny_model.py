"""A tiny Llama and word-level tokenizer, built offline in about a second, saved like a real model.

Stages load it by path exactly as they load SmolLM2 (prepare_model's `source:` is a local directory), so the
tests exercise the real code paths. The chat template is ChatML, as in SmolLM2.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]

WORDS = """
the a an and or but of to in on at for with from by is was are were be been it this that these those i you he she
we they my your his her our their film movie review story plot acting actor actress director scene scenes ending
script music score camera shot shots pacing character characters cast performance performances great good bad
terrible wonderful awful brilliant boring beautiful fun funny sad dull slow fast best worst love loved hate hated
enjoy enjoyed like liked not very really quite too so more most less little much many time minutes hours hour
first last end start watch watched saw see seen went theater night day friend friends brother sister family
continue continue this user assistant system . , ! ? ' " : ; - ( ) year years old new young two three one
drama comedy thriller horror romance western mystery war city town house lighthouse keeper sunday rainy afternoon
delightful charming tedious clumsy stunning moving heartfelt lovely mess disappointing excellent superb amazing
nothing something everything who which what when where how why as if then than there here up down out over
hello world yes no maybe x word positive negative happy joy bright warm cold dark
b better response answer answers option options principle human conversation consider following critique
revision revise revised rewrite sure explain reasoning because kind harmful helpful honest
""".split()


def build_tiny_model(out_dir: str | Path, hidden_size: int = 32, layers: int = 2, seed: int = 0,
                     initializer_range: float = 0.02) -> Path:
    """Write a random tiny LlamaForCausalLM + tokenizer (with chat template and distinct pad/eos) to out_dir."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    vocab = {tok: i for i, tok in enumerate(SPECIAL + sorted(set(WORDS)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=initializer_range,  # larger: logits that a LoRA can move (RL tests)
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    import sys

    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-model"))
