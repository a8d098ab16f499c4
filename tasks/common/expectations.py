"""Column-level data rules as great-expectations suites (one per kind) over a flat pandas view of the records.

Why GX: the rules are declared once, as data (an ExpectationSuite per kind: prompts, sft, preference, kto), and
GX reports which rows break each one (`unexpected_index_list`), which we turn into the same `Issue`s that the
loader (`records.py`) produces for parse-level problems. Each expectation carries its rule name, field and
message in `meta`, so the suite alone says what is checked and how a failure reads.

The flat view has, per text field F (prompt, chosen, rejected, completion): `F_text` (message contents joined),
`F_min_chars` (shortest stripped message, 0 = empty), `F_chars`, and `F_tokens` when a tokenizer is given; plus
`n_turns`, `id`, `content_hash` and the raw/numeric label and score columns.

GX takes ~3 s to import; the ephemeral context is created once per process (`_batch_definition`), after which a
suite over a few thousand rows runs in well under a second.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from typing import Any

from tasks.common.records import Issue, Row, snippet

TEXT_FIELDS = {
    "prompts": ("prompt",),
    "sft": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion"),
}
NUMBER_TYPES = ["int", "float"]
RESULT_FORMAT = {"result_format": "COMPLETE"}


def content_hash(record: dict[str, Any]) -> str:
    """Same normalised content → same hash. The id and the source are not content; the labeller is, for a labelled
    row: two people giving the same label to one pair are two votes (inter-annotator agreement), not a duplicate."""
    content = {k: v for k, v in record.items() if k not in ("id", "source")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flatten(kind: str, rows: list[Row], tokenizer: Any = None) -> Any:
    """One pandas row per record; the columns the suites check."""
    import pandas as pd

    records = [r.record for r in rows]
    cols: dict[str, Any] = {
        "id": pd.Series([r["id"] for r in records], dtype=object),
        "content_hash": [content_hash(r) for r in records],
        "n_turns": [len(r.get("prompt") or []) for r in records],
    }
    for f in TEXT_FIELDS[kind]:
        msgs = [r.get(f) for r in records]
        texts = [None if m is None else "\n".join(x["content"] for x in m) for m in msgs]
        cols[f"{f}_text"] = pd.Series(texts, dtype=object)
        cols[f"{f}_min_chars"] = pd.Series([_min_chars(m) for m in msgs], dtype="float64")
        cols[f"{f}_chars"] = pd.Series([None if t is None else len(t) for t in texts], dtype="float64")
        if tokenizer is not None:
            cols[f"{f}_tokens"] = pd.Series(_count_tokens(tokenizer, texts), dtype="float64")
    if kind in ("preference", "kto"):
        labels = [r.get("label") for r in records]
        cols["label"] = pd.Series(labels, dtype=object)
        values = [_number(v) for v in labels]
        if kind == "kto":  # the balance is over valid labels only; others are reported by the set rule
            values = [v if v in (0.0, 1.0) else None for v in values]
        cols["label_value"] = pd.Series(values, dtype="float64")
    if kind == "preference":
        for score in ("score_chosen", "score_rejected"):
            cols[score] = pd.Series([r.get(score) for r in records], dtype=object)
    return pd.DataFrame(cols)


def _min_chars(msgs: list[dict[str, str]] | None) -> int | None:
    return None if not msgs else min(len(m["content"].strip()) for m in msgs)


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) else None


def _count_tokens(tokenizer: Any, texts: list[str | None]) -> list[int | None]:
    present = [t for t in texts if t is not None]
    ids = iter(tokenizer(present, add_special_tokens=False)["input_ids"] if present else [])
    return [None if t is None else len(next(ids)) for t in texts]


def _rule(expectation: Any, rule: str, field: str | None, message: str) -> Any:
    """Tag a GX expectation with the issue it raises; `message` may use {value} (the bad value) and {first}."""
    expectation.meta = {"rule": rule, "field": field, "message": message}
    return expectation


def build_suite(kind: str, max_chars: int, max_tokens: int | None = None, special_tokens: list[str] = ()) -> Any:
    """The kind's ExpectationSuite; token rules only when a tokenizer supplied the counts and special tokens."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    rules = []
    for f in TEXT_FIELDS[kind]:
        text = f"{f}_text"
        rules += [
            _rule(gxe.ExpectColumnValuesToNotBeNull(column=text), "missing", f, "required field is missing"),
            _rule(gxe.ExpectColumnValuesToBeBetween(column=f"{f}_min_chars", min_value=1), "empty", f, "empty text"),
            _rule(gxe.ExpectColumnValuesToBeBetween(column=f"{f}_chars", max_value=max_chars), "max_chars", f,
                  f"{{value}} characters, over validate.max_chars={max_chars}"),
        ]
        if max_tokens is not None:
            rules.append(_rule(gxe.ExpectColumnValuesToBeBetween(column=f"{f}_tokens", max_value=max_tokens),
                               "max_tokens", f, f"{{value}} tokens, over validate.max_tokens={max_tokens}"))
        if special_tokens:
            # Literal special tokens in the text render as extra EOS, fake turns or a second system prompt.
            regex = "|".join(re.escape(t) for t in special_tokens)
            rules.append(_rule(gxe.ExpectColumnValuesToNotMatchRegex(column=text, regex=regex), "special_tokens", f,
                               f"contains a special token of the tokenizer ({', '.join(special_tokens)})"))
    rules += [
        _rule(gxe.ExpectColumnValuesToBeUnique(column="content_hash"), "duplicate", None, "same content as {first}"),
        _rule(gxe.ExpectColumnValuesToBeUnique(column="id"), "duplicate_id", "id", "id already used at {first}"),
    ]
    if kind == "preference":
        both = ["chosen_text", "rejected_text"]
        rules += [
            _rule(gxe.ExpectSelectColumnValuesToBeUniqueWithinRecord(column_list=both), "chosen_equals_rejected",
                  "rejected", "chosen and rejected are the same text"),
            _rule(gxe.ExpectColumnValuesToBeInTypeList(column="label", type_list=NUMBER_TYPES), "type", "label",
                  "soft label must be a number, got {value}"),
            _rule(gxe.ExpectColumnValuesToBeBetween(column="label_value", min_value=0, max_value=1), "label", "label",
                  "soft label {value} is outside [0, 1]"),
        ]
        rules += [
            _rule(gxe.ExpectColumnValuesToBeInTypeList(column=s, type_list=NUMBER_TYPES), "type", s,
                  "score must be a number, got {value}")
            for s in ("score_chosen", "score_rejected")
        ]
    if kind == "kto":
        balance = gxe.ExpectColumnMeanToBeBetween(column="label_value", min_value=0, max_value=1,
                                                  strict_min=True, strict_max=True)
        rules += [
            _rule(gxe.ExpectColumnValuesToNotBeNull(column="label"), "missing", "label", "required field is missing"),
            _rule(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[True, False]), "label", "label",
                  "KTO label must be true/false or 1/0, got {value}"),
            _rule(balance, "label_balance", "label",
                  "fraction of desirable (true) labels is {value}; KTO needs both desirable and undesirable examples"),
        ]
    return gx.ExpectationSuite(name=kind, expectations=rules)


@functools.cache
def _batch_definition() -> Any:
    """One ephemeral GX context per process (creating it is cheap, importing GX is not)."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO lines are internals
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("alignflow").add_dataframe_asset("records")
    return asset.add_batch_definition_whole_dataframe("all")


def special_tokens_of(tokenizer: Any) -> list[str]:
    return sorted(set(getattr(tokenizer, "all_special_tokens", []) or []))


def check_rows(kind: str, rows: list[Row], max_chars: int, max_tokens: int, tokenizer: Any = None,
               dataset: str = "") -> list[Issue]:
    """Run the kind's suite over `rows`; return one Issue per broken rule and row (row None: data-set rules)."""
    if not rows:
        return []
    df = flatten(kind, rows, tokenizer)
    with_tok = tokenizer is not None
    suite = build_suite(kind, max_chars, max_tokens if with_tok else None, special_tokens_of(tokenizer) if with_tok else [])
    result = _batch_definition().get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format=RESULT_FORMAT)
    issues: list[Issue] = []
    for res in result.results:
        if res.exception_info.get("raised_exception"):
            raise RuntimeError(f"great-expectations could not run {res.expectation_config.type}: "
                               f"{res.exception_info.get('exception_message')}")
        if not res.success:
            issues += _issues_from(res, rows, df, dataset)
    return sorted(issues, key=lambda i: (i.file, i.row or 0, i.field or "", i.rule))


def _issues_from(res: Any, rows: list[Row], df: Any, dataset: str) -> list[Issue]:
    meta = res.expectation_config.meta
    rule, field, message = meta["rule"], meta["field"], meta["message"]
    index = res.result.get("unexpected_index_list")
    if index is None:  # a data-set rule (label balance): no row to blame
        return [Issue(dataset, None, field, rule, message.format(value=_fmt(res.result.get("observed_value"))))]
    issues, first_of = [], {}
    for i, value in sorted(zip(index, res.result["unexpected_list"]), key=lambda p: p[0]):
        first = ""
        if rule.startswith("duplicate"):
            j = first_of.setdefault(value, i)
            if j == i:
                continue  # the first occurrence is kept; later copies are the issue
            first = f"{rows[j].file}:{rows[j].row}"
        text_col = f"{field or 'prompt'}_text"
        shown = df.at[i, text_col] if text_col in df.columns else value
        issues.append(Issue(rows[i].file, rows[i].row, field, rule, message.format(value=_fmt(value), first=first),
                            None if shown is None else snippet(shown)))
    return issues


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.3g}"
    return repr(v) if isinstance(v, str) else str(v)
