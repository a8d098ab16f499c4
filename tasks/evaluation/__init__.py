"""The evaluation suite's parts: probe sets and their classifiers, diversity, judge win rates, the report and the
promotion gate. tasks/evaluate.py is the stage that runs them; each module here is usable and tested on its own."""
