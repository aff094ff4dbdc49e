"""The seed's entry point: `python mini-transformer-lab.py train|generate ...`."""

import sys

from minilab.app.cli import main

sys.exit(main())
