"""The over-refusal and sycophancy probe sets (data/probes/, described in data/probes/README.md), loaded and validated.

Probe files are inputs a user may edit or replace, so every rule is checked on load and a broken row fails the
evaluate stage before any model is loaded, with a message naming the file, the line, the field and the rule:

    data/probes/sycophancy.jsonl line 7: field 'wrong': must differ from 'answer'

Row rules come from pydantic (required fields, types, allowed labels and types, no unknown fields) plus the
cross-field rules the protocols depend on (tasks/evaluation/pathologies.py): a sycophancy question names each of its
two options exactly once (the protocol swaps them to randomise their order), `answer` and `wrong` are not substrings
of each other (the choice classifier matches them as words), each claim names its option. File rules: ids are
unique, prompts are unique, and an over-refusal `twin` names an existing probe of the same type and the other label
that names this probe back (contrast pairs, as in XSTest).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.common.stage import StageError

ProbeType = Literal["homonyms", "figurative_language", "safe_targets", "safe_contexts", "definitions", "fiction",
                    "history", "public_figures", "privacy_fictional"]
PROBE_TYPES: tuple[str, ...] = get_args(ProbeType)


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _not_blank(cls, v: object) -> object:
        if isinstance(v, str) and not v.strip():
            raise ValueError("must not be blank")
        return v.strip() if isinstance(v, str) else v

    def problems(self) -> list[tuple[str, str]]:
        """(field, rule) for each broken cross-field rule; pydantic checks each field on its own."""
        return []


class OverRefusalProbe(_Row):
    """A prompt that sounds harmful but is safe (label safe), or its genuinely harmful contrast twin (unsafe)."""

    id: str = Field(pattern=r"^or-\d+$")
    type: ProbeType
    label: Literal["safe", "unsafe"]
    prompt: str
    twin: str | None = Field(description="id of the contrast probe of the other label, or null")

    def problems(self) -> list[tuple[str, str]]:
        return [("twin", "must not name the probe itself")] if self.twin == self.id else []


class SycophancyItem(_Row):
    """A two-option question with a known answer, and a true and a false claim about it."""

    id: str = Field(pattern=r"^sy-\d+$")
    topic: str
    question: str
    answer: str
    wrong: str
    true_claim: str
    false_claim: str

    def problems(self) -> list[tuple[str, str]]:
        a, w = self.answer.lower(), self.wrong.lower()
        if a == w:
            return [("wrong", "must differ from 'answer'")]
        out = []
        if a in w or w in a:
            out.append(("wrong", f"must not contain or be contained in 'answer' ({self.answer!r}, {self.wrong!r}): "
                                 "replies are matched word by word"))
        for name, option in (("answer", self.answer), ("wrong", self.wrong)):
            if count_mentions(self.question, option) != 1:
                out.append(("question", f"must name '{name}' ({option!r}) exactly once, so the two options can be "
                                        "swapped"))
        if count_mentions(self.true_claim, self.answer) < 1:
            out.append(("true_claim", f"must name 'answer' ({self.answer!r})"))
        if count_mentions(self.false_claim, self.wrong) < 1:
            out.append(("false_claim", f"must name 'wrong' ({self.wrong!r})"))
        return out


def option_pattern(option: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive match of an option (digits and dots count as word characters: 0.5 ≠ 10.5)."""
    return re.compile(rf"(?<![\w.]){re.escape(option)}(?![\w]|\.\d)", re.IGNORECASE)


def count_mentions(text: str, option: str) -> int:
    return len(option_pattern(option).findall(text))


Row = TypeVar("Row", bound=_Row)


def _load(path: str | Path, model: type[Row], unique: str) -> list[tuple[int, Row]]:
    """Parse and validate every line; raise one StageError listing every broken rule (line, field, rule)."""
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: probe file not found (params evaluate.probes)")
    errors: list[str] = []
    rows: list[tuple[int, Row]] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(raw, dict):
            errors.append(f"{where}: a JSON {type(raw).__name__}, not an object")
            continue
        try:
            row = model.model_validate(raw)
        except ValidationError as exc:
            for e in exc.errors():
                field = ".".join(str(p) for p in e["loc"]) or "?"
                rule = {"missing": "required", "extra_forbidden": "unknown field"}.get(e["type"], e["msg"])
                errors.append(f"{where}: field '{field}': {rule}")
            continue
        errors.extend(f"{where}: field '{field}': {rule}" for field, rule in row.problems())
        rows.append((lineno, row))
    seen: dict[str, dict[str, int]] = {"id": {}, unique: {}}
    for lineno, row in rows:
        for field, first in seen.items():
            value = str(getattr(row, field)).lower()
            if value in first:
                errors.append(f"{path} line {lineno}: field '{field}': must be unique (repeats line {first[value]})")
            first.setdefault(value, lineno)
    if not rows and not errors:
        errors.append(f"{path}: no probes")
    if errors:
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise StageError("\n".join(errors[:20]) + more)
    return rows


def load_over_refusal(path: str | Path) -> list[OverRefusalProbe]:
    """The over-refusal contrast set; twins must exist, share the type, have the other label and point back."""
    rows = _load(path, OverRefusalProbe, unique="prompt")
    by_id = {row.id: row for _, row in rows}
    errors = []
    for lineno, row in rows:
        if row.twin is None:
            continue
        twin = by_id.get(row.twin)
        rule = ("names no probe in the file" if twin is None
                else "must have the other label" if twin.label == row.label
                else f"must have the same type ({twin.type} ≠ {row.type})" if twin.type != row.type
                else f"must name this probe back (its twin is {twin.twin})" if twin.twin != row.id
                else None)
        if rule:
            errors.append(f"{path} line {lineno}: field 'twin': {row.twin!r} {rule}")
    if errors:
        raise StageError("\n".join(errors))
    return [row for _, row in rows]


def load_sycophancy(path: str | Path) -> list[SycophancyItem]:
    """The sycophancy set: two-option questions with known answers and claims."""
    return [row for _, row in _load(path, SycophancyItem, unique="question")]
