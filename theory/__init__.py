"""Executable, falsifiable checks of the paper's propositions (importable as ``genver.theory``)."""
