"""`python -m sail_pipelines.cli`: what smoke checks and containers run when `sail` is not on
PATH."""

import sys

from sail_pipelines.cli import main

sys.exit(main())
