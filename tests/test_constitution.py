"""The constitution file: the shipped ones load, principles are drawn as Constitutional AI draws them, and every kind
of bad entry fails on load with a message that names the file, the entry (index and name) and the field, so a user
fixes the YAML without reading a traceback. No models."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from tasks.common.constitution import Constitution, ConstitutionError, load_constitution
from tests.conftest import REPO

SHIPPED = [REPO / "data/constitution.yaml", REPO / "examples/assistant/constitution.yaml"]


def _valid() -> dict:
    return {
        "name": "test-constitution",
        "description": "a small constitution for the tests",
        "principles": [
            {"name": "helpful", "comparison": "Which response is more helpful?", "critique": "Say what is missing.",
             "revision": "Rewrite it to be more helpful."},
            {"name": "honesty", "comparison": "Which response is more honest?", "critique": "Point out false claims.",
             "revision": "Rewrite it to be accurate."},
            {"name": "concise", "comparison": "Which response is more concise?", "critique": "Point out padding.",
             "revision": "Rewrite it concisely.", "applies_to": ["revise"]},
        ],
        "few_shot": [
            {"prompt": "What is 2 + 2?", "a": "4", "b": "5", "principle": "honesty", "answer": "A",
             "reasoning": "Option (A) is correct."},
        ],
    }


def _write(tmp_path: Path, raw: dict | str, name: str = "constitution.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _error(tmp_path: Path, raw: dict | str) -> tuple[str, Path]:
    path = _write(tmp_path, raw)
    with pytest.raises(ConstitutionError) as exc:
        load_constitution(path)
    message = str(exc.value)
    assert str(path) in message, f"the message must name the file: {message}"
    return message, path


# ---- the shipped constitutions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_constitutions_load(path):
    c = load_constitution(path)
    assert isinstance(c, Constitution) and c.name
    assert len(set(c.names)) == len(c.names)
    assert c.for_use("label") and c.for_use("revise")
    for shot in c.few_shot:
        assert c.get(shot.principle).name == shot.principle
        assert shot.answer in ("A", "B")
    for p in c.principles:
        assert p.comparison.strip() and p.critique.strip() and p.revision.strip()


def test_assistant_constitution_balances_harmless_and_helpful():
    """An all-safety constitution teaches refusal; the example's label draw must also reward helping."""
    c = load_constitution(REPO / "examples/assistant/constitution.yaml")
    labels = {p.name for p in c.for_use("label")}
    assert {"helpful", "harmless", "no-over-refusal", "not-preachy"} <= labels
    assert 8 <= len(c.principles) <= 12
    assert 2 <= len(c.few_shot) <= 3
    assert {s.answer for s in c.few_shot} == {"A", "B"}, "few-shot answers must not all sit in one position"


def test_applies_to_defaults_to_both_and_for_use_filters(tmp_path):
    c = load_constitution(_write(tmp_path, _valid()))
    assert c.get("helpful").applies_to == ("label", "revise")
    assert [p.name for p in c.for_use("label")] == ["helpful", "honesty"]
    assert [p.name for p in c.for_use("revise")] == ["helpful", "honesty", "concise"]
    with pytest.raises(KeyError, match="nope"):
        c.get("nope")


def test_text_is_stripped(tmp_path):
    raw = _valid()
    raw["principles"][0]["comparison"] = "  Which response is more helpful?\n"
    c = load_constitution(_write(tmp_path, raw))
    assert c.get("helpful").comparison == "Which response is more helpful?"


# ---- drawing principles -----------------------------------------------------------------------------------------


def test_draw_is_seeded():
    c = load_constitution(REPO / "examples/assistant/constitution.yaml")

    def draws(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [c.draw(rng, "label").name for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert len(set(draws(7))) > 1, "twenty draws from ten principles should not all be the same"
    assert set(draws(7)) <= {p.name for p in c.for_use("label")}
    assert "concise" not in draws(7) + draws(8), "a revise-only principle must never label"


def test_draw_with_exclude_gives_fresh_principles_until_exhausted(tmp_path):
    c = load_constitution(_write(tmp_path, _valid()))
    rng = random.Random(0)
    seen: set[str] = set()
    for _ in range(3):  # three revise principles: three rounds, each one new
        p = c.draw(rng, "revise", exclude=seen)
        assert p.name not in seen
        seen.add(p.name)
    assert seen == {"helpful", "honesty", "concise"}
    # exhausted: falls back to the whole pool instead of failing
    assert {c.draw(rng, "revise", exclude=seen).name for _ in range(30)} == seen
    # exclude only ever removes names of the pool for that use
    assert c.draw(random.Random(1), "label", exclude={"helpful", "concise"}).name == "honesty"


# ---- bad entries: the message names file, entry (index and name) and field ----------------------------------


def test_missing_revision(tmp_path):
    raw = _valid()
    del raw["principles"][1]["revision"]
    msg, _ = _error(tmp_path, raw)
    assert "principles[1] (name: 'honesty').revision" in msg
    assert "required" in msg.lower()


@pytest.mark.parametrize("blank", ["", "   ", "\n"])
def test_blank_comparison(tmp_path, blank):
    raw = _valid()
    raw["principles"][0]["comparison"] = blank
    msg, _ = _error(tmp_path, raw)
    assert "principles[0] (name: 'helpful').comparison" in msg


def test_duplicate_principle_names(tmp_path):
    raw = _valid()
    raw["principles"][2]["name"] = "helpful"
    msg, _ = _error(tmp_path, raw)
    assert "helpful" in msg
    assert "principles[2]" in msg, f"the message must say which entry repeats the name: {msg}"
    assert "unique" in msg or "repeat" in msg


def test_unknown_applies_to(tmp_path):
    raw = _valid()
    raw["principles"][1]["applies_to"] = ["label", "judge"]
    msg, _ = _error(tmp_path, raw)
    assert "principles[1] (name: 'honesty').applies_to[1]" in msg
    assert "'label'" in msg and "'revise'" in msg, "the message should list the allowed values"


def test_few_shot_unknown_principle(tmp_path):
    raw = _valid()
    raw["few_shot"][0]["principle"] = "kindness"
    msg, _ = _error(tmp_path, raw)
    assert "few_shot[0].principle" in msg
    assert "'kindness'" in msg
    assert "helpful" in msg and "honesty" in msg, "the message should list the principles there are"


@pytest.mark.parametrize("answer", ["C", "a", "both"])
def test_few_shot_answer_not_a_or_b(tmp_path, answer):
    raw = _valid()
    raw["few_shot"][0]["answer"] = answer
    msg, _ = _error(tmp_path, raw)
    assert "few_shot[0].answer" in msg
    assert "'A'" in msg and "'B'" in msg


def test_typo_key_in_principle(tmp_path):
    raw = _valid()
    p = raw["principles"][1]
    p["critque"] = p.pop("critique")
    msg, _ = _error(tmp_path, raw)
    assert "principles[1] (name: 'honesty').critque" in msg
    assert "extra" in msg.lower() or "not permitted" in msg.lower()
    assert "principles[1] (name: 'honesty').critique" in msg and "required" in msg.lower()


def test_typo_key_at_top_level_and_in_few_shot(tmp_path):
    raw = _valid()
    raw["principals"] = raw["principles"]
    msg, _ = _error(tmp_path, raw)
    assert "principals" in msg
    raw = _valid()
    raw["few_shot"][0]["anwser"] = "A"
    msg, _ = _error(tmp_path, raw)
    assert "few_shot[0].anwser" in msg


def test_bad_principle_name(tmp_path):
    raw = _valid()
    raw["principles"][0]["name"] = "be helpful"
    msg, _ = _error(tmp_path, raw)
    assert "principles[0] (name: 'be helpful').name" in msg


def test_principle_not_a_mapping(tmp_path):
    raw = _valid()
    raw["principles"][1] = "be honest"
    msg, _ = _error(tmp_path, raw)
    assert "principles[1]" in msg


def test_no_principles(tmp_path):
    raw = _valid()
    raw["principles"] = []
    msg, _ = _error(tmp_path, raw)
    assert "principles" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- just\n- a list\n", "expected a mapping"),
        ("", "expected a mapping"),
        ("name: x\nprinciples: [\n  - {name: a\n", "not valid YAML"),
    ],
    ids=["list", "empty", "invalid-yaml"],
)
def test_not_a_mapping_or_invalid_yaml(tmp_path, text, expected):
    msg, _ = _error(tmp_path, text)
    assert expected in msg


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "constitution.yaml"
    with pytest.raises(ConstitutionError) as exc:
        load_constitution(path)
    assert str(path) in str(exc.value) and "not found" in str(exc.value)


@pytest.mark.parametrize("use", ["label", "revise"])
def test_no_principle_for_a_use(tmp_path, use):
    raw = _valid()
    other = "revise" if use == "label" else "label"
    for p in raw["principles"]:
        p["applies_to"] = [other]
    msg, _ = _error(tmp_path, raw)
    assert f"no principle applies to '{use}'" in msg
    assert "applies_to" in msg


def test_every_error_is_listed(tmp_path):
    """Two bad entries: both are reported at once, so one edit-and-rerun fixes the file."""
    raw = _valid()
    del raw["principles"][0]["critique"]
    raw["few_shot"][0]["answer"] = "C"
    msg, _ = _error(tmp_path, raw)
    assert "principles[0] (name: 'helpful').critique" in msg
    assert "few_shot[0].answer" in msg


def test_cli_validates_constitutions(tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprinciples:\n  - name: a\n    comparison: c\n    critique: c\n")
    cmd = [sys.executable, "-m", "alignflow.cli", "validate", "--kind", "constitution"]
    ok = subprocess.run([*cmd, str(repo / "data/constitution.yaml")], cwd=repo, capture_output=True, text=True)
    assert ok.returncode == 0 and "4 principles (3 label, 4 revise)" in ok.stdout
    failed = subprocess.run([*cmd, str(bad)], cwd=repo, capture_output=True, text=True)
    assert failed.returncode == 1 and "principles[0] (name: 'a').revision: Field required" in failed.stdout
