"""`python -m learnops_dump` is the same as `learnops-dump`."""

import sys

from .cli import main

sys.exit(main())
