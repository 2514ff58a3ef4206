"""How to run a pool: :class:`PoolSettings`, its checks, and the start methods, backends and
modes it may name."""

import logging
import multiprocessing
from dataclasses import dataclass
from typing import Literal

StartMethod = Literal["spawn", "forkserver"]
# fork is left out on purpose: a Dagster step process runs several threads and installs
# signal handlers, and forked workers inherit both (hangs were seen; Python 3.12+ warns).
START_METHODS: tuple[StartMethod, ...] = ("forkserver", "spawn")
DEFAULT_START_METHOD: StartMethod = (
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)
# Where a pool's workers run: processes of this machine (local/), a Dask cluster
# (dask_cluster/), or threads of this process (threads/: only for work that releases the GIL,
# such as the compiled kernels; Python code holding the GIL would run one thread at a time).
Backend = Literal["local", "dask", "threads"]
BACKENDS: tuple[Backend, ...] = ("local", "dask", "threads")
# serial and parallel force the choice; auto decides per step (see decision.py).
Mode = Literal["auto", "serial", "parallel"]
MODES: tuple[Mode, ...] = ("auto", "serial", "parallel")


@dataclass(frozen=True)
class PoolSettings:
    """How to run a pool: ``workers`` None means one per available CPU; 1 means in-process;
    after a worker dies, the task it ran gets ``restarts_on_worker_death`` more tries on
    fresh workers. ``mode`` (see :mod:`.decision`) ``auto`` starts a pool only where it
    is predicted to win; the pool's measured costs are kept in ``costs_directory`` (None:
    this machine's cache directory, see :func:`.calibration.costs_directory_in_use`).
    ``backend`` ``dask`` runs the same tasks on a Dask cluster: the one at
    ``scheduler_address``, else a local one of ``workers`` processes started for each pool;
    ``threads`` runs them on ``workers`` threads of this process (for work that releases the
    GIL)."""

    workers: int | None = None
    start_method: StartMethod = DEFAULT_START_METHOD
    restarts_on_worker_death: int = 0
    worker_log_level: int = logging.INFO
    mode: Mode = "parallel"
    costs_directory: str | None = None
    backend: Backend = "local"
    scheduler_address: str | None = None
    # Local workers: replaced by a fresh one after this many tasks (None: never), and stopped,
    # their task reported out of memory, past this resident memory (None: no limit).
    max_tasks_per_worker: int | None = None
    worker_memory_limit_mb: float | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.scheduler_address and self.backend != "dask":
            raise ValueError(
                f"scheduler_address={self.scheduler_address!r} is for backend 'dask', but "
                f"backend is {self.backend!r}: set backend to 'dask' or leave the address unset"
            )
