"""The project's own wiring: params files parse, the DVC triangle holds, the Dockerfile lints and matches
the install script, the README keeps its two commands, and the CLI answers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.common.params import ParamsError, load_params, parse_params
from tests.conftest import REPO, tiny_params


def test_shipped_params_parse():
    params = load_params(REPO / "params.yaml")
    assert params.align.method == "dpo"
    assert params.validate_params.on_error == "fail"


def test_tiny_overlay_parses(tiny_model_dir):
    params = parse_params(tiny_params(tiny_model_dir))
    assert params.sft.trainer["max_steps"] == 6


@pytest.mark.parametrize("path", sorted(REPO.glob("examples/*/params*.yaml")), ids=lambda p: p.parent.name)
def test_example_overlays_parse(path):
    """parse_params raises ParamsError naming the key on any unknown key, bad type or out-of-range value."""
    from tasks.common.params import deep_merge

    base = yaml.safe_load((REPO / "params.yaml").read_text())
    parse_params(deep_merge(base, yaml.safe_load(path.read_text())))


def test_typo_names_the_key():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["align"]["betta"] = 0.3
    with pytest.raises(ParamsError, match=r"align\.betta"):
        parse_params(raw)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["align"]["method"] = "ppo2"
    with pytest.raises(ParamsError, match=r"align\.method"):
        parse_params(raw)


def test_dvc_triangle():
    """Every dvc.yaml stage has a tasks/ module of the same name and, where it has params, lists its own section
    whole. Which other sections or keys it may list is tests/test_dvc_deps.py's job: exactly those its code reads
    (train_reward reads collect_preferences.min_margin, evaluate the registered model's name, ...)."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    sections = set(yaml.safe_load((REPO / "params.yaml").read_text()))
    for name, stage in dvc["stages"].items():
        # training stages take an optional multi-process launcher from the environment (README)
        assert stage["cmd"] in (f"python -m tasks.{name}", f"$ALIGNFLOW_LAUNCHER python -m tasks.{name}")
        assert (REPO / "tasks" / f"{name}.py").exists()
        listed = [p for p in stage.get("params", []) if isinstance(p, str)]
        if listed:
            assert name in listed and name in sections, f"{name} must list its own params section"
            assert len(set(listed)) == len(listed), f"{name} lists a params entry twice"


def test_dockerfile_lints_and_uses_install_script():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    r = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (REPO / "Dockerfile").read_text()
    assert "scripts/install.sh" in text, "the image must build the environment the install script builds"
    assert "requirements.lock" in text


def test_readme_gives_exactly_two_setup_commands():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```(?:bash|sh)?\n(.*?)```", readme, re.DOTALL)
    assert block, "README needs a Quick start code block"
    commands = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands == ["bash scripts/run_default.sh", "bash scripts/test.sh"]
    ci = (REPO / ".ci/run").read_text()
    assert "bash scripts/test.sh" in ci


def test_cli_help_is_fast_and_lists_commands():
    r = subprocess.run([sys.executable, "-m", "alignflow.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0
    for cmd in ("run", "validate", "serve", "stages", "compare", "report"):
        assert cmd in r.stdout


def test_cli_validate_exit_codes(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "hi", "chosen": "same", "rejected": "same"}\n{"prompt": "x", "chosen": "b"\n')
    cmd = [sys.executable, "-m", "alignflow.cli", "validate", "--kind", "preference", str(bad)]
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert "pairs.jsonl:1: field 'rejected': chosen_equals_rejected" in r.stdout
    assert "pairs.jsonl:2" in r.stdout and "malformed JSON" in r.stdout
    assert (tmp_path / "reports/checks/cli-report.html").exists()
    good = [sys.executable, "-m", "alignflow.cli", "validate", "--kind", "prompts", str(REPO / "data/raw/prompts_eval.jsonl")]
    assert subprocess.run(good, capture_output=True, text=True, cwd=tmp_path, env=env).returncode == 0


def test_serve_builds_cron_deployment():
    from flows.pipeline import scheduled_deployment

    deployment = scheduled_deployment("15 2 * * 1")
    assert deployment.name == "alignflow-scheduled"
    assert deployment.schedules[0].schedule.cron == "15 2 * * 1"
