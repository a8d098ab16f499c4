"""This environment's command-line tools (dvc, prefect, mlflow, moto_server): the ones beside sys.executable, so
that a command started as `.venv/bin/alignflow` without activating the venv runs the venv's tools, not whatever
PATH holds; the bare name (PATH) when there is none beside it."""

from __future__ import annotations

import sys
from pathlib import Path


def venv_exe(name: str) -> str:
    here = Path(sys.executable).with_name(name)
    return str(here) if here.exists() else name
