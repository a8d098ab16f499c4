"""`python -m flows.dvc_repro STAGE`: `dvc repro --single-item STAGE` that exits with the stage command's own status.

Why it exists: the pipeline flow must tell a user error (stage_main exits 2 on bad data or bad params: retrying
cannot help) from a crash (worth a retry), and the stage's exit status is the only signal it should trust — not its
wording. The `dvc` command swallows that status: whatever the stage exits with, `dvc repro` exits 255. So this
runs DVC's own CLI entry in-process (same arguments, logging, dvc.lock and run cache as the `dvc` command) and,
when the stage command failed, exits with that command's status instead.

DVC raises StageCmdFailedError(cmd, status) but keeps the status only in its message; a subclass that also keeps
it as an attribute is put where dvc/stage/run.py looks the name up. tests/test_flows.py runs a stage that exits 2
through this module, so a DVC release that moves the name fails a test instead of silently retrying user errors.
"""

from __future__ import annotations

import sys

_failed: list[int] = []  # the status of each stage command that failed in this process (one with --single-item)


def _record_status() -> None:
    from dvc.stage import run
    from dvc.stage.exceptions import StageCmdFailedError

    class _WithStatus(StageCmdFailedError):
        def __init__(self, cmd, status=None):
            super().__init__(cmd, status)
            if status is not None:  # a command killed by signal N: Popen says -N, a shell says 128 + N
                _failed.append(int(status) if status >= 0 else 128 - int(status))

    run.StageCmdFailedError = _WithStatus


def main(argv: list[str] | None = None) -> int:
    from dvc.cli import main as dvc_main

    _record_status()
    args = sys.argv[1:] if argv is None else argv
    rc = dvc_main(["repro", "--single-item", *args])
    return _failed[-1] if rc != 0 and _failed else rc


if __name__ == "__main__":
    sys.exit(main())
