"""The threads backend: a pool of threads in the step's own process, for work that releases the
GIL (compiled kernels, numpy, Arrow compute)."""
