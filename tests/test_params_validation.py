"""params.yaml is checked when it is parsed: every shipped file loads under every align.method, and each bad
`trainer:` setting (a key no TRL config of the stage takes, one the stage sets itself, an enum typo, a value out of
the range TRL never checks) is refused at load with the file, the dotted key and the rule on one line."""

from __future__ import annotations

import json
from typing import get_args

import pytest
import yaml

from tasks.common import params as params_module
from tasks.common.params import (
    ALIGN_CONFIGS,
    ONLINE_CONFIGS,
    AlignMethod,
    ParamsError,
    deep_merge,
    load_params,
    parse_params,
    trl_fields,
)
from tests.conftest import REPO

ROOT = yaml.safe_load((REPO / "params.yaml").read_text())
OVERLAYS = sorted([*REPO.glob("tests/params*.yaml"), *REPO.glob("examples/*/params*.yaml")])


def shipped(overlay) -> dict:
    return ROOT if overlay is None else deep_merge(ROOT, yaml.safe_load(overlay.read_text()))


@pytest.mark.parametrize("method", get_args(AlignMethod))
@pytest.mark.parametrize("overlay", [None, *OVERLAYS], ids=lambda p: "params.yaml" if p is None else
                         str(p.relative_to(REPO)))
def test_every_shipped_file_loads_under_every_method(overlay, method):
    """`dvc exp run -S align.method=M` (compare-methods) must not be refused for the shipped trainer sections."""
    assert OVERLAYS, "the tiny test overlay and examples/* are shipped params files"
    params = parse_params(deep_merge(shipped(overlay), {"align": {"method": method}}))
    assert params.align.method == method


def test_load_params_reads_the_root_file():
    assert load_params(REPO / "params.yaml").sft.trainer["learning_rate"] == 2.0e-4


def test_every_align_method_has_its_trl_config():
    assert set(ALIGN_CONFIGS) | set(ONLINE_CONFIGS) | {"ppo"} == set(get_args(AlignMethod))
    assert set(ALIGN_CONFIGS.values()) | set(ONLINE_CONFIGS.values()) <= set(trl_fields())


BAD = [  # (overrides, the dotted key, a fragment of the rule)
    ({"sft": {"trainer": {"learning_rate": -2e-4}}}, "sft.trainer.learning_rate", "must be a number > 0"),
    ({"sft": {"trainer": {"learning_rate": "2e-4"}}}, "sft.trainer.learning_rate", "write 2.0e-4"),
    ({"sft": {"trainer": {"num_train_epochs": 0}}}, "sft.trainer.num_train_epochs", "> 0"),
    ({"sft": {"trainer": {"learning_rat": 1e-4}}}, "sft.trainer.learning_rat", "did you mean learning_rate"),
    ({"sft": {"trainer": {"warmup_ratio": 0.1}}}, "sft.trainer.warmup_ratio", "not a SFTConfig field"),
    ({"sft": {"trainer": {"output_dir": "elsewhere"}}}, "sft.trainer.output_dir", "set by the stage"),
    ({"sft": {"trainer": {"lr_scheduler_type": "cosin"}}}, "sft.trainer.lr_scheduler_type", "must be one of"),
    ({"sft": {"trainer": {"eval_strategy": False}}}, "sft.trainer.eval_strategy", "quote it"),
    ({"sft": {"trainer": {"warmup_steps": -1}}}, "sft.trainer.warmup_steps", "≥ 0"),
    ({"sft": {"trainer": {"max_length": 0}}}, "sft.trainer.max_length", "integer ≥ 1 or null"),
    ({"sft": {"lora": {"lora_alpha": 0}}}, "sft.lora.lora_alpha", "greater than 0"),
    ({"train_reward": {"trainer": {"per_device_train_batch_size": 0}}},
     "train_reward.trainer.per_device_train_batch_size", "integer ≥ 1"),
    ({"train_reward": {"trainer": {"per_device_eval_batch_size": 2.5}}},
     "train_reward.trainer.per_device_eval_batch_size", "integer ≥ 1"),
    ({"train_reward": {"trainer": {"seed": 1}}}, "train_reward.trainer.seed", "set by the stage"),
    ({"align": {"trainer": {"gradient_accumulation_steps": 0}}}, "align.trainer.gradient_accumulation_steps",
     "integer ≥ 1"),
    ({"align": {"trainer": {"max_steps": 0}}}, "align.trainer.max_steps", "-1"),
    ({"align": {"trainer": {"adam_beta2": 1.0}}}, "align.trainer.adam_beta2", "[0, 1)"),
    ({"align": {"trainer": {"save_steps": 0}}}, "align.trainer.save_steps", "> 0"),
    ({"align": {"trainer": {"beta": 0.5}}}, "align.trainer.beta", "set by the stage (from align.*"),
    ({"align": {"method": "kto", "trainer": {"padding_free": True}}}, "align.trainer.padding_free",
     "not a KTOConfig field"),
    ({"align": {"beta": 0}}, "align.beta", "greater than 0"),
    ({"align": {"online": {"trainer": {"num_generations": 8}}}}, "align.online.trainer.num_generations",
     "set by the stage"),
    ({"align": {"method": "rloo", "online": {"trainer": {"scale_rewards": "group"}}}},
     "align.online.trainer.scale_rewards", "not a RLOOConfig field"),
    ({"align": {"method": "grpo", "online": {"trainer": {"temperature": 0.7}}}},
     "align.online.trainer.temperature", "set by the stage (from align.online.*"),
    ({"align": {"online": {"trainer": {"num_iterations": 0}}}}, "align.online.trainer.num_iterations", "≥ 1"),
    ({"validate": {"max_drop_fraction": 2}}, "validate.max_drop_fraction", "less than or equal to 1"),
    ({"align": {"method": "ppo", "init": "champion"}}, "align.init",
     "champion works with the DPO family and kto, not align.method 'ppo'"),
    ({"align": {"init": "champion", "method": "grpo"}}, "align.init", "set align.init: sft"),
]


@pytest.mark.parametrize(("overrides", "key", "rule"), BAD, ids=[key for _, key, _ in BAD])
def test_bad_setting_is_refused_at_load_naming_file_key_and_rule(tmp_path, overrides, key, rule):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(deep_merge(ROOT, overrides), sort_keys=False))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert rule in message


def test_what_the_configs_accept_is_accepted():
    params = parse_params(deep_merge(ROOT, {
        "sft": {"trainer": {"eval_steps": None, "max_steps": -1, "warmup_steps": 0, "max_length": None,
                            "lr_scheduler_type": "linear", "eval_strategy": "no", "max_grad_norm": 0}},
        "align": {"method": "grpo", "online": {"trainer": {"scale_rewards": "group", "num_iterations": 2}}},
    }))
    assert params.sft.trainer["eval_strategy"] == "no"
    assert parse_params(deep_merge(ROOT, {"align": {"method": "kto", "init": "champion"}})).align.init == "champion"


def test_every_problem_is_listed_on_one_line():
    raw = deep_merge(ROOT, {"sft": {"trainer": {"learning_rate": 0, "output_dir": "x"}}})
    with pytest.raises(ParamsError) as err:
        parse_params(raw, source="p.yaml")
    assert str(err.value) == ("p.yaml: sft.trainer.learning_rate: must be a number > 0 (got 0); "
                              "sft.trainer.output_dir: set by the stage (from paths.sft_checkpoints, seed); remove it")


def test_trl_fields_cache_matches_trl_and_is_rebuilt_when_corrupt(tmp_path, monkeypatch):
    import dataclasses

    from trl import SFTConfig

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    trl_fields.cache_clear()
    try:
        fresh = trl_fields()
        (cache,) = (tmp_path / "alignflow").glob("trl-fields-*.json")
        assert json.loads(cache.read_text()) == fresh
        assert set(fresh["SFTConfig"]) == {f.name for f in dataclasses.fields(SFTConfig)}
        assert "cosine" in fresh["SFTConfig"]["lr_scheduler_type"]
        cache.write_text("{not json")
        trl_fields.cache_clear()
        assert params_module.trl_fields() == fresh
        assert json.loads(cache.read_text()) == fresh
    finally:
        trl_fields.cache_clear()
