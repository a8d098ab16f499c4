"""Great-expectations suite for collect_preferences' judgments.jsonl: every stored judgment is a probability, its
two orders are probabilities, its principle is one of the constitution's, and it names its judge. The soft-label
pair files themselves go through the preference suite (expectations.py: labels in [0, 1], no empty text)."""

from __future__ import annotations

from typing import Any

from tasks.common.produced_checks import _tag, check_frame
from tasks.common.records import Issue

PROBABILITIES = ("p_a", "p_ab", "p_ba")


def judgments_frame(records: list[dict[str, Any]]) -> Any:
    import pandas as pd

    rows = []
    for line, rec in enumerate(records, start=1):
        row = {"row": line, "id": rec.get("id"), "source": rec.get("source"), "judge": rec.get("judge") or "",
               "principle": rec.get("principle") or ""}
        for k in PROBABILITIES:
            v = rec.get(k)
            row[k] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def judgments_suite(principle_names: list[str]) -> Any:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    names = sorted(principle_names)
    rules = [
        _tag(gxe.ExpectColumnValuesToBeBetween(column=k, min_value=0, max_value=1), "probability", k,
             f"{k} = {{value}} is not a probability in [0, 1]")
        for k in PROBABILITIES
    ] + [
        _tag(gxe.ExpectColumnValuesToNotBeNull(column=k), "missing", k, f"{k} is missing or not a number")
        for k in PROBABILITIES
    ] + [
        _tag(gxe.ExpectColumnValuesToNotBeInSet(column="judge", value_set=[""]), "missing", "judge",
             "the judgment does not name its judge"),
        # AI judgments carry the principle they were asked under; gold and human ones carry none ("").
        _tag(gxe.ExpectColumnValuesToBeInSet(column="principle", value_set=["", *names]), "unknown_principle",
             "principle", f"{{value!r}} is not a principle of the constitution ({', '.join(names)})"),
        _tag(gxe.ExpectColumnValuesToBeUnique(column="id"), "duplicate_id", "id", "id {value} is used twice"),
    ]
    return gx.ExpectationSuite(name="judgments", expectations=rules)


def check_judgments(records: list[dict[str, Any]], principle_names: list[str], file: str) -> list[Issue]:
    return check_frame(judgments_frame(records), judgments_suite(principle_names), file)
