"""When does the pool pay? The pipeline's cleaning and transform timed serially, on a pool (and
on threads where auto may choose them) and with ``mode: auto`` at sizes from ten items to
millions, and on 1 to 2x the CPUs workers."""

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.measure.labels import CLEANING, PARALLEL, SERIAL, TRANSFORM
from data_pipeline.measure.sweeps.inputs import SweepInputs
from data_pipeline.measure.sweeps.report import SweepReport
from data_pipeline.measure.sweeps.scaling import karp_flatt
from data_pipeline.measure.sweeps.series import THREADS, Series, SizeRow, WorkerRow
from data_pipeline.measure.timing import Outcome, measure_alternately
from data_pipeline.numbers.kernel_choice import Kernel
from data_pipeline.parallel.calibration import PoolShape, pool_costs
from data_pipeline.parallel.local.process_pool import ProcessPool
from data_pipeline.parallel.settings import (
    DEFAULT_START_METHOD,
    Backend,
    PoolSettings,
    StartMethod,
)

SIZES = (10, 100, 1_000, 10_000, 100_000, 400_000, 1_000_000, 4_000_000)
# Serial Python needs ~25 µs a value in the transform: 4,000,000 values would be 100 s a run,
# long past its crossover. Its sweep stops here unless told otherwise.
PYTHON_TRANSFORM_MAX_SIZE = 400_000
# The worker sweep's size: big enough for the pool to pay, small enough to repeat.
WORKER_SWEEP_SIZE = {CLEANING: 1_000_000, TRANSFORM: 1_000_000}
PYTHON_TRANSFORM_WORKER_SWEEP_SIZE = 100_000
AUTO = "auto"
# Each size is repeated until its serial runs add up to about this (at least `repeats` times,
# at most 20 times as often).
SECONDS_PER_SIZE = 5.0
# auto runs at each size this many times before the timed repeats: it learns per size what
# its model misses, trying a close second once (a near tie twice), so its first runs at a new
# size measure its learning, reported apart (the first run's time), not its choice.
LEARNING_RUNS = 3


@dataclass(frozen=True)
class SweepSettings:
    """What every series of one sweep shares: where its inputs go, its workers, start method
    and repeats, and where its progress lines go."""

    directory: Path
    workers: int
    repeats: int
    start_method: StartMethod
    seconds_per_size: float = SECONDS_PER_SIZE
    progress: Callable[[str], None] = lambda line: None

    def pool(
        self, mode: str, workers: int | None = None, backend: Backend = "local"
    ) -> PoolSettings:
        """The pool of one strategy, its measured costs kept with the sweep's inputs."""
        count = self.workers if workers is None else workers
        return PoolSettings(
            count,
            self.start_method,
            mode=mode,
            costs_directory=str(self.directory),
            backend=backend,
        )


def sweep_all(
    kernels: Sequence[Kernel],
    directory: Path,
    workers: int,
    repeats: int = 3,
    sizes: Sequence[int] = SIZES,
    python_transform_max_size: int = PYTHON_TRANSFORM_MAX_SIZE,
    start_method: StartMethod = DEFAULT_START_METHOD,
    progress: Callable[[str], None] = lambda line: None,
    seconds_per_size: float = SECONDS_PER_SIZE,
) -> SweepReport:
    """Every series: cleaning and the transform, each with every kernel in ``kernels``.

    Args:
        kernels: the kernels to sweep, each a series per stage.
        directory: where the inputs (numbers files) and the pool's measured costs go.
        workers: the pools' workers; the worker sweep runs 1 to 2x this many.
        repeats: timed runs of each strategy at each size, at least.
        sizes: the input sizes, lines for the cleaning and values for the transform.
        python_transform_max_size: the largest size the Python kernel's transform runs at.
        start_method: the pools' start method.
        progress: called with a line as each size and each worker sweep ends.
        seconds_per_size: repeat each size until its serial runs add up to about this.
    """
    sweep = SweepSettings(directory, workers, repeats, start_method, seconds_per_size, progress)
    # One fork server serves every pool of this process and preloads what the first pool
    # names: name every kernel's modules, so no kernel's workers import theirs per pool.
    preload = dict.fromkeys(module for kernel in kernels for module in kernel.worker_modules)
    with ProcessPool(workers, start_method, tuple(preload)):
        pass
    series = []
    for stage in (CLEANING, TRANSFORM):
        for kernel in kernels:
            capped = stage == TRANSFORM and kernel.name == "python"
            stage_sizes = [s for s in sizes if not capped or s <= python_transform_max_size]
            worker_size = WORKER_SWEEP_SIZE[stage]
            if capped:
                worker_size = PYTHON_TRANSFORM_WORKER_SWEEP_SIZE
            series.append(
                sweep_series(stage, kernel, stage_sizes, min(worker_size, max(stage_sizes)), sweep)
            )
    return SweepReport(tuple(series), workers, repeats)


def sweep_series(
    stage: str, kernel: Kernel, sizes: Sequence[int], worker_sweep_size: int, sweep: SweepSettings
) -> Series:
    """Time one stage with one kernel over ``sizes`` and over 1 to 2x the sweep's workers.

    The strategies: serial, the pool of processes, auto and, for a transform whose kernel
    releases the GIL (where auto may choose them), a pool of threads. Every strategy runs
    once untimed first (imports, the fork server, numba's cache), then
    each size is timed by the measuring core: repeats in alternating order (up to twenty
    times as many for runs of milliseconds, whose noise is as large as what they measure),
    medians with min and max, outputs compared with the serial run's.

    Args:
        stage: :data:`~data_pipeline.measure.labels.CLEANING` or ``TRANSFORM``.
        kernel: the kernel every run uses.
        sizes: the input sizes, ascending.
        worker_sweep_size: the input size of the worker sweep.
        sweep: what every series of the sweep shares.
    """
    inputs = SweepInputs(sweep.directory, stage, kernel)
    strategies = {SERIAL: sweep.pool(SERIAL), PARALLEL: sweep.pool(PARALLEL)}
    if stage == TRANSFORM and kernel.releases_gil:
        strategies[THREADS] = sweep.pool(PARALLEL, backend="threads")
    strategies[AUTO] = sweep.pool(AUTO)
    # The pools' costs measured first, and one untimed run of each strategy on a small
    # input: the fork server, imports and auto's once-a-day calibration (~2 s) are not what
    # the sweep measures.
    shape = PoolShape(sweep.workers, sweep.start_method, tuple(kernel.worker_modules))
    cold = pool_costs(str(sweep.directory), shape)
    if THREADS in strategies:
        pool_costs(str(sweep.directory), dataclasses.replace(shape, backend="threads"))
    for pool_settings in strategies.values():
        inputs.run(pool_settings, min(10_000, max(sizes)), sweep.workers)
    rows = []
    for size in sizes:
        rows.append(_size_row(inputs, strategies, size, sweep))
        sweep.progress(f"{stage}, {kernel.name}: {size:,} {inputs.unit} done")
    worker_rows = _worker_rows(inputs, worker_sweep_size, sweep)
    sweep.progress(f"{stage}, {kernel.name}: workers 1-{2 * sweep.workers} done")
    return Series(
        stage,
        kernel.name,
        inputs.unit,
        tuple(rows),
        worker_rows,
        worker_sweep_size,
        cold.cold_startup_seconds,
    )


def _size_row(
    inputs: SweepInputs, strategies: dict[str, PoolSettings], size: int, sweep: SweepSettings
) -> SizeRow:
    """Every strategy timed at one size (threads where given), auto after its learning runs."""
    workers = sweep.workers
    inputs.prepare(size)  # made before any timing: no run pays for making its input
    learning = [
        _seconds_of(inputs.runner(strategies[AUTO], size, workers)) for _ in range(LEARNING_RUNS)
    ]
    repeats = _repeats_for(
        inputs.runner(strategies[SERIAL], size, workers), sweep.repeats, sweep.seconds_per_size
    )
    measured = measure_alternately(
        {name: inputs.runner(value, size, workers) for name, value in strategies.items()},
        repeats,
        _differences,
    )
    by_name = measured.measurements
    return SizeRow(
        size=size,
        chunks=by_name[PARALLEL].details[0].chunks,
        serial=by_name[SERIAL].seconds,
        parallel=by_name[PARALLEL].seconds,
        auto=by_name[AUTO].seconds,
        startup_seconds=by_name[PARALLEL].median(lambda run: run.startup_seconds),
        auto_choices=tuple(run.choice for run in by_name[AUTO].details),
        auto_first_seconds=learning[0],
        threads=by_name[THREADS].seconds if THREADS in by_name else None,
    )


def _worker_rows(inputs: SweepInputs, size: int, sweep: SweepSettings) -> tuple[WorkerRow, ...]:
    """One size timed on 1, 2, ... and twice the sweep's workers (the last oversubscribed)."""
    counts = sorted({1, *range(2, sweep.workers + 1), 2 * sweep.workers})
    measured = measure_alternately(
        {
            count: inputs.runner(sweep.pool(PARALLEL if count > 1 else SERIAL, count), size, count)
            for count in counts
        },
        sweep.repeats,
        _differences,
    )
    serial_median = measured.measurements[1].seconds.median
    rows = []
    for count in counts:
        seconds = measured.measurements[count].seconds
        speedup = serial_median / seconds.median if seconds.median else 0.0
        rows.append(
            WorkerRow(count, seconds, speedup, karp_flatt(count, speedup), count > sweep.workers)
        )
    return tuple(rows)


def _repeats_for(serial: Callable[[], Outcome], repeats: int, seconds_per_size: float) -> int:
    """Enough repeats for about ``seconds_per_size`` of serial runs (at least ``repeats``, at
    most 20 times as many): where a run takes milliseconds, the machine's noise is as large as the
    differences measured, and repeating is cheap. One serial run, untimed, decides."""
    seconds = max(_seconds_of(serial), 1e-6)
    return max(repeats, min(20 * repeats, math.ceil(seconds_per_size / seconds)))


def _seconds_of(run: Callable[[], Outcome]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _differences(reference: tuple, output: tuple) -> str | None:
    for want, got in zip(reference, output, strict=True):
        if not got.equals(want):
            return f"{got.num_rows:,} rows differ from the serial run's {want.num_rows:,}"
    return None
