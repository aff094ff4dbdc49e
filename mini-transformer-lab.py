"""The seed's entry point: `python mini-transformer-lab.py train|generate ...`."""

import sys

from minilab.cli import main

sys.exit(main())
