"""Files in and out, written so that a failed stage never leaves a half-written output behind.

Every stage output (model directory, dataset, report, metrics) goes through `atomic_dir` / `atomic_write_text`:
the new content is built next to the target and swapped in only when complete, so a crash, a kill or a
validation failure leaves the previous good output exactly as it was.

Under a multi-process launch (tasks/common/distributed.py) only the main process writes: the others get a private
scratch directory from `atomic_dir` (thrown away) and skip `atomic_write_text`, so a stage body needs no rank
checks around its writes, and every rank leaves `atomic_dir` only after the main process has swapped the new
output in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tasks.common.distributed import barrier, is_main_process


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh staging directory; on success it replaces `target` (old content removed only then).

    Every rank must enter it (the body may hold collectives, e.g. gathering sharded weights to save them)."""
    if not is_main_process():
        scratch = Path(tempfile.mkdtemp(prefix=f".{Path(target).name}.rank-"))
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        barrier()  # wait until the main process has swapped the output in
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it 0700; outputs are shared (DVC cache, other users)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, backup)
    os.replace(staging, target)
    if backup.exists():
        shutil.rmtree(backup, ignore_errors=True)
    barrier()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` via a temporary file and a rename; a no-op on the non-main ranks of a multi-process launch."""
    if not is_main_process():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=_jsonable) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    lines = [json.dumps(r, ensure_ascii=False, default=_jsonable) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """For files this project wrote itself; user files go through tasks.common.records (row-level errors)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
