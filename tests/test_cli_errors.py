"""One error path for the CLI: every command (enumerated from the parser, so a new one is covered) parses
params.yaml before it starts anything, and a bad params.yaml or a bad argument value exits 2 with one stderr line
naming the file, the key and the rule — no traceback. Each case is a real `python -m alignflow.cli` process."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from alignflow.cli import build_parser
from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """Every command the parser takes, down to `label add-labeller`, with the fewest arguments it accepts."""
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, cmd in sub.choices.items():
        if any(isinstance(a, argparse._SubParsersAction) for a in cmd._actions):
            yield from leaf_commands(cmd, (*prefix, name))
            continue
        argv = [*prefix, name]
        for a in cmd._actions:
            if a.option_strings and a.required:
                argv += [a.option_strings[0], a.choices[0] if a.choices else "x"]
            elif not a.option_strings and a.nargs not in ("*", "?"):
                argv.append("x")
        yield argv


COMMANDS = list(leaf_commands(build_parser()))


def alignflow(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignflow.cli", *argv], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=120)


def assert_one_line_exit_2(r: subprocess.CompletedProcess, *fragments: str) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_the_parser_lists_every_command():
    names = {argv[0] for argv in COMMANDS}
    assert {"run", "validate", "serve", "online", "stages", "compare", "compare-methods", "report", "label"} <= names
    assert ["label", "add-labeller", "x"] in COMMANDS


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_refuses_a_bad_params_file(tmp_path, argv):
    (tmp_path / "params.yaml").write_text("sft:\n  trainer:\n    learning_rate: -2.0e-4\n")
    line = assert_one_line_exit_2(alignflow(tmp_path, *argv), "params.yaml", "sft.trainer.learning_rate",
                                  "must be a number > 0")
    assert line.startswith(f"alignflow {argv[0]}: error: params.yaml: ")


def test_a_typo_and_broken_yaml_are_one_line_too(tmp_path):
    (tmp_path / "params.yaml").write_text("align:\n  betta: 0.3\n")
    assert_one_line_exit_2(alignflow(tmp_path, "stages"), "params.yaml", "align.betta", "Extra inputs")
    (tmp_path / "params.yaml").write_text("sft: [1,\n  trainer: {\n")
    assert_one_line_exit_2(alignflow(tmp_path, "stages"), "params.yaml", "not valid YAML")


def test_a_command_that_needs_params_says_it_is_missing(tmp_path):
    assert_one_line_exit_2(alignflow(tmp_path, "stages"), "params.yaml: not found")


@pytest.mark.parametrize(("argv", "fragment"), [
    (["validate", "--kind", "preference", "--max-drop-fraction", "2", "x.jsonl"], "--max-drop-fraction: must be in"),
    (["validate", "--kind", "preference", "--max-drop-fraction", "lots", "x.jsonl"], "--max-drop-fraction"),
    (["compare", "--last", "0"], "--last: must be ≥ 1"),
    (["compare-methods", "--jobs", "0"], "--jobs: must be ≥ 1"),
    (["label", "serve", "--port", "70000"], "--port: must be ≥ 1 and ≤ 65535"),
    (["validate", "--kind", "nope", "x.jsonl"], "--kind: invalid choice"),
])
def test_bad_argument_values_are_refused_by_argparse_in_one_line(tmp_path, argv, fragment):
    line = assert_one_line_exit_2(alignflow(tmp_path, *argv), fragment)
    assert line.startswith("alignflow ") and ": error: argument " in line
