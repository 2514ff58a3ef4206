"""The pools the strategies start and stop in every run: the project's, Dask's and
multiprocessing's, all with the same preloaded modules; and joblib's, ended afterwards."""

import multiprocessing
import sys
from collections.abc import Callable, Sequence
from typing import Any

from data_pipeline.measure.strategies.strategy import RunSettings, StrategyRunDetail
from data_pipeline.measure.timing import Outcome
from data_pipeline.parallel.dask_cluster.dask_pool import DaskPool
from data_pipeline.parallel.local.process_pool import ProcessPool

# One fork server serves every forkserver pool of a process, and it preloads only the modules
# named when it starts: every pool here names all of them, so whichever starts it first, the
# workers of every strategy fork with their kernels loaded (numba's from its disk cache).
PRELOAD_MODULES = (
    "data_pipeline.numbers.parsing",
    "data_pipeline.numbers.transforms",
    "data_pipeline.numbers.fast_cleaning",
    "data_pipeline.numbers.kernels.warm_numpy",
    "data_pipeline.numbers.kernels.warm_numba",
    "data_pipeline.measure.strategies.workers",
    "data_pipeline.measure.strategies.shared_columns",
    "data_pipeline.measure.strategies.warm_shared_memory",
)
DASK_NOTE = (
    "backend: dask without a scheduler address: each run starts a LocalCluster (scheduler, "
    "nannies, worker processes) on 127.0.0.1 and closes it; chunks as futures"
)


def process_context(settings: RunSettings) -> Any:
    """The multiprocessing context of ``settings``' start method, its fork server preloaded."""
    context = multiprocessing.get_context(settings.start_method)
    if settings.start_method == "forkserver":
        context.set_forkserver_preload(list(PRELOAD_MODULES))
    return context


def project_pool(settings: RunSettings) -> ProcessPool:
    return ProcessPool(settings.workers, settings.start_method, PRELOAD_MODULES)


def dask_pool(settings: RunSettings) -> DaskPool:
    """The Dask backend as a step with ``backend: dask`` and no scheduler address runs it: a
    LocalCluster started and closed with the pool."""
    return DaskPool(settings.workers, preload_modules=PRELOAD_MODULES)


def on_pool(
    pool: ProcessPool | DaskPool, function: Callable, tasks: Sequence, joined: Callable
) -> Outcome:
    """``function`` over ``tasks`` on ``pool``, which starts and stops here, as in a step.

    Args:
        pool: a :func:`project_pool` or a :func:`dask_pool`, not yet started.
        function: a top-level function the workers import by name.
        tasks: one task per call of ``function``.
        joined: turns the list of parts, in task order, into the output.
    """
    with pool:
        parts = list(pool.map(function, tasks))
    return Outcome(joined(parts), StrategyRunDetail(pool.stats.startup_seconds))


def stop_joblib_workers() -> None:
    """joblib keeps its loky workers for later calls: no pool process may outlive the
    benchmark, so end them (if joblib ran at all)."""
    if "joblib" in sys.modules:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True, kill_workers=True)
