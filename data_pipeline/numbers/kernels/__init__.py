"""Faster kernels for the per-number transform (numpy, numba) that reproduce it exactly."""
