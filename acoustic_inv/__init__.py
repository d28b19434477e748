"""acoustic-inv: amortized Bayesian inversion of ocean-acoustic array data with invertible networks."""

__version__ = "0.1.0"
