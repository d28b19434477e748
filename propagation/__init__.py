"""Ocean-acoustic propagation: environments, engines (KRAKEN, BELLHOP) and analytic references.

Physics only: this package never imports torch or :mod:`acoustic_inv`.
"""
