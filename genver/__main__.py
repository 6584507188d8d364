"""``python -m genver``: the ``genver`` command line (:mod:`genver.cli`)."""
import sys

from .cli import main

sys.exit(main())
