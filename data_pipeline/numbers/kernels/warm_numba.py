"""Imported by a fork server before it forks workers: loads the compiled numba kernel from
its disk cache (compiling it the first time) and makes the first Arrow arrays (which makes
pyarrow import pandas) once, so no worker pays for either in a task."""

from data_pipeline.numbers.kernels.numba_kernel import transform_columns_numba, warm_up

warm_up()
transform_columns_numba([0, 1, 2, 97, -12, 1_000_000])
