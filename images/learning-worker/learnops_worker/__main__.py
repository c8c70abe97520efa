"""`python -m learnops_worker` is the console script `learning-worker`."""

from .cli import main

raise SystemExit(main())
