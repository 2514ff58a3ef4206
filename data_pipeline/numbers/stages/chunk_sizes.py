"""How much work each task of the cleaning and transform stages holds, by default and at the
start of a `mode: auto` run (measured on a 2-core machine, see benchmarks/)."""

from data_pipeline.numbers.kernel_choice import Kernel

# Measured on a 2-core machine (see benchmarks/): parsing costs ~2 µs a line and a task
# round trip ~0.2 ms, so 256 KiB (~35,000 lines, ~70 ms of work) keeps the per-chunk cost
# under 1 % while still giving a few chunks per worker for a 3 MB file to balance the load.
DEFAULT_CLEANING_CHUNK_BYTES = 256 * 1024
# The python kernel costs 20-23 µs a value of the default input (medians, 2 cores, shared):
# 2,000 values are ~45 ms of work per task, so the ~0.2 ms round trip and the pickling of
# 2,000 ints (16 kB) stay under 1 %, and a default input gives ~200 tasks, which keeps both
# workers busy until the end.
DEFAULT_TRANSFORM_CHUNK_VALUES = 2_000
# Compiled kernels: numba 0.75 µs a value, numpy 1.6 µs in chunks of 50,000 (4.9 µs in chunks
# of 2,000, about the ~0.3 ms a task's round trip costs). 50,000 values are 40-80 ms of work.
COMPILED_TRANSFORM_CHUNK_VALUES = 50_000
# Values are not all that cheap: a prime near 2**63 costs 50-60 ms in every kernel (trial
# division to 2**20 and a Miller-Rabin test, in the reference, to which the compiled kernels
# hand such values), 2,500 times a default value. So tasks are cut by what the values cost,
# once measured (see transform.CostSizedPieces): about this long each, never more values than
# a chunk. Long enough that a task's round trip is nothing; short enough that a small file of
# costly values spreads over every worker, and the last task does not keep one worker busy
# alone.
TARGET_TASK_SECONDS = 0.5
# Before anything is measured, the first tasks hold this many values, then twice that, and so
# on: 4 costly values are ~0.2 s, which `mode: auto` spends in the step process as its sample.
FIRST_TASK_VALUES = 4


# On a Dask cluster a task costs far more: a ~5 ms round trip, and the scheduler's own work,
# which on one machine shares the CPUs with the workers (measured here: 196 transform tasks of
# 2,000 values took 2.8 s of the step process's CPU on a LocalCluster against 0.9 s on the
# local pool, and ran 1.35x slower; tasks of 10,000 values took 1.2 s and came within 10 %
# of the local pool). So Dask's tasks are this many times larger: ~0.25 s of work each.
DASK_CHUNK_SCALE = 5


# Threads of the step process (benchmarks/threads.py, 2 cores, 4,000,000 values or lines):
# a task on a thread costs tens of microseconds, and numba on two threads took the same time
# in chunks of 25,000, 50,000 and 200,000 values (0.76 s), so the compiled chunk stays, which
# still gives a day of 400,000 values 8 tasks to balance. The vectorized cleaning holds the
# GIL for part of each task (lines left to the reference parser, the chunk's lists): two
# threads took 1.43 s in 256 KiB tasks against 1.18 s serially, 0.99 s in 1 MiB tasks.
THREADS_TRANSFORM_CHUNK_VALUES = COMPILED_TRANSFORM_CHUNK_VALUES
THREADS_CLEANING_CHUNK_BYTES = 1024 * 1024


def default_transform_chunk_values(kernel: Kernel, backend: str = "local") -> int:
    """Values per transform task when the configuration does not say: per kernel and
    backend."""
    values = (
        DEFAULT_TRANSFORM_CHUNK_VALUES
        if kernel.name == "python"
        else COMPILED_TRANSFORM_CHUNK_VALUES
    )
    if backend == "threads" and kernel.releases_gil:
        return THREADS_TRANSFORM_CHUNK_VALUES
    return values * DASK_CHUNK_SCALE if backend == "dask" else values


def default_cleaning_chunk_bytes(backend: str = "local") -> int:
    """Bytes per cleaning task when the configuration does not say: per backend."""
    if backend == "threads":
        return THREADS_CLEANING_CHUNK_BYTES
    scale = DASK_CHUNK_SCALE if backend == "dask" else 1
    return DEFAULT_CLEANING_CHUNK_BYTES * scale


# With `mode: auto`, the step first cleans (transforms) a few tasks itself, timed, until the
# ones after the first took ~10 ms (parallel.pool_run): cleaning plans start with ranges this
# small, doubling up to the chunk size, so the sample costs ~5 ms of the reference parser; the
# transform's first tasks are FIRST_TASK_VALUES, then sized by their cost. Every sample's
# output is used, not thrown away.
DECISION_SAMPLE_BYTES = 16 * 1024
