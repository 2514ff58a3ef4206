"""The Dask backend: a pool whose tasks are futures on a dask.distributed cluster."""
