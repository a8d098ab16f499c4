"""`alignflow label`: human preference labelling — a small server-rendered web page, its SQLite store, the queue of
pairs to label (from collect_preferences), agreement statistics and the export to the pipeline's preference file;
and a chat page serving the MLflow `champion` whose thumbs up/down export as unpaired (KTO) rows.

    alignflow label import                  # queue the pairs of data/preferences/ (idempotent)
    alignflow label add-labeller NAME       # prints the sign-in token once
    alignflow label serve                   # http://127.0.0.1:8765 (/label, /chat)
    alignflow label export                  # params.label.export + data/human/feedback.jsonl + metrics
"""
