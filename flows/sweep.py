"""`alignflow sweep -S key=v1,v2 …`: a grid of settings as queued DVC experiments, under one MLflow parent run.

Each combination is `dvc exp run --queue -n <sweep>-<i> -S key=value …` and `dvc queue start -j N` runs them, so each
is an ordinary DVC experiment (`dvc exp show`, `dvc exp apply`), reproducible from its params alone. Stages a
combination leaves unchanged come from the committed baseline's dvc.lock and the DVC cache (`dvc pull` first on a
fresh clone), not recomputed. MLflow: one run for the sweep (tag alignflow.sweep), one child per experiment, the
experiment's stage runs under it (tasks/common/tracking.py), so the sweep reads as one tree in the MLflow UI and
`alignflow compare --sweep NAME` puts its experiments side by side — from a tracking server too
(MLFLOW_TRACKING_URI).

Orchestration glue written by hand: DVC queues and runs, MLflow records; nothing joins the two this way. The queue
workers inherit the environment of the `dvc queue start` that spawns them (the sweep's run id, the tracking URI): a
worker left from before would keep its old one, so a sweep refuses to start while another experiment is running
and stops idle workers first.

    alignflow sweep -S align.beta=0.05,0.1,0.3                  # three experiments
    alignflow sweep -S align.method=dpo,ipo -S align.beta=0.1,0.3 --jobs 2 --name beta-vs-loss
    alignflow compare --sweep beta-vs-loss
"""

from __future__ import annotations

import itertools
import sys
from datetime import datetime
from pathlib import Path
from typing import Any


class SweepError(ValueError):
    """A malformed -S, or a dvc command that failed; the message names it."""


def grid(sets: list[str]) -> list[dict[str, str]]:
    """`["a=1,2", "b=x"]` → `[{a: 1, b: x}, {a: 2, b: x}]` (the cartesian product, in the order given)."""
    axes: list[tuple[str, list[str]]] = []
    for item in sets:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise SweepError(f"-S {item!r}: expected KEY=VALUE[,VALUE...]")
        axes.append((key.strip(), [v.strip() for v in values.split(",")]))
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        raise SweepError(f"a key is swept twice: {keys}")
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(v for _, v in axes))]


def run_sweep(sets: list[str], name: str | None = None, jobs: int = 1, out=sys.stdout) -> int:
    import mlflow

    from flows.compare_methods import _dvc, queue_environment, shared_caches, wait
    from tasks.common.params import load_params
    from tasks.common.tracking import SWEEP_ENV, SWEEP_TAG, configure

    combos = grid(sets)
    params, root = load_params(), Path.cwd()
    busy = [ln for ln in _dvc(["dvc", "queue", "status"]).stdout.splitlines() if ln.split()[-1:] == ["Running"]]
    if busy:
        raise SweepError(f"the DVC queue is running other experiments ({len(busy)}): wait, or `dvc queue kill` them")
    _dvc(["dvc", "queue", "stop"], check=False)  # idle workers would keep an older environment
    name = name or datetime.now().strftime("sweep-%Y%m%d-%H%M%S")
    names = [f"{name}-{i}" for i in range(len(combos))]
    common = shared_caches(params, root)
    experiment_id = configure(params.pipeline.experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=name,
                          tags={SWEEP_TAG: name, "alignflow.stage": "sweep"}) as parent:
        mlflow.log_params({f"sweep/{i}": ", ".join(f"{k}={v}" for k, v in c.items()) for i, c in enumerate(combos)})
        for exp_name, combo in zip(names, combos, strict=True):
            sets_args = [a for k, v in {**common, **combo}.items() for a in ("-S", f"{k}={v}")]
            _dvc(["dvc", "exp", "run", "--queue", "-n", exp_name, *sets_args])
        queue_environment(**{SWEEP_ENV: parent.info.run_id})
        print(f"sweep {name}: {len(names)} experiments queued (MLflow run {parent.info.run_id}); "
              f"starting {jobs} queue worker(s)", file=out, flush=True)
        _dvc(["dvc", "queue", "start", "-j", str(jobs)])
        status = wait(names, out=out)
        failed = sorted(n for n, s in status.items() if s != "Success")
        if failed:
            mlflow.set_tag("alignflow.sweep_failed", ",".join(failed))
            print(f"failed: {', '.join(failed)} (dvc queue logs NAME)", file=out)
    print(f"alignflow compare --sweep {name}", file=out)
    return 1 if failed else 0


def sweep_runs(client: Any, experiment: str, sweep: str) -> list[str]:
    """The evaluate (else the last) stage run of each experiment of the sweep, in queue order: each stands for its
    experiment in `alignflow compare` (its params from the experiment's stage runs, its metrics the stage's)."""
    from tasks.common.tracking import SWEEP_TAG

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SweepError(f"no MLflow experiment named {experiment!r} in {client.tracking_uri}")
    parents = client.search_runs([exp.experiment_id], f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`alignflow.stage` = 'sweep'")
    if not parents:
        raise SweepError(f"no sweep named {sweep!r} in experiment {experiment!r} ({client.tracking_uri})")
    experiments = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'",
                                     order_by=["attributes.start_time ASC"])
    picked = []
    for run in experiments:
        stages = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'",
                                    order_by=["attributes.start_time DESC"])
        evaluate = [s for s in stages if s.data.tags.get("alignflow.stage") == "evaluate"]
        if evaluate or stages:
            picked.append((evaluate or stages)[0].info.run_id)
    if not picked:
        raise SweepError(f"sweep {sweep!r} has no finished stage runs yet")
    return picked
