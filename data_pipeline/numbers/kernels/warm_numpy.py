"""Imported by a fork server before it forks workers: builds the numpy kernel's tables (primes,
Collatz jumps) and the first Arrow arrays once, so no worker pays for them in a task."""

# The first Arrow arrays make pyarrow import pandas (0.2-0.5 s): paid here, not in a task.

from data_pipeline.numbers.kernels.numpy_kernel import transform_columns_numpy

transform_columns_numpy([0, 1, 2, 97, -12, 1_000_000])
