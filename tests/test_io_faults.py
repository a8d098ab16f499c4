"""Fault injection for the output swap (tasks/common/io.py): a writer subprocess is SIGKILLed at each of its
filesystem steps in turn — before, between and after every fsync and rename — and after each kill the output must
be the complete old tree or the complete new one (never neither, never a mix), and the next write must leave no
leftovers beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.common import io

ROOT = Path(__file__).resolve().parents[1]
OLD = {"a.txt": "old a", "sub/b.txt": "old b"}
NEW = {"a.txt": "new a " * 1000, "sub/b.txt": "new b", "sub/c.txt": "new c"}
NEXT = {"a.txt": "next a"}

# The writer: wraps io's step functions so that it kills itself just before step `kill_at` (or after the last step
# when kill_at equals their count); kill_at -1 runs to the end and prints the steps it took.
WRITER = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    import tasks.common.io as io
    target, kind, content, kill_at, exchange = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    steps = []
    def wrap(name):
        real = getattr(io, name)
        def step(*args, **kwargs):
            if len(steps) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            steps.append(name)
            return real(*args, **kwargs)
        setattr(io, name, step)
    if exchange == "off":
        io._exchange = lambda a, b: False
    for name in ("_fsync_fd", "_fsync_dir", "_rename", "_exchange", "_remove"):
        wrap(name)
    if kind == "dir":
        with io.atomic_dir(target) as staging:
            for rel, text in content.items():
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / rel).write_text(text)
    else:
        io.atomic_write_text(target, content["a.txt"])
    if len(steps) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    print(json.dumps(steps))
""")


def _write(target: Path, kind: str, content: dict[str, str], kill_at: int = -1, exchange: str = "on"):
    return subprocess.run([sys.executable, "-c", WRITER, str(target), kind, json.dumps(content), str(kill_at), exchange],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def _tree(target: Path) -> dict[str, str] | None:
    if not target.exists():
        return None
    if target.is_file():
        return {"a.txt": target.read_text()}
    return {str(p.relative_to(target)): p.read_text() for p in sorted(target.rglob("*")) if p.is_file()}


def _fresh(tmp_path: Path, kind: str, name: str) -> Path:
    target = tmp_path / name / ("out" if kind == "dir" else "metrics.json")
    r = _write(target, kind, OLD if kind == "dir" else {"a.txt": OLD["a.txt"]})
    assert r.returncode == 0, r.stderr
    return target


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_kill_at_any_step_leaves_the_old_or_the_new_output_whole(tmp_path, kind):
    probe = _fresh(tmp_path, kind, "probe")
    new = NEW if kind == "dir" else {"a.txt": NEW["a.txt"]}
    r = _write(probe, kind, new)
    assert r.returncode == 0, r.stderr
    steps = json.loads(r.stdout)
    assert "_rename" in steps or "_exchange" in steps
    if kind == "dir":
        assert "_exchange" in steps and "_rename" not in steps  # one atomic swap on this OS
        assert steps.count("_fsync_fd") == len(new) and "_remove" in steps
    else:
        assert steps == ["_fsync_fd", "_rename", "_fsync_dir"]
    old = OLD if kind == "dir" else {"a.txt": OLD["a.txt"]}
    seen = set()
    for kill_at in range(len(steps) + 1):
        target = _fresh(tmp_path, kind, f"k{kill_at}")
        r = _write(target, kind, new, kill_at)
        assert r.returncode == -9, (kill_at, r.stderr)
        state = _tree(target)
        assert state in (old, new), f"kill before step {kill_at} ({steps[kill_at:kill_at + 1]}): {state}"
        seen.add("new" if state == new else "old")
        r = _write(target, kind, NEXT)
        assert r.returncode == 0, r.stderr
        assert _tree(target) == NEXT
        assert sorted(p.name for p in target.parent.iterdir()) == [target.name], f"leftovers after kill {kill_at}"
    assert seen == {"old", "new"}  # the kill points straddle the swap


def test_without_an_atomic_exchange_the_next_start_restores_the_aside_copy(tmp_path):
    """The fallback (two renames) has one moment without the target; the next write of it puts the old one back."""
    probe = _fresh(tmp_path, "dir", "probe")
    steps = json.loads(_write(probe, "dir", NEW, exchange="off").stdout)
    assert steps.count("_rename") == 2  # _exchange is asked and declines
    gap = steps.index("_rename") + 1  # after "old aside", before "new in place"
    for kill_at in range(len(steps) + 1):
        target = _fresh(tmp_path, "dir", f"k{kill_at}")
        assert _write(target, "dir", NEW, kill_at, exchange="off").returncode == -9
        state = _tree(target)
        if kill_at == gap:
            assert state is None and any(".out.old-" in p.name for p in target.parent.iterdir())
            io.recover(target)
            state = _tree(target)
        assert state in (OLD, NEW), (kill_at, state)
        assert _write(target, "dir", NEXT, exchange="off").returncode == 0
        assert _tree(target) == NEXT and [p.name for p in target.parent.iterdir()] == ["out"]


def test_recover_leaves_a_live_writers_files_alone(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mine = tmp_path / f".out.staging-{live.pid}-abc"
        mine.mkdir()
        dead = tmp_path / ".out.tmp-999999999-xyz"
        dead.write_text("half")
        other = tmp_path / ".other.staging-999999999-q"  # another target's: not ours to touch
        other.mkdir()
        assert io.recover(target) == [dead]
        assert mine.exists() and not dead.exists() and other.exists()
    finally:
        live.kill()
        live.wait()
    assert io.recover(target) == [mine] and not mine.exists()


def test_a_failing_body_keeps_the_old_output_and_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    with io.atomic_dir(target) as staging:
        (staging / "a.txt").write_text("good")
    with pytest.raises(RuntimeError), io.atomic_dir(target) as staging:
        (staging / "a.txt").write_text("half")
        raise RuntimeError("validation failed")
    assert _tree(target) == {"a.txt": "good"} and os.listdir(tmp_path) == ["out"]


def test_staging_names_are_git_ignored():
    names = [".validated.staging-12-ab", ".validated.old-12-cd", ".eval.json.tmp-12-ef"]
    r = subprocess.run(["git", "check-ignore", *[f"data/{n}" for n in names]], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == len(names), r.stdout + r.stderr
