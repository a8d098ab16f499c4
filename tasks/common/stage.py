"""The module entry every stage shares: `python -m tasks.<stage>` (what dvc.yaml runs).

Loads params.yaml, runs the stage body, prints its metrics; a user-facing error (bad data, bad params, missing
input) exits with status 2 and a one-paragraph message instead of a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("alignflow")


class StageError(RuntimeError):
    """An error the user can fix (bad input, missing file, wrong setting); the message says what and where."""


def stage_main(name: str, body: Callable[[Any], dict[str, Any]]) -> None:
    from tasks.common.params import ParamsError, load_params

    logging.basicConfig(level=os.environ.get("ALIGNFLOW_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # no phoning home from offline or air-gapped machines
    try:
        params = load_params()
        metrics = body(params)
    except (StageError, ParamsError) as exc:
        print(f"alignflow {name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    from tasks.common.distributed import is_main_process

    if is_main_process():  # under `accelerate launch` every rank returns the same metrics: print them once
        print(json.dumps({name: metrics}, indent=2, default=str))
