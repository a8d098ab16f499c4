"""`alignflow label serve|add-labeller|import|export` (wired in alignflow/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tasks.common.params import Params


def run_label(params: Params, args: argparse.Namespace) -> int:
    """One label sub-command; returns the exit code."""
    from alignflow.labeling.store import LabelError, LabelStore

    cfg = params.label
    store = LabelStore(cfg.db)
    if args.action == "add-labeller":
        try:
            token = store.add_labeller(args.name)
        except LabelError as exc:
            print(f"alignflow label: {exc}", file=sys.stderr)
            return 2
        print(f"labeller {args.name}: token (shown once, only its hash is kept): {token}")
        return 0
    if args.action == "import":
        from alignflow.labeling.queue import import_queue

        try:
            counts = import_queue(store, params.paths.preferences, cfg.queue, cfg.max_pairs)
        except FileNotFoundError as exc:
            print(f"alignflow label: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(counts, indent=2))
        return 0
    if args.action == "export":
        from alignflow.labeling.export import export, export_feedback

        metrics = export(store, cfg.export)
        feedback = export_feedback(store, params.online.feedback_export)
        print(json.dumps(metrics | feedback, indent=2, sort_keys=True))
        print(f"wrote {Path(cfg.export)} ({metrics.get('human/labels', 0):.0f} labels)")
        voted = feedback["feedback/up"] + feedback["feedback/down"]
        print(f"wrote {params.online.feedback_export} ({voted:.0f} rated replies)")
        return 0
    if args.action == "serve":
        import uvicorn

        from alignflow.labeling.server import create_app

        host, port = args.host or cfg.host, args.port or cfg.port
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"alignflow label: serving on {host}, reachable from other machines; the cookies are not marked "
                  "Secure, so put it behind HTTPS", file=sys.stderr)
        print(f"labelling page on http://{host}:{port}/, chat on /chat (Ctrl-C to stop)")
        # --chat-model DIR serves a local model on /chat instead of the MLflow champion (an older parser lacks it)
        chat_model = getattr(args, "chat_model", None)
        uvicorn.run(create_app(params, store, chat_model=chat_model), host=host, port=port, log_level="info")
        return 0
    raise ValueError(f"unknown label action {args.action!r}")
