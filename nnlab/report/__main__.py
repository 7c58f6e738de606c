"""``python -m nnlab.report --experiment NAME``: see :mod:`nnlab.report.cli`."""

import sys

from nnlab.report.cli import main

sys.exit(main())
