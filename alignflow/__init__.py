"""The `alignflow` command and the tools a person uses around the pipeline: the CLI (cli.py), the human
labelling web app (labeling/), run comparison (compare.py) and report re-rendering (rerender.py).

The pipeline itself lives in flows/ (Prefect flows) and tasks/ (one module per DVC stage). No stage imports this
package, so a change here never makes a stage stale; the online flow (flows/online.py) reads the label store.
"""
