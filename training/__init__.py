"""Learning chroma from score–audio pairs (Zalkow & Müller): pairs, targets, losses, the training loop.

This package sits above :mod:`retrieval` (it validates by retrieval MRR); nothing below imports it.
"""
