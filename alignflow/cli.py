"""`alignflow` — what a person types. Thin: every command calls a flow or a stage body.

    alignflow run [--stage NAME ...]                  run the pipeline through Prefect (skips up-to-date stages)
    alignflow validate --kind preference FILE ...     check data files; exit 1 with file/row/field/rule on bad data
    alignflow validate --kind constitution FILE       check a constitution (principles, few-shot examples)
    alignflow serve [--online]                        serve the pipeline (or the online loop) on its cron schedule
    alignflow online                                  one iteration of the online preference loop now
    alignflow stages                                  list the stages in execution order and whether they are stale
    alignflow compare [RUN_ID ...] [--last N]         pipeline runs side by side: params that differ, metrics
    alignflow compare-methods [--methods M ...]       PPO/DPO/KTO/IPO/SimPO on gold and AI labels as DVC experiments
    alignflow report RUN_ID [--output DIR]            re-render a run's evaluation report from MLflow
    alignflow label import|add-labeller NAME|serve|export   human labelling page (alignflow/labeling/)
    alignflow deploy --pool POOL [--repo URL --rev REV]   register the pipeline on a Prefect work pool (a team's workers)
    alignflow sweep -S KEY=V1,V2 [-S …] [--jobs N]    a grid as queued DVC experiments under one MLflow run
    alignflow compare --sweep NAME                    that sweep's experiments side by side

Heavy imports (Prefect, DVC, torch) happen inside the commands so `alignflow --help` is instant.

One error path: a bad argument value or a bad params.yaml (parsed before every command) exits 2 with one line,
`alignflow CMD: error: ...` — for params, the file, the dotted key and the rule; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HEADLINE = ("policy/gold_reward", "sft/gold_reward", "policy/rm_score", "policy/kl_sft", "policy/judge_win_rate_vs_sft",
            "guard/reward_hacking")


def _params(args: argparse.Namespace):
    """params.yaml as main() parsed it; a command that needs one fails here (ParamsError) when there is none."""
    from tasks.common.params import load_params

    return args.params if args.params is not None else load_params()


def _run(args: argparse.Namespace) -> int:
    from flows.pipeline import pipeline_flow, stale_stages

    _params(args)
    start = time.perf_counter()
    if not args.stage and not stale_stages():
        # Like `dvc repro` (1.3 s): nothing to do is answered without starting Prefect's server (~11 s) or opening
        # an MLflow run that would record only skips. Scheduled runs (`alignflow serve`) still run the flow.
        print(f"alignflow run: every stage is up to date (dvc status), nothing to run "
              f"({time.perf_counter() - start:.1f} s). `alignflow stages` lists them; `dvc repro -f -s STAGE` forces one.")
        return 0
    try:
        summary = pipeline_flow(stages=args.stage or None)
    except Exception as exc:  # the flow already logged the details; end with the cause, not a traceback
        print(f"\nalignflow run failed: {exc}", file=sys.stderr)
        return 1
    summary.pop("markdown", None)
    metrics = summary.pop("eval", {}) or {}
    summary["eval"] = {k: v for k, v in metrics.items()  # the headline; metrics/eval.json has all of them
                       if k in HEADLINE or k.startswith("gate/")}
    print(json.dumps(summary, indent=2, default=str))
    print(f"\nalignflow run finished in {time.perf_counter() - start:.1f} s; MLflow run {summary['mlflow_run_id']}")
    if summary.get("report"):
        print(f"evaluation report: {os.path.abspath(summary['report'])}")
    return 0


def _validate_constitution(files: list[str]) -> int:
    """`alignflow validate --kind constitution FILE…`: the checks collect_preferences / critique_revise run on load."""
    from tasks.common.constitution import ConstitutionError, load_constitution

    status = 0
    for f in files:
        try:
            c = load_constitution(f)
        except ConstitutionError as exc:
            print(exc)
            status = 1
            continue
        print(f"{f}: {c.name}: {len(c.principles)} principles ({len(c.for_use('label'))} label, "
              f"{len(c.for_use('revise'))} revise), {len(c.few_shot)} few-shot examples: ok")
    return status


def _validate(args: argparse.Namespace) -> int:
    if args.kind == "constitution":
        return _validate_constitution(args.files)
    from tasks.common.validation import validate_cli

    kwargs = {"report": args.report} if args.report else {}
    return validate_cli(
        args.kind, args.files, on_error=args.on_error, max_drop_fraction=args.max_drop_fraction, **kwargs
    )


def _serve(args: argparse.Namespace) -> int:
    params = _params(args)
    from prefect import serve

    from flows.pipeline import scheduled_deployment

    if args.online:
        from flows.online import online_deployment

        deployment = online_deployment(args.cron or params.online.cron)
    else:
        deployment = scheduled_deployment(args.cron or params.pipeline.cron)
    print(f"serving {deployment.name} on cron '{deployment.schedules[0].schedule.cron}' (Ctrl-C to stop)")
    serve(deployment)
    return 0


def _online(args: argparse.Namespace) -> int:
    _params(args)
    from flows.online import OnlineLoopError, online_flow

    try:
        result = online_flow()
    except OnlineLoopError as exc:
        print(f"alignflow online: {exc}", file=sys.stderr)
        return 2
    result.pop("pipeline", None)
    print(json.dumps(result, indent=2, default=str))
    return 0


def _stages(args: argparse.Namespace) -> int:
    _params(args)
    from flows.pipeline import stage_order, stale_stages

    stale = set(stale_stages())  # one `dvc status`, not one per stage
    for name in stage_order():
        print(f"{name:22s} {'stale' if name in stale else 'up to date'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """`alignflow compare`: exit 2 on an unknown run id, a missing store or experiment, or nothing to compare."""
    from pathlib import Path

    from mlflow import MlflowClient

    from alignflow.compare import DEFAULT_PATTERNS, FORMATS, CompareError, collect, pipeline_runs
    from tasks.common.io import atomic_write_text
    from tasks.common.tracking import tracking_uri

    if sum(map(bool, (args.runs, args.last is not None, args.sweep))) > 1:
        print("alignflow compare: give run ids, --last N or --sweep NAME, not two of them", file=sys.stderr)
        return 2
    # one params.yaml download per run: a progress bar each would bury the table
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri()
    # opening a missing sqlite store would create an empty one (and run its migrations) just to find nothing
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        print(f"alignflow compare: no MLflow store at {uri} (run from the project root, or set MLFLOW_TRACKING_URI)",
              file=sys.stderr)
        return 2
    client = MlflowClient(uri)
    from flows.sweep import SweepError, sweep_runs

    experiment = args.experiment or (_params(args).pipeline.experiment if not args.runs else None)
    try:
        if args.sweep:
            run_ids = sweep_runs(client, experiment, args.sweep)
        else:
            run_ids = args.runs or pipeline_runs(client, experiment, args.last or 5)
        text = FORMATS[args.format](collect(client, run_ids, args.metrics or DEFAULT_PATTERNS))
    except (CompareError, SweepError) as exc:
        print(f"alignflow compare: {exc}", file=sys.stderr)
        return 2
    if args.output:
        atomic_write_text(args.output, text)
        print(f"wrote {args.output} ({len(run_ids)} runs)")
    else:
        print(text, end="")
    return 0


def _compare_methods(args: argparse.Namespace) -> int:
    """`alignflow compare-methods`: exit 1 when an experiment failed, 2 on a dvc or params error."""
    _params(args)
    from flows.compare_methods import METHODS, CompareMethodsError, run_compare_methods

    unknown = [m for m in args.methods or [] if m not in METHODS]
    if unknown:
        print(f"alignflow compare-methods: unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}",
              file=sys.stderr)
        return 2
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return run_compare_methods(args.methods or list(METHODS), collect=args.collect, jobs=args.jobs,
                                   readme=args.readme, dry_run=args.dry_run)
    except CompareMethodsError as exc:
        print(f"alignflow compare-methods: {exc}", file=sys.stderr)
        return 2


def _report(args: argparse.Namespace) -> int:
    """`alignflow report RUN_ID`: exit 2 when the run or its report document is not in the store."""
    from alignflow.rerender import ReportNotFound, rerender

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        path = rerender(args.run_id, args.output)
    except ReportNotFound as exc:
        print(f"alignflow report: {exc}", file=sys.stderr)
        return 2
    print(f"evaluation report: {os.path.abspath(path)}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """`alignflow sweep`: exit 2 on a malformed -S or a dvc command that failed, 1 when an experiment failed."""
    from flows.compare_methods import CompareMethodsError
    from flows.sweep import SweepError, run_sweep

    _params(args)
    try:
        return run_sweep(args.set, name=args.name, jobs=args.jobs)
    except (SweepError, CompareMethodsError) as exc:
        print(f"alignflow sweep: error: {exc}", file=sys.stderr)
        return 2


def _deploy(args: argparse.Namespace) -> int:
    """`alignflow deploy`: exit 2 when the deployment could not work as asked (the message says why)."""
    from alignflow.deploy import DeployError, DeployRequest, deploy

    cron = "" if args.no_schedule else args.cron
    try:
        out = deploy(DeployRequest(pool=args.pool, name=args.name, repo=args.repo, rev=args.rev, cron=cron,
                                   work_dir=args.work_dir))
    except DeployError as exc:
        print(f"alignflow deploy: error: {exc}", file=sys.stderr)
        return 2
    print(f"deployment {out['deployment']} ({out['id']}) on work pool {out['pool']!r}: commit {out['commit']} of "
          f"{out['repo']}, schedule {out['cron']}")
    print(f"start a worker on each host:  prefect worker start --pool {out['pool']}")
    print(f"run it now:                   prefect deployment run '{out['deployment']}'")
    return 0


def _label(args: argparse.Namespace) -> int:
    from alignflow.labeling.cli import run_label

    return run_label(_params(args), args)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error here (`--help` shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _int_in(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low or high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be ≥ {low}" + (f" and ≤ {high}" if high else "") + f", got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="alignflow", description="Preference-learning pipeline (Prefect + DVC + MLflow).")
    p.set_defaults(params=None)  # main() puts the parsed params.yaml here; a caller of args.fn may leave it unset
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline through Prefect (up-to-date stages are skipped)")
    run.add_argument("--stage", action="append", help="run only this stage (repeatable); default: all")
    run.set_defaults(fn=_run)

    val = sub.add_parser("validate", help="validate data files of one kind")
    val.add_argument("--kind", required=True, choices=["prompts", "sft", "preference", "kto", "constitution"])
    val.add_argument("--on-error", choices=["fail", "drop"], default=None, help="default: params.yaml or fail")
    val.add_argument("--max-drop-fraction", type=_fraction, default=None, help="default: params.yaml (0.02)")
    val.add_argument("--report", default=None, help="HTML report path (default reports/checks/cli-report.html)")
    val.add_argument("files", nargs="+")
    val.set_defaults(fn=_validate)

    serve = sub.add_parser("serve", help="serve the pipeline as a cron-scheduled Prefect deployment")
    serve.add_argument("--cron", default=None, help="override params.yaml pipeline.cron (online.cron with --online)")
    serve.add_argument("--online", action="store_true", help="serve the online preference loop instead")

    onl = sub.add_parser("online", help="one iteration of the online preference loop now")
    onl.set_defaults(fn=_online)
    serve.set_defaults(fn=_serve)

    stages = sub.add_parser("stages", help="list stages in execution order and whether each is stale")
    stages.set_defaults(fn=_stages)

    cmp = sub.add_parser("compare", help="pipeline runs side by side: params that differ, metrics")
    cmp.add_argument("runs", nargs="*", metavar="RUN_ID", help="MLflow run ids (a stage run stands for its pipeline "
                     "run); default: the last pipeline runs")
    cmp.add_argument("--last", type=_int_in(1), default=None, metavar="N", help="the last N pipeline runs (default 5)")
    cmp.add_argument("--experiment", default=None, help="default: params.yaml pipeline.experiment")
    cmp.add_argument("--sweep", default=None, metavar="NAME", help="the experiments of an `alignflow sweep`")
    cmp.add_argument("--metrics", nargs="+", default=None, metavar="PATTERN",
                     help="fnmatch patterns of metric names (default: policy/* sft/* gate/* guard/*); put run ids "
                     "before this option")
    cmp.add_argument("--format", choices=["table", "markdown", "csv"], default="table")
    cmp.add_argument("--output", default=None, metavar="FILE", help="write here instead of stdout")
    cmp.set_defaults(fn=_compare)

    cm = sub.add_parser("compare-methods", help="the methods side by side: one DVC experiment each (dvc queue), "
                        "a table + figure in the reports dir and MLflow")
    cm.add_argument("--methods", nargs="+", metavar="M", help="subset, in table order (default: all seven)")
    cm.add_argument("--jobs", type=_int_in(1), default=1, help="dvc queue workers (default 1: each run gets every core)")
    cm.add_argument("--collect", metavar="PREFIX", help="no new runs: the table from finished experiments PREFIX-*")
    cm.add_argument("--readme", action="store_true", help="also write the table into README.md between its markers")
    cm.add_argument("--dry-run", action="store_true", help="print the dvc commands and stop")
    cm.set_defaults(fn=_compare_methods)

    rep = sub.add_parser("report", help="re-render a run's evaluation report (HTML + markdown) from MLflow")
    rep.add_argument("run_id", metavar="RUN_ID", help="the evaluate run, or the pipeline run above it")
    rep.add_argument("--output", default=None, metavar="DIR", help="default: reports/runs/<evaluate run id>")
    rep.set_defaults(fn=_report)

    lab = sub.add_parser("label", help="human labelling page: import pairs, add labellers, serve, export")
    lab_sub = lab.add_subparsers(dest="action", required=True)
    lab_sub.add_parser("import", help="queue collect_preferences' pairs (idempotent)")
    add = lab_sub.add_parser("add-labeller", help="register a labeller; prints the sign-in token once")
    add.add_argument("name")
    srv = lab_sub.add_parser("serve", help="serve the page (default params.label.host:port, loopback)")
    srv.add_argument("--host", default=None, help="default: params.yaml label.host")
    srv.add_argument("--port", type=_int_in(1, 65535), default=None, help="default: params.yaml label.port")
    srv.add_argument("--chat-model", default=None, help="serve this model dir on /chat instead of the MLflow champion")
    lab_sub.add_parser("export", help="write params.label.export (+ data/human/feedback.jsonl) and print agreement")
    lab.set_defaults(fn=_label)

    swp = sub.add_parser("sweep", help="a grid of settings as queued DVC experiments under one MLflow parent run")
    swp.add_argument("-S", "--set", action="append", required=True, metavar="KEY=V1,V2",
                     help="a params.yaml key and its values (repeat for a grid)")
    swp.add_argument("--jobs", type=_int_in(1), default=1, help="queue workers (dvc queue start -j; default 1)")
    swp.add_argument("--name", default=None, help="the sweep's name (default sweep-<date>-<time>)")
    swp.set_defaults(fn=_sweep)

    dep = sub.add_parser("deploy", help="register the pipeline as a Prefect deployment on a work pool (a team's "
                         "workers run it: README \"Running as a team\")")
    dep.add_argument("--pool", required=True, help="the work pool (created as a process pool if missing)")
    dep.add_argument("--name", default="alignflow", help="the deployment's name (default: alignflow)")
    dep.add_argument("--repo", default=None, help="the git URL workers clone (default: this clone's origin)")
    dep.add_argument("--rev", default=None, help="the commit to deploy (default: HEAD); it must be on the remote")
    sched = dep.add_mutually_exclusive_group()
    sched.add_argument("--cron", default=None, help="default: params.yaml pipeline.cron")
    sched.add_argument("--no-schedule", action="store_true", help="manual runs only")
    dep.add_argument("--work-dir", default=None, metavar="DIR", help="where a worker keeps its clones (a fixed "
                     "directory keeps a killed run's checkpoints for its retry); default: the worker's temp dir")
    dep.set_defaults(fn=_deploy)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from tasks.common.params import PARAMS_FILE, ParamsError, load_params

    try:
        # Parsed before the command starts anything (Prefect, dvc status, MLflow, a model), so a bad value fails
        # here and nowhere later. Without a params.yaml, validate, report and compare RUN_ID… still run.
        args.params = load_params() if Path(PARAMS_FILE).exists() else None
        code = args.fn(args)
    except ParamsError as exc:
        print(f"alignflow {args.command}: error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
