"""The process pool each CPU-heavy step starts inside itself, as a Dagster resource, and the
Dagster concurrency pool such steps hold while they run."""

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any, Literal, TypeVar

import dagster as dg
from pydantic import Field, PrivateAttr, field_validator, model_validator

from data_pipeline.numbers.kernel_choice import (
    AUTO,
    KERNEL_NAMES,
    Kernel,
    KernelUnavailableError,
    installed,
    kernel_named,
    likely_worker_modules,
)
from data_pipeline.numbers.stages.chunk_sizes import (
    default_cleaning_chunk_bytes,
    default_transform_chunk_values,
)
from data_pipeline.parallel.budget import cpu_plan
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.dask_cluster.distributed_module import (
    DaskUnavailableError,
    import_distributed,
)
from data_pipeline.parallel.errors import ChunkFailedError, OutOfMemoryError, WorkerDiedError
from data_pipeline.parallel.local.process_pool import workers_kept
from data_pipeline.parallel.map_options import MapOptions
from data_pipeline.parallel.pool import start_fork_server_early
from data_pipeline.parallel.pool_run import PoolRun
from data_pipeline.parallel.settings import (
    DEFAULT_START_METHOD,
    Backend,
    Mode,
    PoolSettings,
    StartMethod,
)

Task = TypeVar("Task")
Result = TypeVar("Result")
# Steps that run a pool hold a slot of this Dagster concurrency pool (`@dg.asset(pool=...)`)
# while they run: the instance's limit for it (dagster.yaml: concurrency.pools.default_limit)
# is how many pools run at once across all runs, each with the CPU budget's workers.
CPU_POOL = "cpu"


# More workers than this per available CPU only adds start-up and switching costs.
MAX_WORKERS_PER_CPU = 4


class ProcessPoolResource(dg.ConfigurableResource):
    """The process pool each CPU-heavy step starts inside itself."""

    _kept_workers: contextlib.ExitStack = PrivateAttr(default_factory=contextlib.ExitStack)

    workers: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Worker processes per pooled step. Unset: the CPU budget's share for one step "
            "(every available CPU unless DATA_PIPELINE_CPUS / DATA_PIPELINE_STEPS_AT_ONCE say "
            "otherwise; affinity and cgroup quota aware). 1 runs the work serially inside "
            "the step process, which is handy for debugging."
        ),
    )
    start_method: StartMethod = Field(
        default=DEFAULT_START_METHOD,
        description=(
            "How workers start: 'forkserver' (fork from a clean server process, fast) or "
            "'spawn' (fresh interpreters, slower, works everywhere). 'fork' is not offered: "
            "Dagster's step process has threads and signal handlers that forked workers "
            "would inherit."
        ),
    )
    cleaning_chunk_bytes: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Bytes of the numbers file per cleaning task (moved to the next line end). Unset: "
            "256 KiB; 1 MiB on backend 'threads'; five times 256 KiB on backend 'dask' (a "
            "Dask task costs more)."
        ),
    )
    transform_chunk_values: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Values per transform task. Unset: 2,000 for the python kernel (~50 ms of work), "
            "50,000 for numpy and numba (20-65 ms; on backend 'threads' too); five times that "
            "on backend 'dask'."
        ),
    )

    restarts_on_worker_death: int = Field(
        default=1,
        ge=0,
        le=3,
        description=(
            "When a worker dies (killed, os._exit, a crash), retry the task it was running "
            "this many times, each on a fresh worker, before failing the step; the tasks it "
            "had queued go to the other workers. The log says so."
        ),
    )

    kernel: Literal["auto", "python", "numpy", "numba"] = Field(
        default="auto",
        description=(
            "The code that does the work. 'python': the reference, per value in plain Python. "
            "'numpy': the transform vectorized with masks; 'numba': compiled. Both give the "
            "reference's output exactly and clean with a vectorized fast path for plain "
            "integers. 'auto': the fastest that is installed and passes a self-check."
        ),
    )

    mode: Mode = Field(
        default="auto",
        description=(
            "'auto': before each pooled step, time the kernel on a small sample of the step's "
            "input and compare it with this machine's measured pool start-up and per-task "
            "cost (kept a day in pool_costs.json in this machine's cache directory: "
            "DATA_PIPELINE_COSTS_DIR, else $XDG_CACHE_HOME/data_pipeline, else "
            "~/.cache/data_pipeline); start a pool only where it is predicted to be faster. "
            "On backend 'local' with a kernel that releases the GIL (numba, numpy), the "
            "transform weighs threads of the step process beside processes, from their own "
            "measured costs. "
            "'serial': never start a pool. 'parallel': always start one (of `workers` "
            "processes)."
        ),
    )

    backend: Backend = Field(
        default="local",
        description=(
            "Where the workers run. 'local': processes of this machine (a process pool inside "
            "the step). 'dask': the same chunks and worker functions as futures on a "
            "dask.distributed cluster: the one at scheduler_address, else a LocalCluster of "
            "`workers` processes on 127.0.0.1 started for the step and closed after it. Needs "
            "the extra: pip install -e '.[dask]'. 'threads': `workers` threads of the step "
            "process, for the compiled kernels (numba, numpy), which release the GIL: no "
            "process start, no pickling. Refused with kernel 'python' (it holds the GIL, so "
            "its threads would take turns); if 'auto' resolves to python, the step warns and "
            "uses local processes; map() keeps processes for your function unless you pass "
            "releases_gil=True."
        ),
    )
    scheduler_address: str | None = Field(
        default=None,
        description=(
            "With backend 'dask': the scheduler of a running cluster, e.g. "
            "tcp://10.0.0.5:8786 (its workers must have this package installed and reach "
            "the data directory by the same path). Unset: a local cluster per step."
        ),
    )

    task_timeout: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Seconds a task of map() may run (unset: no limit; map(task_timeout=...) sets it "
            "per call). Past it, the task's worker process is stopped (only that one), the "
            "task is retried on a fresh worker task_retries times, then the step fails naming "
            "the task and the deadline. Tasks with a deadline always run in worker processes."
        ),
    )
    task_retries: int = Field(
        default=0,
        ge=0,
        description="Retries, on a fresh worker, of a task that ran past task_timeout.",
    )
    max_tasks_per_worker: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Replace a worker process by a fresh one after this many tasks (for functions "
            "that leak memory or state). Unset: workers live as long as the step."
        ),
    )
    worker_memory_limit_mb: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Resident memory a worker process may use: past it, the worker is stopped and the "
            "step fails naming the task as out of memory (checked every 0.1 s). Unset: none."
        ),
    )

    worker_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description=(
            "Records that tasks log at this level or above inside pool workers are forwarded "
            "to the step's log as they happen."
        ),
    )

    @field_validator("workers")
    @classmethod
    def _sane_worker_count(cls, workers: int | None) -> int | None:
        limit = MAX_WORKERS_PER_CPU * available_cpus()
        if workers is not None and workers > limit:
            raise ValueError(
                f"workers={workers} is more than {MAX_WORKERS_PER_CPU} per available CPU "
                f"({available_cpus()} here, so at most {limit}): the extra processes would "
                "only compete for the same CPUs"
            )
        return workers

    @field_validator("kernel")
    @classmethod
    def _installed_kernel(cls, kernel: str) -> str:
        if kernel != AUTO and not installed(kernel):
            usable = [name for name in KERNEL_NAMES if installed(name)]
            raise ValueError(
                f"kernel={kernel!r} is not installed here: available kernels are "
                f"{', '.join(usable)} (or {AUTO})"
            )
        return kernel

    @model_validator(mode="after")
    def _usable_backend(self) -> "ProcessPoolResource":
        if self.scheduler_address and self.backend != "dask":
            raise ValueError(
                f"scheduler_address={self.scheduler_address!r} is for backend 'dask', but "
                f"backend is {self.backend!r}: set backend: dask, or leave the address unset"
            )
        if self.backend == "threads" and self.kernel == "python":
            raise ValueError(
                "backend='threads' runs only kernels that release the GIL (numba, numpy): "
                "kernel 'python' holds it, so its threads would run one at a time. Use "
                "backend: local (processes) for the python kernel"
            )
        if self.backend == "dask":
            try:
                import_distributed()
            except DaskUnavailableError as error:
                raise ValueError(f"backend='dask': {error}") from error
        return self

    def chosen_kernel(self) -> Kernel:
        """The kernel to run (``auto`` resolved); a failed self-check fails the step."""
        try:
            return kernel_named(self.kernel)
        except KernelUnavailableError as error:
            raise dg.Failure(str(error), allow_retries=False) from error

    def start_fork_server_early(self) -> None:
        """Start the fork server of this step's local pools now, preloading the kernel the
        step will most likely choose, so that it loads beside the step's own kernel check
        rather than after it (measured: a first pool's start-up 0.5 s -> 0.1 s). Nothing for
        threads, Dask, spawn, one worker or ``mode: serial``."""
        start_fork_server_early(self.settings(), likely_worker_modules(self.kernel))

    def describe_plan(self) -> str:
        """One line for the log: the CPU plan, and this pool's workers if set by hand."""
        plan = cpu_plan()
        if self.scheduler_address:
            return f"{plan}; the workers of the Dask cluster at {self.scheduler_address}"
        kind = f"{self.start_method} workers"
        if self.backend == "dask":
            kind = "workers in a Dask LocalCluster"
        elif self.backend == "threads":
            kind = "threads of the step process"
        if self.workers is None:
            return f"{plan}; {kind}"
        return f"{plan}; {kind}, set by hand to {self.workers}"

    def chunk_values_for(self, kernel: Kernel) -> int:
        """Values per transform task: as configured, else the kernel's and backend's default."""
        return self.transform_chunk_values or default_transform_chunk_values(kernel, self.backend)

    def chunk_bytes(self) -> int:
        """Bytes per cleaning task: as configured, else the backend's default."""
        return self.cleaning_chunk_bytes or default_cleaning_chunk_bytes(self.backend)

    def settings(self) -> PoolSettings:
        """The pool settings; ``auto`` keeps the pool's measured costs in this machine's cache
        directory (``costs_directory`` None)."""
        return PoolSettings(
            workers=self.workers or cpu_plan().workers_per_step,
            start_method=self.start_method,
            restarts_on_worker_death=self.restarts_on_worker_death,
            worker_log_level=logging.getLevelName(self.worker_log_level),
            mode=self.mode,
            backend=self.backend,
            scheduler_address=self.scheduler_address,
            max_tasks_per_worker=self.max_tasks_per_worker,
            worker_memory_limit_mb=self.worker_memory_limit_mb,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """For the step: workers of one map are kept for the next (closed when it ends)."""
        self._kept_workers.enter_context(workers_kept())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """The step is done: stop the workers kept for its maps."""
        self._kept_workers.close()

    def map(
        self,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        function: Callable[[Task], Result],
        tasks: Iterable[Task],
        **options: Any,
    ) -> "StepPoolRun[Task, Result]":
        """``function(task)`` for every task, from inside an asset or op, as ``mode`` decides:
        serially or on a pool of ``workers`` processes. Iterate the result to get the results
        in input order; then ``.metadata()`` is the pool's insight to return as metadata.

        ``function`` must be a top-level function of an importable module (lambdas, closures
        and functions of ``__main__`` are refused before any worker starts); its module may
        live in a code location that is not installed. With ``backend: threads`` it still
        runs on processes, since a Python function holds the GIL, unless ``releases_gil=True``
        says it spends its time in code that releases it (numpy, numba ``nogil``, Arrow
        compute). Small tasks are batched by what the first ones cost (no chunk size to
        guess); the workers of one map serve the step's next maps, and stop when the step
        ends. Their log records and printed lines reach the step's log as they happen, tagged
        with the worker; a progress line with an ETA comes every 10 % (at most every 5 s). A
        task that raises, calls ``sys.exit``, returns what cannot be pickled or kills its
        worker fails the step naming it (``describe=``, else ``task #13 (13)``).

        Options: ``task_timeout`` and ``task_retries`` (default: the resource's), ``ordered``
        (False: results as they finish), ``describe``, ``chunk_size`` (tasks sent together,
        instead of automatic batches), ``size_of`` (a task's work, for ``auto``),
        ``total_size``, ``total_tasks`` (a generator is otherwise read lazily, 10,000 tasks
        ahead), ``count_items`` (a result's items, for progress), ``label`` and ``unit``.
        """
        options.setdefault("label", context.op_def.name)
        options.setdefault("task_timeout", self.task_timeout)
        options.setdefault("task_retries", self.task_retries)
        settings = self.settings()
        releases_gil = bool(options.pop("releases_gil", False))
        if settings.backend == "threads" and not releases_gil:
            settings = replace(settings, backend="local")  # a Python function holds the GIL
        if settings.backend == "local":  # auto weighs threads beside processes for it
            options["releases_gil"] = releases_gil
        return StepPoolRun(
            settings,
            function,
            tasks,
            MapOptions(**options),
            log=context.log,
            markdown=dg.MetadataValue.md,
        )


class StepPoolRun(PoolRun[Task, Result]):
    """A :class:`PoolRun` inside a Dagster step: a failure fails the step with one sentence
    naming the task (a ``dg.Failure``); a task that raised, ran past its deadline or over
    the memory limit without the step's retries (it would again), a worker that died with
    them (a crash may not recur)."""

    def __iter__(self) -> Iterator[Result]:
        try:
            yield from super().__iter__()
        except (ChunkFailedError, OutOfMemoryError) as error:
            raise dg.Failure(str(error), allow_retries=False) from error
        except WorkerDiedError as error:  # a crash may not happen again: the step may retry
            raise dg.Failure(str(error)) from error
