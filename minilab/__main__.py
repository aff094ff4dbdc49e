"""`python -m minilab ...` runs the command line."""

import sys

from minilab.app.cli import main

sys.exit(main())
