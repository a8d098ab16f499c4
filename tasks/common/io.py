"""Files in and out, written so that a failed or killed stage never leaves a half-written output behind.

Every stage output (model directory, dataset, report, metrics) goes through `atomic_dir` / `atomic_write_text`:
the new content is built next to the target, flushed to disk, and swapped in only when complete, so a crash, a kill
or a validation failure leaves the previous good output exactly as it was — at every instant, not just at the end:

- a file is replaced with one `rename(2)` (atomic on POSIX);
- a directory that already exists is replaced with one `renameat2(RENAME_EXCHANGE)` (Linux ≥ 3.15: ext4, xfs,
  btrfs, tmpfs, overlayfs) or `renamex_np(RENAME_SWAP)` (macOS), which swaps the old and new trees in one step, so
  there is no moment without `target`; the old tree, now under the staging name, is deleted afterwards;
- where neither exists (or the filesystem refuses it) the fallback is two renames (old aside, new in place); a kill
  between them leaves `target` missing for that moment, and the next `atomic_dir` of the same target restores the
  aside copy.

File contents and the parent directory are fsynced before each rename, so a power cut cannot leave a renamed but
empty file. Temporary names are `.<name>.staging-<pid>-*`, `.<name>.old-<pid>-*` and `.<name>.tmp-<pid>-*` (git-
ignored); the next write of the same target removes those whose process is gone (`recover`). The steps that
mutate the filesystem go through the small `_fsync*` / `_rename` / `_exchange` / `_remove` functions below, which
the fault-injection test (tests/test_io_faults.py) kills a writer at, one step at a time.

Under a multi-process launch (tasks/common/distributed.py) only the main process writes: the others get a private
scratch directory from `atomic_dir` (thrown away) and skip `atomic_write_text`, so a stage body needs no rank
checks around its writes, and every rank leaves `atomic_dir` only after the main process has swapped the new
output in.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tasks.common.distributed import barrier, is_main_process

_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>staging|old|tmp)-(?P<pid>\d+)-[^/]*$")


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
    recover(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-{os.getpid()}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it 0700; outputs are shared (DVC cache, other users)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_tree(staging)
    swap_in(staging, target)
    barrier()


def swap_in(staging: Path, target: Path) -> None:
    """Put the complete tree `staging` at `target` so that `target` is, at every instant, the old or the new tree."""
    if not target.exists():
        _rename(staging, target)
        _fsync_dir(target.parent)
        return
    if target.is_dir() and not target.is_symlink() and _exchange(staging, target):
        _fsync_dir(target.parent)
        _remove(staging)  # now the old tree
        return
    backup = target.parent / f".{target.name}.old-{os.getpid()}-{os.urandom(4).hex()}"
    _rename(target, backup)
    _rename(staging, target)
    _fsync_dir(target.parent)
    _remove(backup)


def recover(target: str | Path) -> list[Path]:
    """Clean up what a killed writer of `target` left beside it; restore `target` from an aside copy if a kill
    fell between the fallback's two renames. Leftovers of a process that is still running are left alone.
    Returns the leftovers it handled."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    found: list[tuple[Path, str]] = []
    for path in target.parent.iterdir():
        m = _LEFTOVER.match(path.name)
        if m and m["name"] == target.name and not _alive(int(m["pid"])):
            found.append((path, m["kind"]))
    if not os.path.lexists(target):
        aside = sorted((p for p, kind in found if kind == "old"), key=lambda p: p.stat().st_mtime)
        if aside:
            _rename(aside[-1], target)  # the previous good output, complete: it was renamed aside whole
            _fsync_dir(target.parent)
    for path, _ in found:
        if os.path.lexists(path):
            _remove(path)
    return [p for p, _ in found]


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` via a temporary file and a rename; a no-op on the non-main ranks of a multi-process launch."""
    if not is_main_process():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            _fsync_fd(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        _rename(Path(tmp), path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# The filesystem steps of a swap, one function each (the fault-injection test wraps them).

def _fsync_fd(fd: int) -> None:
    os.fsync(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under `root` (libraries such as save_pretrained do not fsync)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                _fsync_fd(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _rename(src: Path, dst: Path) -> None:
    os.replace(src, dst)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step; False where the OS or filesystem cannot (then the caller falls back)."""
    fn = _exchange_fn()
    if fn is None:
        return False
    if fn(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


_EXCHANGE: list[Any] = []


def _exchange_fn() -> Any:
    if not _EXCHANGE:
        _EXCHANGE.append(_load_exchange())
    return _EXCHANGE[0]


def _load_exchange() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        at_fdcwd, rename_exchange = -100, 2
        return lambda a, b: libc.renameat2(at_fdcwd, a, at_fdcwd, b, rename_exchange)
    if sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rename_swap = 0x2
        return lambda a, b: libc.renamex_np(a, b, rename_swap)
    return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


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
