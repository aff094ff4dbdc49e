"""`python -m minilab ...` runs the command line."""

import sys

from minilab.cli import main

sys.exit(main())
