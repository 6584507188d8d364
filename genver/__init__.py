"""genver: exact prefix-tree simulations of the generation–verification gap."""
__version__ = "0.1.0"

import logging as _logging

from .experiments.tidy import load as load  # genver.load(DIR): a results directory as one table

# Library events go to the "genver" logger (one child per module, logging.getLogger(__name__));
# nothing is printed unless the application configures logging (the CLI does with -v / -vv).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
