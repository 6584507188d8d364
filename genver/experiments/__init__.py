"""Sweeps: specs, units, runs, results and their reports.

The layer above the estimators and metrics, one module per concept: :mod:`~genver.experiments.registry`
(what a spec can name), :mod:`~genver.experiments.spec` and :mod:`~genver.experiments.spec_tables`
(validation), :mod:`~genver.experiments.catalog` (the shipped specs by name),
:mod:`~genver.experiments.generators` (the worlds and their classes),
:mod:`~genver.experiments.cells` (one unit: a setting and a seed), :mod:`~genver.experiments.adapters`
(the sweep signatures of the estimators and metrics), :mod:`~genver.experiments.memory` (the memory
guard), :mod:`~genver.experiments.runner` / :mod:`~genver.experiments.executors` /
:mod:`~genver.experiments.store` (running and storing), and :mod:`~genver.experiments.tables`,
:mod:`~genver.experiments.figures`, :mod:`~genver.experiments.report`,
:mod:`~genver.experiments.expect` and :mod:`~genver.experiments.figcache` (reading the results).
"""
