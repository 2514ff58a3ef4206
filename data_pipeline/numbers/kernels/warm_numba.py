"""Imported by a fork server before it forks workers: loads the compiled numba kernel (compiling
it the first time) and makes the first Arrow arrays once, so no worker pays for either."""

# The first Arrow arrays make pyarrow import pandas (0.2-0.5 s): paid here, not in a task.

from data_pipeline.numbers.kernels.numba_kernel import transform_columns_numba, warm_up

warm_up()
transform_columns_numba([0, 1, 2, 97, -12, 1_000_000])
