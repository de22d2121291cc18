"""`python -m ssmatch.stack` (what `make run` runs)."""

import sys

from ssmatch.stack.launcher import run

sys.exit(run())
