"""Imported by a fork server before it forks workers: builds the numpy kernel's tables (the
primes, the Collatz jumps) and the first Arrow arrays (which makes pyarrow import pandas)
once, so no worker pays for them in a task."""

from data_pipeline.numbers.kernels.numpy_kernel import transform_columns_numpy

transform_columns_numpy([0, 1, 2, 97, -12, 1_000_000])
