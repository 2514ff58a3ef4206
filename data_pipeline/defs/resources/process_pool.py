"""The process pool each CPU-heavy step starts inside itself, as a Dagster resource, and the
Dagster concurrency pool such steps hold while they run."""

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any, Literal, TypeVar

import dagster as dg
from pydantic import Field, field_validator, model_validator

from data_pipeline.numbers.kernel_choice import (
    AUTO,
    KERNEL_NAMES,
    Kernel,
    KernelUnavailableError,
    installed,
    kernel_named,
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
from data_pipeline.parallel.errors import ChunkFailedError
from data_pipeline.parallel.map_options import MapOptions
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
            "When a worker dies (killed, out of memory), retry the chunks it left unfinished "
            "this many times on a fresh pool before failing the step; the log says so."
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
        )

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
        and functions of ``__main__`` are refused before any worker starts). With ``backend:
        threads`` it still runs on processes, since a Python function holds the GIL, unless
        ``releases_gil=True`` says it spends its time in code that releases it (numpy, numba
        ``nogil``, Arrow compute): then it runs on threads of the step process (and with
        ``mode: auto`` on backend ``local``, auto weighs threads beside processes). Its log
        records
        and printed lines reach the step's log as they happen, tagged with the worker; a
        progress line with an ETA comes every 10 % (at most every 5 s). A task that raises
        fails the step naming it (``describe=`` names tasks: ``str`` by type otherwise); a
        worker that dies is reported with its task, which gets one retry on a fresh pool.

        Options: ``describe``, ``chunk_size`` (tasks sent together, for tasks of well under
        10 ms), ``size_of`` (a task's work, for ``auto``), ``total_size``, ``total_tasks``
        (else ``tasks`` is read into a list first), ``count_items`` (a result's items, for
        progress), ``label`` and ``unit`` for the log lines.
        """
        options.setdefault("label", context.op_def.name)
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
    """A :class:`PoolRun` inside a Dagster step: a task that raised fails the step at once,
    naming the task, without the step's retries (it would raise again)."""

    def __iter__(self) -> Iterator[Result]:
        try:
            yield from super().__iter__()
        except ChunkFailedError as error:
            raise dg.Failure(str(error), allow_retries=False) from error
