"""The constitution: written principles that guide the AI judge (RL-CAI labelling) and critique/revision (SL-CAI).

A constitution is data (`data/constitution.yaml`, a DVC-tracked input), not code: named principles, each with the
three requests Constitutional AI (Bai et al. 2022) asks of the model — a comparison instruction for labelling, a
critique request and a revision request — plus few-shot comparisons and, per principle, which of the two uses it
applies to (`label`, `revise`). It is validated on load; every error names the file, the entry and the field, so
a bad principle fails the stage before any model is loaded.

    name: positive-reviews
    description: ...
    principles:
      - name: positivity
        comparison: Which continuation is more positive and enthusiastic about the film?
        critique: Identify every negative or lukewarm remark in the continuation.
        revision: Rewrite the continuation so that it is warmly positive about the film.
        applies_to: [label, revise]          # default: both
    few_shot:                                # optional worked comparisons shown before each question
      - prompt: Continue this movie review ...
        a: ...
        b: ...
        principle: positivity
        answer: A
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Use = Literal["label", "revise"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Principle(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    comparison: str = Field(min_length=1, description="question the judge answers with (A) or (B)")
    critique: str = Field(min_length=1, description="critique request for SL-CAI")
    revision: str = Field(min_length=1, description="revision request for SL-CAI")
    rating: str | None = Field(None, description="yes/no question about one reply, for the pointwise judge")
    applies_to: tuple[Use, ...] = ("label", "revise")

    @field_validator("comparison", "critique", "revision", "rating")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


class FewShot(_Strict):
    prompt: str = Field(min_length=1)
    a: str = Field(min_length=1)
    b: str = Field(min_length=1)
    principle: str
    answer: Literal["A", "B"]
    reasoning: str | None = Field(None, description="shown when the judge reasons first (chain of thought)")


class Constitution(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    principles: tuple[Principle, ...] = Field(min_length=1)
    few_shot: tuple[FewShot, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Constitution:
        names = [p.name for p in self.principles]
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise ValueError(f"principles[{i}] (name: {name!r}).name: repeats principles[{names.index(name)}]; "
                                 "principle names must be unique")
        for i, shot in enumerate(self.few_shot):
            if shot.principle not in names:
                raise ValueError(f"few_shot[{i}].principle {shot.principle!r} is not a principle ({', '.join(names)})")
        for use in ("label", "revise"):
            if not any(use in p.applies_to for p in self.principles):
                raise ValueError(f"no principle applies to {use!r} (set applies_to on at least one)")
        return self

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.principles]

    def for_use(self, use: Use) -> list[Principle]:
        return [p for p in self.principles if use in p.applies_to]

    def get(self, name: str) -> Principle:
        for p in self.principles:
            if p.name == name:
                return p
        raise KeyError(f"constitution {self.name!r} has no principle {name!r} ({', '.join(self.names)})")

    def draw(self, rng: random.Random, use: Use, exclude: set[str] = frozenset()) -> Principle:
        """A principle drawn uniformly (Bai et al. sample one per comparison / per critique round); `exclude`
        gives fresh principles across revision rounds until they run out."""
        pool = [p for p in self.for_use(use) if p.name not in exclude] or self.for_use(use)
        return rng.choice(pool)


def draw_principle(constitution: Constitution, seed: int, pair_id: str) -> Principle:
    """One principle per comparison (Bai et al. 2022), drawn from a generator seeded by the pair id, so a pair's
    principle does not depend on which other pairs exist or their order."""
    return constitution.draw(random.Random(f"{seed}:{pair_id}"), "label")


class ConstitutionError(ValueError):
    """The constitution file is missing or malformed; the message names the file, entry and field."""


def load_constitution(path: str | Path) -> Constitution:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConstitutionError(f"{path}: constitution not found") from None
    except yaml.YAMLError as exc:
        raise ConstitutionError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConstitutionError(f"{path}: expected a mapping with name, principles, few_shot")
    try:
        return Constitution.model_validate(raw)
    except ValidationError as exc:
        raise ConstitutionError(f"{path}: invalid constitution\n" + "\n".join(_describe(raw, e) for e in exc.errors())) from None


def _describe(raw: dict, err: dict) -> str:
    """`principles[2] (name: 'honesty').revision: field required` — the entry by index and by name."""
    loc = list(err["loc"])
    parts, node = [], raw
    for key in loc:
        if isinstance(key, int):
            parts[-1] += f"[{key}]"
            entry = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(entry, dict) and entry.get("name"):
                parts[-1] += f" (name: {entry['name']!r})"
            node = entry
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    where = ".".join(parts) or "(top level)"
    return f"  {where}: {err['msg']}"
