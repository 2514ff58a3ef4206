"""Imported by a fork server before it forks workers: loads the compiled numba kernel from
its disk cache (compiling it the first time) once, so no worker pays for it in a task."""

from data_pipeline.numbers.kernels.numba_kernel import warm_up

warm_up()
