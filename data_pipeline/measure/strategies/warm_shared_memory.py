"""Imported by the strategies' fork server before it forks workers: loads the shared-memory
strategy's numba kernel from its disk cache, so no worker pays for it in a timed task."""

from data_pipeline.numbers.kernels.numba_kernel import warm_up

warm_up(in_place=True)
