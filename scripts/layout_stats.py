"""The shape of the code base: files and lines per folder, the largest files, and upward imports.

An upward import is one that goes against the layering the README's "Layout" describes:
    tasks/common  <-  tasks/<stage helpers> (ppo/, dpo/, preferences/, judges/, evaluation/)  <-  tasks/<stage>.py
    tasks/        <-  flows/  <-  alignflow/
i.e. tasks/common importing anything else under tasks/, any module of tasks/ importing flows/ or alignflow/, and
flows/ importing alignflow/ except the online loop's label store (the store is the loop's input). Imports inside
functions count: they run too.

    python scripts/layout_stats.py            # this checkout
    python scripts/layout_stats.py --rev REV  # any commit (read with git show, nothing checked out)
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from collections import defaultdict
from pathlib import PurePosixPath

PACKAGES = ("tasks", "flows", "alignflow")
ALLOWED_UPWARD = {("flows/online.py", "alignflow.labeling")}  # the loop exports the labelling store


def files_at(rev: str | None) -> dict[str, str]:
    if rev is None:
        names = subprocess.run(["git", "ls-files", *PACKAGES], capture_output=True, text=True, check=True).stdout
        return {n: open(n, encoding="utf-8").read() for n in names.split() if n.endswith(".py")}
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, *PACKAGES], capture_output=True, text=True,
                           check=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{rev}:{n}"], capture_output=True, text=True, check=True).stdout
            for n in names if n.endswith(".py")}


def imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return [m for m in found if m.split(".")[0] in PACKAGES]


def layer(path_or_module: str) -> tuple[int, str]:
    """(rank, name): a lower rank may not import a higher one."""
    parts = path_or_module.replace("/", ".").removesuffix(".py").split(".")
    if parts[0] == "alignflow":
        return 4, "alignflow"
    if parts[0] == "flows":
        return 3, "flows"
    if len(parts) > 1 and parts[1] == "common":
        return 0, "tasks/common"
    if len(parts) > 2:
        return 1, f"tasks/{parts[1]}/"
    return 2, "tasks/<stage>.py"


def upward(files: dict[str, str]) -> list[str]:
    bad = set()
    packages = {p.removesuffix("/__init__.py").replace("/", ".") for p in files if p.endswith("/__init__.py")}
    for path, source in files.items():
        rank, name = layer(path)
        for module in imports(source):
            if module in packages:  # `from tasks.evaluation import x`: x is what is imported
                continue
            target_rank, target = layer(module)
            if name == "tasks/common" and target != "tasks/common":
                bad.add(f"{path} -> {module}")
            elif target_rank > rank and rank != 1 and not any(path == p and module.startswith(m)
                                                               for p, m in ALLOWED_UPWARD):
                bad.add(f"{path} -> {module}")
            elif rank == 1 and target_rank >= 2:
                bad.add(f"{path} -> {module}")
    # `from tasks.common import io` names both tasks.common and tasks.common.io: keep the most specific
    return sorted(b for b in bad if not any(o != b and o.startswith(b + ".") for o in bad))


def sideways(files: dict[str, str]) -> list[str]:
    """A stage helper package importing another's (tasks/evaluation/ -> tasks/ppo/), or a stage module another
    stage's module: a change to one stage's code makes the other stage stale. tasks/judges/ is shared by design (collect_preferences and evaluate both judge)."""
    found = set()
    packages = {p.removesuffix("/__init__.py").replace("/", ".") for p in files if p.endswith("/__init__.py")}
    for path, source in files.items():
        rank, name = layer(path)
        for module in imports(source):
            if module in packages:
                continue
            target_rank, target = layer(module)
            if rank == 1 and target_rank == 1 and target != name and target != "tasks/judges/":
                found.add(f"{path} -> {module}")
            if rank == 2 and target_rank == 2 and module.replace(".", "/") + ".py" != path:
                found.add(f"{path} -> {module}")  # a stage module importing another stage's module
    return sorted(b for b in found if not any(o != b and o.startswith(b + ".") for o in found))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", help="a git revision (default: the working tree)")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    files = files_at(args.rev)
    per_dir: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path, source in files.items():
        d = str(PurePosixPath(path).parent)
        per_dir[d][0] += 1
        per_dir[d][1] += source.count("\n")
    print(f"## {args.rev or 'working tree'}\n\n| folder | files | lines |\n|---|---|---|")
    for d in sorted(per_dir):
        print(f"| {d} | {per_dir[d][0]} | {per_dir[d][1]} |")
    print(f"| **all** | {len(files)} | {sum(s.count(chr(10)) for s in files.values())} |\n")
    print("Largest files: " + ", ".join(f"{p} {s.count(chr(10))}" for p, s in
                                         sorted(files.items(), key=lambda kv: -kv[1].count("\n"))[:args.top]))
    bad = upward(files)
    print(f"\nUpward imports: {len(bad)}" + "".join(f"\n- {b}" for b in bad))
    side = sideways(files)
    print(f"\nSideways imports between stage helper packages: {len(side)}" + "".join(f"\n- {b}" for b in side))


if __name__ == "__main__":
    main()
