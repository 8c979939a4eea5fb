import sys

from eddy.dataflows.cli import main

sys.exit(main())
