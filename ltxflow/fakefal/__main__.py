"""`python -m ltxflow.fakefal`: the same as `ltxflow fake-fal`."""

import sys

from ltxflow.cli import main

sys.exit(main(["fake-fal", *sys.argv[1:]]))
