"""What the processes a pool starts inherit from this one: native thread pools capped at one
thread, and no ``__main__`` script to run again."""

import contextlib
import os
import sys
from collections.abc import Iterator

# Native libraries (OpenMP, BLAS, numexpr, numba) start a thread per CPU in every process
# unless told otherwise, multiplying the processes the pool already runs. They read these
# variables when they load, which in a forkserver worker can be before any code of the
# worker runs (preloaded modules), so workers must be started with them already set.
THREAD_LIMIT_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


@contextlib.contextmanager
def native_threads_capped() -> Iterator[None]:
    """Within the block, every thread limit the user has not set reads 1 in this process's
    environment, so that processes started inside it (workers, the fork server) inherit it."""
    added = [name for name in THREAD_LIMIT_VARIABLES if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def main_module_hidden() -> Iterator[None]:
    """Keep spawned children from re-running the owner's ``__main__`` script (tasks must
    therefore live in importable modules, which the pool checks)."""
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main is None or main_file is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = main_file
