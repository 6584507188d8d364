"""genver: exact prefix-tree simulations of the generation–verification gap."""
__version__ = "0.1.0"
