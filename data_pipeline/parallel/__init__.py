"""The parallel machinery, no Dagster: the pools (local/, dask_cluster/), auto, CPUs, logs."""
