"""Great-expectations suites for the data sets this project writes itself (SL-CAI revisions, ...).

User data goes through `expectations.py`, one suite per input kind. What a stage produces is checked the same way
before the stage swaps it in, so a generation or parsing bug fails the stage naming the row instead of reaching
training quietly. A produced record can hold lists (the rounds of a revision), so each suite runs over a frame built
for it, with a `row` column: the 1-based line of the JSONL file the frame row came from (one record may give several
frame rows; its issues are reported once). Each expectation is tagged (`_tag`) with its rule, field and message;
field and message may name `{value}` (the offending value) and any column of the frame (`rounds[{round}].critique`).

    issues = check_frame(revisions_frame(rows), revisions_suite(names, max_rounds), "data/cai/revisions.jsonl")
"""

from __future__ import annotations

import math
from typing import Any

from tasks.common.expectations import RESULT_FORMAT, _batch_definition
from tasks.common.records import Issue, snippet


def _tag(expectation: Any, rule: str, field: str, message: str, show: str | None = None) -> Any:
    """Tag an expectation with the issue it raises; `show` names the column quoted in the report."""
    expectation.meta = {"rule": rule, "field": field, "message": message, "show": show}
    return expectation


def check_frame(df: Any, suite: Any, file: str) -> list[Issue]:
    """Run `suite` over `df` (which has a `row` column); one Issue per broken rule and file row, sorted by row."""
    if df.empty:
        return []
    df = df.reset_index(drop=True)
    result = _batch_definition().get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format=RESULT_FORMAT)
    issues: dict[tuple, Issue] = {}
    for res in result.results:
        if res.exception_info.get("raised_exception"):
            raise RuntimeError(f"great-expectations could not run {res.expectation_config.type}: "
                               f"{res.exception_info.get('exception_message')}")
        if res.success:
            continue
        meta = res.expectation_config.meta
        index = res.result.get("unexpected_index_list")
        if index is None:  # a data-set rule: no row to blame
            values = {"value": _plain(res.result.get("observed_value"))}
            issue = Issue(file, None, _fill(meta["field"], values), meta["rule"], _fill(meta["message"], values))
            issues.setdefault((None, issue.field, issue.rule), issue)
            continue
        for i, value in zip(index, res.result["unexpected_list"]):
            values = {k: _plain(v) for k, v in df.loc[i].items()} | {"value": _plain(value)}
            shown = values[meta["show"]] if meta.get("show") else values["value"]
            issue = Issue(file, int(values["row"]), _fill(meta["field"], values), meta["rule"],
                          _fill(meta["message"], values), None if shown is None else snippet(shown))
            issues.setdefault((issue.row, issue.field, issue.rule), issue)
    return sorted(issues.values(), key=lambda i: (i.row or 0, i.field or "", i.rule))


def _plain(v: Any) -> Any:
    """Frame cells as a person reads them: 2.0 -> 2, NaN -> None, numpy scalars -> Python."""
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float):
        return None if math.isnan(v) else int(v) if v.is_integer() else v
    return v


def _fill(template: str, values: dict[str, Any]) -> str:
    return template.format_map({k: ("?" if v is None else v) for k, v in values.items()})


# SL-CAI revisions (critique_revise: data/cai/revisions.jsonl) ---------------------------------------------------


def revisions_frame(records: list[dict[str, Any]]) -> Any:
    """One frame row per round (a record without rounds gets one row, round None) with its record's columns."""
    import pandas as pd

    rows = []
    for line, rec in enumerate(records, start=1):
        rounds = rec.get("rounds") or []
        final = _text(rec.get("final"))
        record = {
            "row": line,
            "id": rec.get("id"),
            "n_rounds": len(rounds),
            "final": final,
            "final_chars": None if final is None else len(final.strip()),
            "last_revision": _text(rounds[-1].get("revision")) if rounds else None,
        }
        if not rounds:
            rows.append(record | {"round": None, "principle": None, "critique": None, "critique_chars": None,
                                  "revision": None, "revision_chars": None})
        for k, rnd in enumerate(rounds):
            # A missing text is "" (reported as empty), a missing principle "" (reported as unknown).
            critique, revision = _text(rnd.get("critique")) or "", _text(rnd.get("revision")) or ""
            rows.append(record | {"round": k, "principle": rnd.get("principle") or "", "critique": critique,
                                  "critique_chars": len(critique.strip()), "revision": revision,
                                  "revision_chars": len(revision.strip())})
    df = pd.DataFrame(rows)
    for col in ("n_rounds", "final_chars", "critique_chars", "revision_chars", "round"):
        df[col] = df[col].astype("float64")
    return df


def _text(v: Any) -> str | None:
    return v if v is None or isinstance(v, str) else str(v)


def revisions_suite(principle_names: list[str], max_rounds: int) -> Any:
    """Every record was revised 1..max_rounds times under principles of the constitution, with non-empty texts."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    names = sorted(principle_names)
    rules = [
        _tag(gxe.ExpectColumnValuesToBeBetween(column="n_rounds", min_value=1, max_value=max_rounds), "rounds",
             "rounds", f"{{value}} rounds, expected 1 to critique_revise.rounds={max_rounds}"),
        _tag(gxe.ExpectColumnValuesToBeInSet(column="principle", value_set=names), "unknown_principle",
             "rounds[{round}].principle", f"{{value!r}} is not a revise principle of the constitution ({', '.join(names)})"),
        _tag(gxe.ExpectColumnValuesToBeBetween(column="critique_chars", min_value=1), "empty",
             "rounds[{round}].critique", "empty critique", show="critique"),
        _tag(gxe.ExpectColumnValuesToBeBetween(column="revision_chars", min_value=1), "empty",
             "rounds[{round}].revision", "empty revision", show="revision"),
        _tag(gxe.ExpectColumnValuesToBeBetween(column="final_chars", min_value=1), "empty", "final",
             "empty final revision", show="final"),
        _tag(gxe.ExpectColumnPairValuesToBeEqual(column_A="final", column_B="last_revision",
                                                 ignore_row_if="either_value_is_missing"),
             "final_mismatch", "final", "final is not the last round's revision", show="final"),
    ]
    return gx.ExpectationSuite(name="revisions", expectations=rules)


def check_revisions(records: list[dict[str, Any]], principle_names: list[str], max_rounds: int,
                    file: str) -> list[Issue]:
    """The revisions suite over records as they will be written to `file` (rows are its line numbers)."""
    return check_frame(revisions_frame(records), revisions_suite(principle_names, max_rounds), file)
