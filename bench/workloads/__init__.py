"""One module per workload, each with `alignflow(ctx)` (the product's code) and `baseline(ctx)` (TRL / transformers
used directly) doing the same work on the same slice; both return {phase: bench.context.phase(...)}."""
