"""``python -m eddy``: the ``eddy`` command line."""

import sys

from eddy.dataflows.cli import main

sys.exit(main())
