"""Read user data in every supported shape and normalise each row to the one internal conversational form.

Users bring data the way the field ships it (README "Data formats"): TRL standard (`prompt`/`chosen`/`rejected` text)
and conversational (message lists, also implicit-prompt pairs whose transcripts share a prefix), Anthropic
HH-RLHF transcripts, UltraFeedback-binarized, KTO unpaired, SFT `messages` or `prompt`/`completion`, and plain
prompt lists, as JSONL, Parquet or CSV. Every stage downstream reads only the internal form of CONTEXT.md:
`prompt` is a list of messages ending with a user turn; `completion`/`chosen`/`rejected` are one assistant
message; plain-text prompts go through `params.data.prompt_template`.

This module owns the *parse-level* rules that need the raw bytes or the message structure (encoding, malformed
JSON, empty file, unknown columns, mistyped message fields, role order, HH prompts that differ). Column-level
rules (missing/empty/over-long text, chosen == rejected, label ranges, duplicates) are great-expectations suites
in `expectations.py`, run over the records this module returns; missing fields are left as None for them.

Row numbers are what a user sees in an editor: the line number in JSONL, the line where the record starts in
CSV (the header is line 1), the 1-based record number in Parquet.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("prompts", "sft", "preference", "kto")
ROLES = ("system", "user", "assistant")
MESSAGE_FIELDS = ("prompt", "completion", "chosen", "rejected", "messages")
NUMBER_FIELDS = ("label", "score_chosen", "score_rejected")
PASSTHROUGH = {  # optional fields kept as they are (their types are checked by the GX suites)
    "prompts": ("source",),
    "sft": ("source",),
    "preference": ("score_chosen", "score_rejected", "label", "source", "labeller"),
    "kto": ("source", "labeller"),
}
EXPECTED_COLUMNS = {  # for the error message when a file matches no format of its kind
    "prompts": "prompt",
    "sft": "messages, or prompt + completion",
    "preference": "prompt + chosen + rejected (standard/conversational, UltraFeedback with score_chosen + "
    "score_rejected), or chosen + rejected transcripts (HH-RLHF, implicit-prompt conversational)",
    "kto": "prompt + completion + label",
}
HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")


@dataclass(frozen=True)
class Issue:
    """One broken rule; row None means the whole file (or the whole data set)."""

    file: str
    row: int | None
    field: str | None
    rule: str
    message: str
    value: str | None = None  # snippet of the offending value, for the report

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row is not None else self.file
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {what}{self.rule} ({self.message})"


@dataclass
class Row:
    """A normalised record and where it came from."""

    file: str
    row: int
    record: dict[str, Any]


@dataclass
class LoadedFile:
    path: str
    format: str | None
    n_rows: int  # every data row, including those that failed to parse
    rows: list[Row] = field(default_factory=list)  # rows that normalised without a parse-level issue
    issues: list[Issue] = field(default_factory=list)


def snippet(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


# Reading -------------------------------------------------------------------------------------------------------


def _read_jsonl(path: Path, name: str) -> tuple[list[tuple[int, Any]], list[Issue]]:
    """Decode line by line, so one bad line is one bad row (with its line number and byte offset)."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    rows, issues, offset = [], [], 0
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            at = start + exc.start
            shown = snippet(raw.decode("utf-8", "backslashreplace"))
            issues.append(Issue(name, lineno, None, "encoding", f"byte 0x{raw[exc.start]:02x} at byte offset {at} is not UTF-8", shown))
            rows.append((lineno, None))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            issues.append(Issue(name, lineno, None, "json", f"malformed JSON: {exc.msg} at column {exc.colno}", snippet(text)))
            obj = None
        if obj is not None and not isinstance(obj, dict):
            issues.append(Issue(name, lineno, None, "type", f"line is a JSON {type(obj).__name__}, not an object", snippet(text)))
            obj = None
        rows.append((lineno, obj))
    return rows, issues


def _read_csv(path: Path, name: str) -> tuple[list[tuple[int, Any]], list[Issue]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        msg = f"byte 0x{data[exc.start]:02x} at byte offset {exc.start} (line {line}) is not UTF-8"
        return [], [Issue(name, None, None, "encoding", msg)]
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    rows, issues, last_line = [], [], reader.line_num
    for cells in reader:
        start, last_line = last_line + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            issues.append(Issue(name, start, None, "csv", f"{len(cells)} cells, the header has {len(header)}"))
            rows.append((start, None))
            continue
        rows.append((start, {h: _csv_cell(h, c) for h, c in zip(header, cells, strict=True)}))
    return rows, issues


def _csv_cell(column: str, cell: str) -> Any:
    """CSV has only strings: numbers/booleans in numeric columns, JSON message lists in message columns."""
    if column in NUMBER_FIELDS:
        if cell.strip().lower() in ("true", "false"):
            return cell.strip().lower() == "true"
        for cast in (int, float):
            try:
                return cast(cell)
            except ValueError:
                pass
        return cell or None
    if column in MESSAGE_FIELDS:
        if cell.lstrip().startswith("["):
            try:
                value = json.loads(cell)
            except ValueError:
                return cell  # text that happens to start with "[" stays text
            return value if isinstance(value, list) else cell
        return cell
    return cell or None


def _read_parquet(path: Path, name: str) -> tuple[list[tuple[int, Any]], list[Issue]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        return [], [Issue(name, None, None, "format", f"not a readable Parquet file: {exc}")]
    return list(enumerate(table.to_pylist(), 1)), []


READERS = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}


def detect_format(kind: str, columns: set[str], first: dict[str, Any] | None) -> str | None:
    """Name the file's format from its columns (and the first row's value types, for the report)."""
    if kind == "prompts":
        return "prompt-only" if "prompt" in columns else None
    if kind == "sft":
        return "messages" if "messages" in columns else "prompt-completion" if {"prompt", "completion"} <= columns else None
    if kind == "kto":
        return "unpaired" if {"prompt", "completion", "label"} <= columns else None
    if not {"chosen", "rejected"} <= columns:
        return None
    text = isinstance((first or {}).get("chosen"), str)
    if {"score_chosen", "score_rejected"} <= columns:
        return "ultrafeedback"
    if "prompt" in columns:
        return "standard" if text else "conversational"
    return "hh-rlhf" if text else "implicit-prompt"


def load_file(path: str | Path, kind: str, prompt_template: str) -> LoadedFile:
    """Read one file, detect its format, normalise every row; problems come back as issues, never raised."""
    path, name = Path(path), str(path)
    reader = READERS.get(path.suffix.lower())
    if not path.is_file():
        return LoadedFile(name, None, 0, issues=[Issue(name, None, None, "not_found", "no such file")])
    if reader is None:
        msg = f"unsupported file type '{path.suffix}' (use {', '.join(READERS)})"
        return LoadedFile(name, None, 0, issues=[Issue(name, None, None, "format", msg)])
    raw, issues = reader(path, name)
    if not raw and not issues:
        return LoadedFile(name, None, 0, issues=[Issue(name, None, None, "empty_file", "the file has no rows")])
    objs = [obj for _, obj in raw if obj is not None]
    columns = set().union(*(obj.keys() for obj in objs))
    fmt = detect_format(kind, columns, objs[0] if objs else None)
    if fmt is None and objs:
        msg = f"columns {sorted(columns)} match no {kind} format; expected {EXPECTED_COLUMNS[kind]}"
        return LoadedFile(name, None, len(raw), issues=[*issues, Issue(name, None, None, "format", msg)])
    loaded = LoadedFile(name, fmt, len(raw), issues=issues)
    for row_no, obj in raw:
        if obj is None:
            continue
        parser = _RowParser(name, row_no, prompt_template)
        record = {"id": parser.id(obj.get("id"), path.stem), **NORMALISERS[kind](parser, obj, fmt)}
        record.update({k: obj[k] for k in PASSTHROUGH[kind] if obj.get(k) is not None})
        loaded.issues += parser.issues
        if not parser.issues:
            loaded.rows.append(Row(name, row_no, record))
    return loaded


# Normalising ---------------------------------------------------------------------------------------------------

Messages = list[dict[str, str]]


class _RowParser:
    """Turns one raw row's fields into message lists, collecting the row's parse-level issues."""

    def __init__(self, file: str, row: int, template: str):
        self.file, self.row, self.template = file, row, template
        self.issues: list[Issue] = []

    def issue(self, field: str | None, rule: str, message: str, value: Any = None) -> None:
        shown = None if value is None else snippet(value)
        self.issues.append(Issue(self.file, self.row, field, rule, message, shown))

    def id(self, value: Any, stem: str) -> str:
        if value is None:
            return f"{stem}-{self.row}"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.issue("id", "type", f"must be a string or an integer, got {type(value).__name__}", value)
        return str(value)

    def messages(self, value: Any, field: str) -> Messages | None:
        """A list of {role, content} messages (only those two keys kept); None when absent or broken."""
        if value is None:
            return None
        if not isinstance(value, list):
            self.issue(field, "type", f"must be text or a list of messages, got {type(value).__name__}", value)
            return None
        for i, m in enumerate(value, 1):
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                self.issue(field, "type", f"message {i} must be an object with string 'role' and 'content'", m)
                return None
            if m["role"] not in ROLES:
                self.issue(field, "roles", f"message {i} has unknown role '{m['role']}' (use {'/'.join(ROLES)})", m)
                return None
        return [{"role": m["role"], "content": m["content"]} for m in value]

    def prompt(self, value: Any, field: str = "prompt") -> Messages | None:
        if isinstance(value, str):
            # An empty prompt stays empty (not templated) so that the emptiness rule still sees it.
            content = self.template.format(prompt=value) if value.strip() else value
            return [{"role": "user", "content": content}]
        msgs = self.messages(value, field)
        if msgs is not None:
            self.check_prompt_roles(msgs, field)
        return msgs

    def reply(self, value: Any, field: str) -> Messages | None:
        if isinstance(value, str):
            return [{"role": "assistant", "content": value}]
        msgs = self.messages(value, field)
        if msgs is not None:
            self.check_reply_roles(msgs, field)
        return msgs

    def check_prompt_roles(self, msgs: Messages, field: str) -> None:
        """Optional system message first, then user/assistant alternating, ending with user."""
        roles = [m["role"] for m in msgs]
        turns = roles[1:] if roles[:1] == ["system"] else roles
        expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(turns))]
        if not turns or turns != expected or turns[-1] != "user":
            got = ", ".join(roles) or "no messages"
            self.issue(field, "roles", f"prompt must be [system,] user, assistant, …, user; got {got}", msgs)

    def check_reply_roles(self, msgs: Messages, field: str) -> None:
        if [m["role"] for m in msgs] != ["assistant"]:
            got = ", ".join(m["role"] for m in msgs) or "no messages"
            self.issue(field, "roles", f"must be one assistant message; got {got}", msgs)

    def transcript(self, value: Any, field: str) -> Messages | None:
        """A whole conversation: an HH-RLHF string or a message list, ending with the assistant's reply."""
        if value is None:
            return None
        if isinstance(value, str):
            msgs = _parse_hh(value)
            if msgs is None:
                self.issue(field, "transcript", "not an HH-RLHF transcript (no '\\n\\nHuman:' turn)", value)
                return None
        else:
            msgs = self.messages(value, field)
            if msgs is None:
                return None
        if not msgs or msgs[-1]["role"] != "assistant":
            self.issue(field, "roles", "the transcript must end with an assistant turn", value)
            return None
        return msgs

    def split_pair(self, chosen: Any, rejected: Any) -> tuple[Messages | None, ...]:
        """Implicit prompt: chosen and rejected are whole transcripts whose shared prefix is the prompt."""
        c, r = self.transcript(chosen, "chosen"), self.transcript(rejected, "rejected")
        if c is not None and r is not None and c[:-1] != r[:-1]:
            turn = next((i for i, (a, b) in enumerate(zip(c[:-1], r[:-1]), 1) if a != b), min(len(c), len(r)))
            self.issue("rejected", "prompt_mismatch", f"the conversation before the last reply differs from "
                       f"chosen's (from turn {turn}); both must share the same prompt", rejected)
        source = "chosen" if c is not None else "rejected" if r is not None else None
        prompt = c[:-1] if c is not None else r[:-1] if r is not None else []
        if source:
            self.check_prompt_roles(prompt, source)
        return prompt, c[-1:] if c else None, r[-1:] if r else None


def _parse_hh(text: str) -> Messages | None:
    """'\\n\\nHuman: … \\n\\nAssistant: …' → messages; None when there is no Human turn."""
    parts = HH_TURN.split(text)
    if len(parts) < 3 or "Human" not in parts[1::2]:
        return None
    speakers, contents = parts[1::2], parts[2::2]
    return [{"role": "user" if s == "Human" else "assistant", "content": c.strip()} for s, c in zip(speakers, contents)]


def _prompts(p: _RowParser, obj: dict[str, Any], fmt: str) -> dict[str, Any]:
    return {"prompt": p.prompt(obj.get("prompt"))}


def _sft(p: _RowParser, obj: dict[str, Any], fmt: str) -> dict[str, Any]:
    if fmt == "prompt-completion":
        return {"prompt": p.prompt(obj.get("prompt")), "completion": p.reply(obj.get("completion"), "completion")}
    if obj.get("messages") is None:
        # Reported here: the suites check prompt/completion, which a `messages` file does not have as columns.
        p.issue("messages", "missing", "required field is missing")
    msgs = p.transcript(obj.get("messages"), "messages")
    if msgs is None:
        return {"prompt": None, "completion": None}
    p.check_prompt_roles(msgs[:-1], "messages")
    return {"prompt": msgs[:-1], "completion": msgs[-1:]}


def _kto(p: _RowParser, obj: dict[str, Any], fmt: str) -> dict[str, Any]:
    return {
        "prompt": p.prompt(obj.get("prompt")),
        "completion": p.reply(obj.get("completion"), "completion"),
        "label": obj.get("label"),
    }


def _preference(p: _RowParser, obj: dict[str, Any], fmt: str) -> dict[str, Any]:
    chosen, rejected = obj.get("chosen"), obj.get("rejected")
    if fmt in ("hh-rlhf", "implicit-prompt"):
        prompt, chosen, rejected = p.split_pair(chosen, rejected)
    elif _is_transcript(chosen) and _is_transcript(rejected):
        # UltraFeedback (and some conversational sets) repeat the prompt inside chosen/rejected.
        prompt, chosen, rejected = p.split_pair(chosen, rejected)
        _check_prompt_column(p, obj.get("prompt"), prompt)
    else:
        prompt = p.prompt(obj.get("prompt"))
        chosen, rejected = p.reply(chosen, "chosen"), p.reply(rejected, "rejected")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _is_transcript(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(m, dict) and m.get("role") != "assistant" for m in value)


def _check_prompt_column(p: _RowParser, column: Any, prompt: Messages) -> None:
    """The `prompt` column must agree with the conversation that chosen/rejected carry."""
    users = [m["content"] for m in prompt if m["role"] == "user"]
    if isinstance(column, str):
        same = bool(users) and users[-1].strip() == column.strip()
    else:
        same = p.messages(column, "prompt") == prompt
    if not same:
        p.issue("prompt", "prompt_mismatch", "differs from the conversation before the reply in chosen", column)


NORMALISERS = {"prompts": _prompts, "sft": _sft, "preference": _preference, "kto": _kto}
