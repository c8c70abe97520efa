import sys

from learnops_operator.cli import main

sys.exit(main())
