"""`python -m ltxflow` runs the command line."""

import sys

from ltxflow.cli import main

sys.exit(main())
