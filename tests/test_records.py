"""Loading and normalisation: every supported format and file type, and the parse-level rules of records.py.

Tiny data sets are built in code; each bad input must come back as an issue naming file, row, field and rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.common.records import load_file

TEMPLATE = "Review: {prompt}"


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSONL, CSV (message lists as JSON cells) or Parquet, by the file's suffix."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        import csv

        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            for r in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def load(tmp_path: Path, name: str, kind: str, rows: list[dict]):
    loaded = load_file(write_rows(tmp_path / name, rows), kind, TEMPLATE)
    return loaded, [r.record for r in loaded.rows]


def messages(issues) -> str:
    return "\n".join(str(i) for i in issues)


# Normalisation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_standard_and_conversational_preference_in_every_file_type(tmp_path, suffix):
    text = [{"prompt": "a film", "chosen": "great", "rejected": "dull", "score_chosen": 0.9, "score_rejected": 0.1}]
    loaded, recs = load(tmp_path, "std" + suffix, "preference", text)
    assert loaded.format == "ultrafeedback" and not loaded.issues
    first_row = 2 if suffix == ".csv" else 1  # generated ids use the row a user sees (CSV line 1 is the header)
    assert recs == [{"id": f"std-{first_row}", "prompt": [user("Review: a film")], "chosen": [assistant("great")],
                     "rejected": [assistant("dull")], "score_chosen": 0.9, "score_rejected": 0.1}]

    conv = [{"id": "c1", "prompt": [{"role": "system", "content": "be kind"}, user("hi")],
             "chosen": [assistant("hello")], "rejected": [assistant("go away")], "label": 0.8, "source": "human"}]
    loaded, recs = load(tmp_path, "conv" + suffix, "preference", conv)
    assert loaded.format == "conversational" and not loaded.issues
    assert recs[0]["prompt"] == conv[0]["prompt"] and recs[0]["chosen"] == [assistant("hello")]
    assert (recs[0]["id"], recs[0]["label"], recs[0]["source"]) == ("c1", 0.8, "human")


def test_implicit_prompt_conversational_uses_the_shared_prefix(tmp_path):
    prefix = [user("hi"), assistant("hello"), user("a film?")]
    rows = [{"chosen": [*prefix, assistant("yes")], "rejected": [*prefix, assistant("no")]}]
    loaded, recs = load(tmp_path, "implicit.jsonl", "preference", rows)
    assert loaded.format == "implicit-prompt" and not loaded.issues
    assert recs[0]["prompt"] == prefix and recs[0]["chosen"] == [assistant("yes")]


def test_hh_rlhf_transcripts(tmp_path):
    prompt = "\n\nHuman: Is the film good?\n\nAssistant: Which one?\n\nHuman: The Lighthouse."
    rows = [{"chosen": prompt + "\n\nAssistant: It is superb.", "rejected": prompt + "\n\nAssistant: No idea."}]
    loaded, recs = load(tmp_path, "hh.jsonl", "preference", rows)
    assert loaded.format == "hh-rlhf" and not loaded.issues
    assert recs[0]["prompt"] == [user("Is the film good?"), assistant("Which one?"), user("The Lighthouse.")]
    assert recs[0]["chosen"] == [assistant("It is superb.")]
    assert recs[0]["rejected"] == [assistant("No idea.")]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_ultrafeedback_binarized_strips_the_prompt_from_chosen(tmp_path, suffix):
    rows = [{"prompt": "Rate the film", "prompt_id": "p1",
             "chosen": [user("Rate the film"), assistant("Nine")], "rejected": [user("Rate the film"), assistant("Two")],
             "messages": [user("Rate the film"), assistant("Nine")], "score_chosen": 9.0, "score_rejected": 2.0}]
    loaded, recs = load(tmp_path, "uf" + suffix, "preference", rows)
    assert loaded.format == "ultrafeedback" and not loaded.issues
    assert recs == [{"id": "uf-1", "prompt": [user("Rate the film")], "chosen": [assistant("Nine")],
                     "rejected": [assistant("Two")], "score_chosen": 9.0, "score_rejected": 2.0}]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_kto_sft_and_prompts(tmp_path, suffix):
    kto = [{"prompt": "a film", "completion": "loved it", "label": True, "labeller": "me"},
           {"prompt": "a film", "completion": "hated it", "label": False, "labeller": "me"}]
    loaded, recs = load(tmp_path, "kto" + suffix, "kto", kto)
    assert loaded.format == "unpaired" and not loaded.issues
    assert [(r["completion"], r["label"], r["labeller"]) for r in recs] == [
        ([assistant("loved it")], True, "me"), ([assistant("hated it")], False, "me")]

    sft = [{"messages": [{"role": "system", "content": "s"}, user("q"), assistant("a"), user("q2"), assistant("a2")]}]
    loaded, recs = load(tmp_path, "sftm" + suffix, "sft", sft)
    assert loaded.format == "messages" and not loaded.issues
    assert recs[0]["prompt"] == sft[0]["messages"][:-1] and recs[0]["completion"] == [assistant("a2")]

    loaded, recs = load(tmp_path, "sftpc" + suffix, "sft", [{"prompt": "p", "completion": "c"}])
    assert loaded.format == "prompt-completion"
    assert recs == [{"id": recs[0]["id"], "prompt": [user("Review: p")], "completion": [assistant("c")]}]

    loaded, recs = load(tmp_path, "prompts" + suffix, "prompts", [{"id": 7, "prompt": "p", "source": "imdb"}])
    assert recs == [{"id": "7", "prompt": [user("Review: p")], "source": "imdb"}]


def test_csv_rows_are_file_lines_and_text_starting_with_a_bracket_stays_text(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt\n"[Verse 1] a song"\n"multi\nline"\n[1\n', encoding="utf-8")
    loaded = load_file(path, "prompts", "{prompt}")
    assert [(r.row, r.record["prompt"][0]["content"]) for r in loaded.rows] == [
        (2, "[Verse 1] a song"), (3, "multi\nline"), (5, "[1")]


# Parse-level rules ---------------------------------------------------------------------------------------------


def test_malformed_json_non_utf8_and_non_object_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"prompt": "ok"}\n{"prompt": "oops"\n\n{"prompt": "caf\xe9"}\n[1, 2]\n')
    loaded = load_file(path, "prompts", "{prompt}")
    text = messages(loaded.issues)
    assert f"{path}:2: json (malformed JSON" in text
    assert f"{path}:4: encoding (byte 0xe9 at byte offset 51 is not UTF-8)" in text
    assert f"{path}:5: type (line is a JSON list, not an object)" in text
    assert loaded.n_rows == 4 and [r.row for r in loaded.rows] == [1]


def test_empty_missing_and_unsupported_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n  \n")
    (tmp_path / "header.csv").write_text("prompt\n")
    (tmp_path / "data.txt").write_text("hello")
    for name, rule in [("empty.jsonl", "empty_file"), ("header.csv", "empty_file"), ("data.txt", "format"),
                       ("absent.jsonl", "not_found")]:
        issues = load_file(tmp_path / name, "prompts", "{prompt}").issues
        assert messages(issues).startswith(f"{tmp_path / name}: {rule} (")


def test_non_utf8_csv_names_line_and_offset(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"prompt\nfine\nna\xefve\n")
    assert messages(load_file(path, "prompts", "{prompt}").issues) == (
        f"{path}: encoding (byte 0xef at byte offset 14 (line 3) is not UTF-8)")


def test_columns_that_match_no_format_of_the_kind(tmp_path):
    loaded, _ = load(tmp_path, "kto.jsonl", "preference", [{"prompt": "p", "completion": "c", "label": True}])
    assert "kto.jsonl: format (columns ['completion', 'label', 'prompt'] match no preference format" in messages(
        loaded.issues)


def test_mistyped_fields(tmp_path):
    rows = [{"id": "1", "prompt": 3, "chosen": "a", "rejected": "b"},
            {"id": "2", "prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"},
            {"id": ["x"], "prompt": "p", "chosen": "a", "rejected": "b"}]
    text = messages(load(tmp_path, "types.jsonl", "preference", rows)[0].issues)
    assert "types.jsonl:1: field 'prompt': type (must be text or a list of messages, got int)" in text
    assert "types.jsonl:2: field 'prompt': type (message 1 must be an object with string 'role' and 'content')" in text
    assert "types.jsonl:3: field 'id': type (must be a string or an integer, got list)" in text


def test_roles_out_of_order(tmp_path):
    sys_msg = {"role": "system", "content": "s"}
    rows = [
        {"prompt": [user("a"), user("b")], "chosen": "x", "rejected": "y"},
        {"prompt": [user("a"), sys_msg, user("b")], "chosen": "x", "rejected": "y"},
        {"prompt": [user("a"), assistant("b")], "chosen": "x", "rejected": "y"},
        {"prompt": [user("a")], "chosen": [user("x")], "rejected": "y"},
        {"prompt": [user("a")], "chosen": "x", "rejected": [assistant("y"), assistant("z")]},
        {"prompt": [{"role": "tool", "content": "t"}], "chosen": "x", "rejected": "y"},
    ]
    text = messages(load(tmp_path, "roles.jsonl", "preference", rows)[0].issues)
    assert "roles.jsonl:1: field 'prompt': roles (prompt must be [system,] user, assistant, …, user; got user, user)" in text
    assert "roles.jsonl:2: field 'prompt': roles (prompt must be [system,] user, assistant, …, user; got user, system" in text
    assert "roles.jsonl:3: field 'prompt': roles (" in text
    assert "roles.jsonl:4: field 'chosen': roles (must be one assistant message; got user)" in text
    assert "roles.jsonl:5: field 'rejected': roles (must be one assistant message; got assistant, assistant)" in text
    assert "roles.jsonl:6: field 'prompt': roles (message 1 has unknown role 'tool'" in text

    sft = [{"messages": [user("q"), assistant("a"), user("q2")]}, {"messages": [assistant("a"), user("q")]}, {}]
    text = messages(load(tmp_path, "sft.jsonl", "sft", [{"messages": [user("q"), assistant("a")]}, *sft])[0].issues)
    assert "sft.jsonl:2: field 'messages': roles (the transcript must end with an assistant turn)" in text
    assert "sft.jsonl:3: field 'messages': roles (the transcript must end with an assistant turn)" in text
    assert "sft.jsonl:4: field 'messages': missing (required field is missing)" in text


def test_hh_prompt_that_differs_between_chosen_and_rejected(tmp_path):
    rows = [{"chosen": "\n\nHuman: Is it good?\n\nAssistant: Yes.",
             "rejected": "\n\nHuman: Is it bad?\n\nAssistant: Yes."},
            {"chosen": "no transcript here", "rejected": "\n\nHuman: hi\n\nAssistant: hello"}]
    text = messages(load(tmp_path, "hh.jsonl", "preference", rows)[0].issues)
    assert "hh.jsonl:1: field 'rejected': prompt_mismatch (the conversation before the last reply differs from " \
           "chosen's (from turn 1)" in text
    assert "hh.jsonl:2: field 'chosen': transcript (not an HH-RLHF transcript" in text


def test_ultrafeedback_prompt_column_must_match_the_transcript(tmp_path):
    rows = [{"prompt": "Rate it", "chosen": [user("Something else"), assistant("9")],
             "rejected": [user("Something else"), assistant("2")], "score_chosen": 9, "score_rejected": 2}]
    text = messages(load(tmp_path, "uf.jsonl", "preference", rows)[0].issues)
    assert "uf.jsonl:1: field 'prompt': prompt_mismatch (differs from the conversation before the reply" in text
