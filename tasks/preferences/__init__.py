"""collect_preferences' own helpers: which samples are compared, how a judgment becomes a row, and the checks on judgments."""
