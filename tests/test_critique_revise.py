"""critique_revise (SL-CAI) on the tiny model: pass-through at rounds 0; revisions under known principles, mixed at
the asked ratio and validated, deterministic under a seed; boilerplate stripping; errors that name the bad entry/row.

The tiny model's word-level vocabulary makes its critiques and revisions strings of random words; the tests check
the bookkeeping around them, not their quality.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tasks.common.io import read_json, read_jsonl, write_jsonl
from tests.conftest import copy_migrated_mlflow_db
from tests.test_collect_preferences import build_upstream

N_HELPFUL = 24
ADJ = ["great", "good", "wonderful", "brilliant", "lovely", "charming", "superb", "moving"]


def write_helpful(root: Path, n: int = N_HELPFUL) -> Path:
    """data/validated/sft.jsonl: helpful demonstrations in the validated form, in the tiny tokenizer's words."""
    rows = [{"id": f"sft-{i}", "prompt": [{"role": "user", "content": f"continue this review : the film {i} was"}],
             "completion": [{"role": "assistant", "content": f"{ADJ[i % 8]} and the cast was {ADJ[(i + 3) % 8]} ."}]}
            for i in range(n)]
    path = root / "data" / "validated" / "sft.jsonl"
    write_jsonl(path, rows)
    return path


@pytest.fixture
def cai_project(project, tiny_model_dir):
    """models/base, models/sft (a chain with no adapters: the base through the chain file), validated data."""
    build_upstream(project, tiny_model_dir, sft_adapter=False)
    write_helpful(project)
    return project


def _params(**cfg):
    from tasks.common.params import load_params

    params = load_params()
    defaults = {"rounds": 2, "max_prompts": 8, "revision_ratio": 0.5, "batch_size": 8}
    for key, value in (defaults | cfg).items():
        setattr(params.critique_revise, key, value)
    params.critique_revise.generation.max_new_tokens = 8
    return params


def _outputs() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(Path("data/cai").iterdir())}


def test_rounds_zero_passes_the_sft_data_through_without_a_model(project):
    from tasks.critique_revise import run_critique_revise

    copy_migrated_mlflow_db(project)
    source = write_helpful(project)  # no models/ at all: loading one would fail
    metrics = run_critique_revise(_params(rounds=0))
    assert _outputs() == {"sft.jsonl": source.read_text()}
    assert metrics["cai/revisions"] == 0 and metrics["cai/sft_rows"] == metrics["cai/helpful_rows"] == N_HELPFUL
    assert read_json("metrics/critique_revise.json") == metrics


def test_two_rounds_revise_under_known_principles_mix_at_the_ratio_and_repeat_exactly(cai_project):
    from tasks.common.constitution import load_constitution
    from tasks.common.produced_checks import check_revisions
    from tasks.critique_revise import run_critique_revise

    params = _params(model="models/sft")  # a stage output dir (chain file) rather than the plain base dir
    metrics = run_critique_revise(params)

    revise_names = {p.name for p in load_constitution("data/constitution.yaml").for_use("revise")}
    revisions = read_jsonl("data/cai/revisions.jsonl")
    prompts = {p["id"]: p["prompt"] for p in read_jsonl("data/validated/prompts_train.jsonl")}
    assert metrics["cai/prompts"] == 8 and metrics["cai/rounds"] == 2
    assert metrics["cai/revisions"] == len(revisions) > 0
    assert len(revisions) + metrics["cai/dropped_empty"] + metrics["cai/dropped_unchanged"] == 8
    for r in revisions:
        assert r["prompt"] == prompts[r["id"]] and r["initial"].strip()
        assert len(r["rounds"]) == 2
        principles = [x["principle"] for x in r["rounds"]]
        assert set(principles) <= revise_names and len(set(principles)) == 2  # fresh principle each round
        assert all(x["critique"].strip() and x["revision"].strip() for x in r["rounds"])
        assert r["final"] == r["rounds"][-1]["revision"] != r["initial"]
    assert check_revisions(revisions, sorted(revise_names), 2, "revisions.jsonl") == []

    # ratio 0.5: every revision plus as many helpful rows; revisions answer their prompts with the final text
    sft = read_jsonl("data/cai/sft.jsonl")
    revised = [row for row in sft if row["id"].startswith("cai-")]
    helpful = {row["id"]: row for row in read_jsonl("data/validated/sft.jsonl")}
    assert len(revised) == len(revisions) == len(sft) - len(revised)
    assert metrics["cai/revision_share"] == 0.5 and metrics["cai/sft_rows"] == len(sft)
    for row, r in zip(revised, revisions, strict=True):
        assert row == {"id": f"cai-{r['id']}", "prompt": r["prompt"],
                       "completion": [{"role": "assistant", "content": r["final"]}]}
    assert all(helpful[row["id"]] == row for row in sft if not row["id"].startswith("cai-"))

    saved = read_json("metrics/critique_revise.json")
    assert saved == metrics and saved["cai/gen_tokens_per_s"] > 0 and saved["cai/mean_final_chars"] > 0
    assert list(Path("mlartifacts").rglob("sample_revisions.json"))

    first = _outputs()
    run_critique_revise(_params(model="models/sft"))
    assert _outputs() == first  # same seed, same files


def test_mix_honours_the_revision_ratio():
    from tasks.critique_revise import mix

    revisions = [{"id": f"p{i}", "prompt": [], "final": f"r{i}"} for i in range(4)]
    helpful = [{"id": f"h{i}"} for i in range(30)]

    def share(rows):
        return sum(r["id"].startswith("cai-") for r in rows), len(rows)

    assert share(mix(revisions, helpful, 0.25, seed=1)) == (4, 16)  # 4 · 0.75 / 0.25 = 12 helpful rows
    assert share(mix(revisions, helpful, 1.0, seed=1)) == (4, 4)
    assert share(mix(revisions, helpful, 0.0, seed=1)) == (0, 30)
    assert share(mix(revisions, helpful, 0.05, seed=1)) == (4, 34)  # 76 wanted: capped at all helpful rows
    picked = mix(revisions, helpful, 0.25, seed=1)[4:]
    assert picked == mix(revisions, helpful, 0.25, seed=1)[4:] != mix(revisions, helpful, 0.25, seed=2)[4:]
    assert [h["id"] for h in picked] == sorted((h["id"] for h in picked), key=lambda s: int(s[1:]))  # file order


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Sure, here is a revised response: The film is a joy.", "The film is a joy."),
        ("Sure! Here's a revised version of the continuation that is more positive:\n\nA joy.", "A joy."),
        ("Of course, here's my critique:\n\nIt is too negative.", "It is too negative."),
        ("I have revised the response as follows:\nThe cast shines.", "The cast shines."),
        ("**Revised response:** The acting is superb.", "The acting is superb."),
        ("## Revision\nThe film is lovely.", "The film is lovely."),
        ("Critique: The response complains about the pacing.", "The response complains about the pacing."),
        ('Revision: "The film is lovely."', "The film is lovely."),
        ("\u201cA warm and funny film.\u201d", "A warm and funny film."),
        ("The film is great.\n\nI hope this helps!", "The film is great."),
        ("The film is great.\n\nThis revised version keeps the topic and length.", "The film is great."),
        ("sure , here is a revised response : great film", "great film"),  # the tiny tokenizer's spacing
        # SmolLM2-135M: an intro after chatter, repeated; the text after the last one is the answer
        ("It drags. Here's a revised continuation:\n\nIt drags. Here's a revised continuation:\n\nA joy.", "A joy."),
        ("The film is long. Here is a revised continuation:", "The film is long."),  # ran out of tokens
        ("Sure.", ""),  # nothing but boilerplate: an empty revision, dropped by the stage
        # not boilerplate: kept as written
        ("Certainly the best film of the year.", "Certainly the best film of the year."),
        ("Here is what I loved: the acting.", "Here is what I loved: the acting."),
        ('"Gripping" and "tender" are the words for it.', '"Gripping" and "tender" are the words for it.'),
        ("The response is fine. I hope this helps the film.", "The response is fine. I hope this helps the film."),
        ("  The ending moved me.  ", "The ending moved me."),
    ],
)
def test_strip_boilerplate(raw, clean):
    from tasks.critique.cai_text import strip_boilerplate

    assert strip_boilerplate(raw) == clean


def test_prompts_follow_the_critique_then_revision_format():
    from tasks.common.constitution import Principle
    from tasks.critique.cai_text import REVISION_ONLY, critique_messages, revision_messages

    p = Principle(name="praise", comparison="c?", critique="Say what is wrong.", revision="Rewrite it.")
    prompt = [{"role": "user", "content": "Continue this movie review:\n\nthe film"}]
    msgs = revision_messages(prompt, "was dull", p, "it is negative")
    assert msgs[:3] == critique_messages(prompt, "was dull", p)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[2]["content"] == "Critique Request: Say what is wrong."
    assert msgs[4]["content"] == f"Revision Request: Rewrite it. {REVISION_ONLY}"


def test_bad_constitution_is_a_stage_error_naming_file_and_entry(cai_project):
    from tasks.common.stage import StageError
    from tasks.critique_revise import run_critique_revise

    text = Path("data/constitution.yaml").read_text()
    broken = re.sub(r"(\n  - name: praise\n(?:    .*\n)*?)    revision: [^\n]*\n", r"\1", text, count=1)
    assert broken != text
    Path("data/constitution.yaml").write_text(broken)
    with pytest.raises(StageError, match=r"data/constitution.yaml[\s\S]*principles\[1\] \(name: 'praise'\)\.revision"):
        run_critique_revise(_params(rounds=1))
    assert not Path("data/cai").exists()


def test_missing_model_is_a_stage_error(cai_project):
    from tasks.common.stage import StageError
    from tasks.critique_revise import run_critique_revise

    with pytest.raises(StageError, match="critique_revise.model: models/nowhere"):
        run_critique_revise(_params(model="models/nowhere"))


def test_output_failing_the_sft_suite_keeps_the_previous_data(cai_project):
    from tasks.common.stage import StageError
    from tasks.critique_revise import run_critique_revise

    run_critique_revise(_params(rounds=0))
    before = _outputs()
    params = _params(rounds=1, max_prompts=4)
    params.validate_params.max_chars = 5  # every row is longer
    with pytest.raises(StageError, match=r"sft suite[\s\S]*\n  data/cai/sft\.jsonl:1: field '\w+': max_chars"):
        run_critique_revise(params)
    assert _outputs() == before


def test_revisions_suite_names_the_bad_rows():
    from tasks.common.produced_checks import check_revisions

    def record(i, rounds, final=None):
        return {"id": f"p{i}", "prompt": [], "initial": "x",
                "rounds": [{"principle": p, "critique": c, "revision": v} for p, c, v in rounds],
                "final": rounds[-1][2] if final is None and rounds else final}

    rows = [
        record(0, [("praise", "too negative", "a joy"), ("positivity", "fine", "a real joy")]),
        record(1, [("praise", "  ", "a joy")]),  # empty critique
        record(2, [("praise", "ok", "good"), ("kindness", "ok", "better")]),  # not a principle
        record(3, [("praise", "ok", "")], final=""),  # empty revision and final
        record(4, [("praise", "ok", "good")] * 3),  # more rounds than asked
        record(5, [], final="text"),  # no rounds at all
    ]
    issues = check_revisions(rows, ["praise", "positivity"], 2, "data/cai/revisions.jsonl")
    found = {(i.row, i.field, i.rule) for i in issues}
    assert found == {
        (2, "rounds[0].critique", "empty"),
        (3, "rounds[1].principle", "unknown_principle"),
        (4, "rounds[0].revision", "empty"),
        (4, "final", "empty"),
        (5, "rounds", "rounds"),
        (6, "rounds", "rounds"),
    }
    assert str(issues[0]).startswith("data/cai/revisions.jsonl:2: field 'rounds[0].critique': empty")
    assert "'kindness' is not a revise principle" in next(str(i) for i in issues if i.row == 3)
