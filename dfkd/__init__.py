"""Reproducibility suite for data-free knowledge distillation.

The version is part of every resolved run config, so bumping it marks every result as stale
(Snakemake re-runs them); bump it whenever a change alters what a run computes.
"""

__version__ = "0.2.0"
