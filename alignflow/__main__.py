"""`python -m alignflow …` is the `alignflow` command."""

from alignflow.cli import main

raise SystemExit(main())
