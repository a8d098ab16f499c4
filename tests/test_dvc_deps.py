"""dvc.yaml tells the truth: every stage lists the code it runs and the params it reads.

DVC decides that a stage is up to date from the deps and params that dvc.yaml lists, nothing else; a module a
stage imports but does not list can change without DVC noticing, and the old model stays in place with
`dvc status` clean. So, for each stage, this test computes from the source (ast, every import, also those inside
functions) the closure of `tasks/` and `flows/` modules its `python -m` module imports, and the `params.<section>`
(and `params.<section>.<key>`) reads in those modules, and fails naming the stage and what it does not list.

The closure over-approximates on purpose (a module imported for one method counts for all of them): a dep too many
costs a re-run, a dep too few serves a stale result. The other direction is checked too: listed code the stage
does not import is a stale dep. Package __init__ files with only a docstring run nothing and are not deps; a key
interpolated into the deps (`${data.constitution}`) is already seen by DVC. Plumbing is exempt by name, each with
the reason it cannot change a result, and is a leaf of the closure (what it imports serves the plumbing).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tasks", "flows", "alignflow")

# Plumbing: modules whose change cannot change a stage's outputs. Each is still exercised by the tests.
PLUMBING = {
    "tasks/common/io.py": "atomic writes and JSONL reading: the bytes written are the caller's",
    "tasks/common/stage.py": "the stage wrapper: logging set-up, exit status, MLflow run around the body",
    "tasks/common/tracking.py": "MLflow logging: metrics and lineage go to MLflow, not into the outputs",
}
# Where params are read without changing a result: params.py itself (parsing checks every section at load: a value
# that passes changes nothing there) and the plumbing above.
PARAM_READS_EXEMPT = {"tasks/common/params.py", *PLUMBING}
# Params sections DVC sees another way: `paths.*` are interpolated into deps/outs (a changed path is a changed dep).
SECTIONS_SEEN_ELSEWHERE = {"paths"}
# Python attribute -> params.yaml section, where the two differ (`validate` is a pydantic method name).
SECTION_ALIASES = {"validate_": "validate", "validate_params": "validate"}


def module_file(module: str) -> Path | None:
    """tasks.common.io -> tasks/common/io.py (or the package's __init__.py); None outside our packages."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def direct_imports(path: Path) -> frozenset[Path]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from tasks.common import io` imports the module tasks.common.io; `from tasks.x import f` imports tasks.x
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                f = module_file(".".join(parts[:i]))
                if f is not None and f != path:
                    found.add(f)
    return frozenset(found)


def closure(entry: Path) -> set[Path]:
    """The modules a stage runs. Plumbing is a leaf: what it imports (distributed.py's is-main-process test for
    io.py's and tracking.py's write-once) serves the plumbing; a stage that uses such a module itself reaches it
    through its own imports and lists it."""
    seen, todo = {entry}, [entry]
    while todo:
        current = todo.pop()
        if str(current.relative_to(ROOT)) in PLUMBING:
            continue
        for dep in direct_imports(current):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return {p for p in seen if p.name != "__init__.py" or runs_code(p)}


def runs_code(path: Path) -> bool:
    """A package __init__ with only its docstring (and `from __future__`) runs nothing a stage could depend on."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
               and not (isinstance(n, ast.ImportFrom) and n.module == "__future__") for n in body)


@cache
def param_reads(path: Path) -> frozenset[str]:
    """`params.X` and `params.X.Y` chains in one file, as params.yaml keys (X, X.Y)."""
    from tasks.common.params import Params

    sections = set(Params.model_fields) | set(SECTION_ALIASES)
    reads = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "params"
                and node.attr in sections):
            reads.add(SECTION_ALIASES.get(node.attr, node.attr))
    # the deeper key where the source names one: params.data.prompt_template -> data.prompt_template
    # (only where the deeper name is a field of the section's model: params.data.model_dump() reads all of data)
    text = path.read_text(encoding="utf-8")
    deep = set()
    for section in list(reads):
        field_name = next(f for f, info in Params.model_fields.items() if section in (f, info.alias))
        fields = set(getattr(Params.model_fields[field_name].annotation, "model_fields", {}))
        attrs = [section, *(a for a, s in SECTION_ALIASES.items() if s == section)]
        for attr in attrs:
            for m in re.finditer(rf"\bparams\.{attr}\b(\.(\w+))?", text):
                deep.add(f"{section}.{m.group(2)}" if m.group(2) in fields else section)
    return frozenset(deep)


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def stage_module(stage: dict) -> Path:
    m = re.search(r"python -m ([\w.]+)", stage["cmd"])
    assert m, f"dvc.yaml: cannot find `python -m MODULE` in cmd {stage['cmd']!r}"
    path = module_file(m.group(1))
    assert path is not None, f"dvc.yaml: cmd runs {m.group(1)}, which is not a module under {PACKAGES}"
    return path


def listed_code(stage: dict) -> list[str]:
    return [d for d in stage.get("deps", []) if isinstance(d, str) and d.split("/")[0] in PACKAGES]


def covered(path: str, listed: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in listed)


def missing_code(stage: dict) -> list[str]:
    listed = listed_code(stage)
    files = sorted(str(p.relative_to(ROOT)) for p in closure(stage_module(stage)))
    return [f for f in files if f not in PLUMBING and not covered(f, listed)]


def missing_params(stage: dict) -> list[str]:
    # a key interpolated into the stage's deps (${data.constitution}) is seen by DVC as a dep: a new value is a new path
    interpolated = [m for d in stage.get("deps", []) for m in re.findall(r"\$\{([\w.]+)\}", str(d))]
    listed = [str(p) for p in stage.get("params", [])] + interpolated
    reads = set()
    for p in closure(stage_module(stage)):
        if str(p.relative_to(ROOT)) not in PARAM_READS_EXEMPT:
            reads |= param_reads(p)
    return sorted(k for k in reads if k.split(".")[0] not in SECTIONS_SEEN_ELSEWHERE
                  and not any(k == L or k.startswith(L + ".") for L in listed))


def test_every_stage_lists_the_code_it_imports():
    problems = {name: m for name, s in stages().items() if (m := missing_code(s))}
    assert not problems, "dvc.yaml deps miss imported modules (add them, or exempt plumbing in this test):\n" + \
        "\n".join(f"  {name}: {', '.join(files)}" for name, files in problems.items())


def test_every_stage_lists_the_params_it_reads():
    problems = {name: m for name, s in stages().items() if (m := missing_params(s))}
    assert not problems, "dvc.yaml params miss what the stage reads:\n" + \
        "\n".join(f"  {name}: {', '.join(keys)}" for name, keys in problems.items())


def test_listed_code_exists():
    """A dep that names no file (a rename) would make DVC fail at repro; a stale one hides the real dep."""
    stale = {name: [d for d in listed_code(s) if not (ROOT / d).exists()] for name, s in stages().items()}
    assert not any(stale.values()), f"dvc.yaml deps name missing files: {stale}"


def test_the_check_catches_a_missing_dep():
    """The test above can fail: drop one listed module of a stage and it is reported."""
    stage = dict(stages()["train_reward"])
    stage["deps"] = [d for d in stage["deps"] if d != "tasks/common/reward.py"]
    assert "tasks/common/reward.py" in missing_code(stage)
    stage = dict(stages()["align"])
    stage["params"] = [p for p in stage["params"] if p != "align"]
    assert "align" in missing_params(stage)
    stage = dict(stages()["sft"])
    stage["deps"] = [*stage["deps"], "tasks/ppo"]
    assert extra_code(stage) == ["tasks/ppo"]


def extra_code(stage: dict) -> list[str]:
    """Listed code the stage does not run: a stale dep re-runs the stage for nothing and hides which code matters."""
    files = [str(p.relative_to(ROOT)) for p in closure(stage_module(stage))]
    return [d for d in listed_code(stage) if not any(covered(f, [d]) for f in files)]


def test_every_listed_module_is_imported():
    problems = {name: m for name, s in stages().items() if (m := extra_code(s))}
    assert not problems, "dvc.yaml deps list code the stage does not import (drop it):\n" + \
        "\n".join(f"  {name}: {', '.join(files)}" for name, files in problems.items())
