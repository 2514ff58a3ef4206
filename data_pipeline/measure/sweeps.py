"""When does the pool pay? The pipeline's own cleaning and transform timed serially, on a pool
and with ``mode: auto`` at sizes from ten items to millions, and on 1 to 2x the CPUs
workers: where the pool starts to win (the crossover), Amdahl's fit and Karp-Flatt's metric,
and how close ``auto`` comes to the better choice. No Dagster here.

Each (stage, kernel) is a series. Every strategy runs once untimed first (imports, the fork
server, numba's cache), then each size is timed by the measuring core: repeats in
alternating order (up to twenty times as many for runs of milliseconds, whose noise is as
large as what they measure), medians with min and max, outputs compared with the serial run's.
"""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from data_pipeline.measure.chart import SizePoint, SizeSeries, WorkerPoint, WorkerSeries
from data_pipeline.measure.scaling import AmdahlFit, amdahl_fit, crossover_size, karp_flatt
from data_pipeline.measure.sweep_report import SweepReport
from data_pipeline.measure.timing import Outcome, Spread, measure_alternately
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import Kernel
from data_pipeline.numbers.pipeline import (
    DEFAULT_CLEANING_CHUNK_BYTES,
    CleaningSummary,
    TransformSummary,
    clean_file,
    default_transform_chunk_values,
    transform_cleaned,
)
from data_pipeline.parallel.calibration import pool_costs
from data_pipeline.parallel.pool import (
    DEFAULT_START_METHOD,
    PoolSettings,
    ProcessPool,
    StartMethod,
)

CLEANING, TRANSFORM = "cleaning", "transform"
SIZES = (10, 100, 1_000, 10_000, 100_000, 400_000, 1_000_000, 4_000_000)
# Serial Python needs ~25 µs a value in the transform: 4,000,000 values would be 100 s a run,
# long past its crossover. Its sweep stops here unless told otherwise.
PYTHON_TRANSFORM_MAX_SIZE = 400_000
# The worker sweep's size: big enough for the pool to pay, small enough to repeat.
WORKER_SWEEP_SIZE = {CLEANING: 1_000_000, TRANSFORM: 1_000_000}
PYTHON_TRANSFORM_WORKER_SWEEP_SIZE = 100_000
# Small inputs get chunks small enough for every worker to get some (at least this many
# chunks per worker); large ones the pipeline's own chunk sizes.
CHUNKS_PER_WORKER = 4
SERIAL, PARALLEL, AUTO = "serial", "parallel", "auto"
# Each size is repeated until its serial runs add up to about this (at least `repeats` times,
# at most 20 times as often).
SECONDS_PER_SIZE = 5.0
# auto runs at each size this many times before the timed repeats: it learns per size what
# its model misses, trying a close second once (a near tie twice), so its first runs at a new
# size measure its learning, reported apart (the first run's time), not its choice.
LEARNING_RUNS = 3


@dataclass(frozen=True)
class SizeRow:
    """One size of one series: serial, pool and auto timings, and what auto chose."""

    size: int
    chunks: int
    serial: Spread
    parallel: Spread
    auto: Spread
    startup_seconds: float
    auto_choices: tuple[str, ...]
    # auto's first run at this size, before it had learned anything here (untimed by the
    # repeats, which measure auto once it has learned: see LEARNING_RUNS).
    auto_first_seconds: float | None = None

    @property
    def speedup(self) -> float:
        return self.serial.median / self.parallel.median if self.parallel.median else 0.0

    @property
    def auto_over_best(self) -> float:
        """auto's median over the better of serial and parallel (1.0: as good as the best)."""
        best = min(self.serial.median, self.parallel.median)
        return self.auto.median / best if best else 1.0

    @property
    def choice_over_best(self) -> float:
        """What auto's choices cost, apart from the noise of its own runs: the median time of
        the mode it chose, over the better median, averaged over its runs (1.0: it always
        chose the faster)."""
        best = min(self.serial.median, self.parallel.median)
        if not best or not self.auto_choices:
            return 1.0
        chosen = {"serial": self.serial.median, "parallel": self.parallel.median}
        return sum(chosen[choice] for choice in self.auto_choices) / len(self.auto_choices) / best

    @property
    def auto_first_over_best(self) -> float | None:
        """auto's first run here over the better median: what learning this size cost."""
        best = min(self.serial.median, self.parallel.median)
        if self.auto_first_seconds is None or not best:
            return None
        return self.auto_first_seconds / best


@dataclass(frozen=True)
class WorkerRow:
    workers: int
    seconds: Spread
    speedup: float
    karp_flatt: float | None
    oversubscribed: bool


@dataclass(frozen=True)
class Series:
    stage: str
    kernel: str
    unit: str
    sizes: tuple[SizeRow, ...]
    workers: tuple[WorkerRow, ...]
    worker_sweep_size: int
    cold_startup_seconds: float

    @property
    def label(self) -> str:
        return f"{self.stage}, {self.kernel}"

    def crossover(self, startup: str = "counted") -> int | None:
        """Where the pool starts to win for good: with its start-up as measured here
        ("counted"), without it ("none": a pool already running), or with the cold start-up
        a Dagster step's first pool pays ("cold", an estimate from the calibration)."""
        shift = {"counted": 0.0, "none": 0.0, "cold": self.cold_startup_seconds}[startup]
        parallel = [
            row.parallel.median - (0.0 if startup == "counted" else row.startup_seconds) + shift
            for row in self.sizes
        ]
        return crossover_size(
            [row.size for row in self.sizes], [row.serial.median for row in self.sizes], parallel
        )

    @property
    def amdahl(self) -> AmdahlFit | None:
        fitted = [row for row in self.workers if not row.oversubscribed]
        return amdahl_fit([row.workers for row in fitted], [row.speedup for row in fitted])

    def worst_auto(self) -> SizeRow | None:
        return max(self.sizes, key=lambda row: row.auto_over_best, default=None)

    def size_series(self) -> SizeSeries:
        points = tuple(
            SizePoint(row.size, row.serial, row.parallel, row.auto) for row in self.sizes
        )
        return SizeSeries(self.label, points)

    def worker_series(self, cpus: int) -> WorkerSeries:
        serial = self.workers[0].seconds.median if self.workers else 0.0
        points = tuple(
            WorkerPoint(
                row.workers,
                row.speedup,
                serial / row.seconds.maximum if row.seconds.maximum else None,
                serial / row.seconds.minimum if row.seconds.minimum else None,
            )
            for row in self.workers
        )
        return WorkerSeries(f"{self.label} ({self.worker_sweep_size:,})", points, cpus)


def sweep_series(
    stage: str,
    kernel: Kernel,
    sizes: Sequence[int],
    workers: int,
    repeats: int,
    directory: Path,
    start_method: StartMethod,
    worker_sweep_size: int | None = None,
    progress: Callable[[str], None] = lambda line: None,
    seconds_per_size: float = SECONDS_PER_SIZE,
) -> Series:
    """Time one stage with one kernel over ``sizes`` and over 1 to 2x ``workers`` workers."""
    inputs = _Inputs(directory, stage, kernel)
    costs_directory = str(directory)

    def settings(mode: str, count: int = workers) -> PoolSettings:
        return PoolSettings(count, start_method, mode=mode, costs_directory=costs_directory)

    strategies = {
        SERIAL: settings("serial"),
        PARALLEL: settings("parallel"),
        AUTO: settings("auto"),
    }
    # The pool's costs measured first, and one untimed run of each strategy on a small
    # input: the fork server, imports and auto's once-a-day calibration (~2 s) are not what
    # the sweep measures.
    cold = pool_costs(costs_directory, workers, start_method, kernel.worker_modules)
    for pool_settings in strategies.values():
        inputs.run(pool_settings, min(10_000, max(sizes)), workers)
    rows = []
    for size in sizes:
        inputs.prepare(size)  # made before any timing: no run pays for making its input
        learning = [
            _seconds_of(inputs.runner(strategies[AUTO], size, workers))
            for _ in range(LEARNING_RUNS)
        ]
        measured = measure_alternately(
            {name: inputs.runner(value, size, workers) for name, value in strategies.items()},
            _repeats_for(
                inputs.runner(strategies[SERIAL], size, workers), repeats, seconds_per_size
            ),
            _differences,
        )
        by_name = measured.measurements
        rows.append(
            SizeRow(
                size=size,
                chunks=by_name[PARALLEL].details[0].chunks,
                serial=by_name[SERIAL].seconds,
                parallel=by_name[PARALLEL].seconds,
                auto=by_name[AUTO].seconds,
                startup_seconds=by_name[PARALLEL].median(lambda run: run.startup_seconds),
                auto_choices=tuple(run.choice for run in by_name[AUTO].details),
                auto_first_seconds=learning[0],
            )
        )
        progress(f"{stage}, {kernel.name}: {size:,} {inputs.unit} done")
    worker_size = worker_sweep_size or max(sizes)
    counts = sorted({1, *range(2, workers + 1), 2 * workers})
    measured = measure_alternately(
        {
            count: inputs.runner(
                settings("parallel" if count > 1 else "serial", count), worker_size, count
            )
            for count in counts
        },
        repeats,
        _differences,
    )
    serial_median = measured.measurements[1].seconds.median
    worker_rows = []
    for count in counts:
        seconds = measured.measurements[count].seconds
        speedup = serial_median / seconds.median if seconds.median else 0.0
        worker_rows.append(
            WorkerRow(count, seconds, speedup, karp_flatt(count, speedup), count > workers)
        )
    progress(f"{stage}, {kernel.name}: workers 1-{2 * workers} done")
    return Series(
        stage,
        kernel.name,
        inputs.unit,
        tuple(rows),
        tuple(worker_rows),
        worker_size,
        cold.cold_startup_seconds,
    )


@dataclass(frozen=True)
class RunDetail:
    chunks: int
    startup_seconds: float
    choice: str


class _Inputs:
    """The sweep's inputs, made once per size: a numbers file of ``size`` lines for the
    cleaning; for the transform, ``size`` clean values in the pipeline's batches."""

    def __init__(self, directory: Path, stage: str, kernel: Kernel):
        self.directory, self.stage, self.kernel = directory, stage, kernel
        self.unit = "lines" if stage == CLEANING else "values"
        self._tables: dict[int, pa.Table] = {}

    def numbers_file(self, lines: int) -> Path:
        path = self.directory / f"numbers_{lines}.txt"
        if not path.exists():
            write_numbers_file(path, count=lines, seed=lines, dirty_fraction=0.02)
        return path

    def values(self, count: int) -> pa.Table:
        """Clean values as the transform sees them, made once and kept in memory, so no
        timed run pays for reading them."""
        if count not in self._tables:
            source = self.numbers_file(count + count // 10 + 10)  # some to spare
            summary = CleaningSummary()
            batches = [pair[0] for pair in clean_file(source, PoolSettings(1), 1 << 20, summary)]
            self._tables[count] = pa.Table.from_batches(batches).slice(0, count)
        return self._tables[count]

    def prepare(self, size: int) -> None:
        if self.stage == CLEANING:
            self.numbers_file(size)
        else:
            self.values(size)

    def runner(self, settings: PoolSettings, size: int, workers: int) -> Callable[[], Outcome]:
        return lambda: self.run(settings, size, workers)

    def run(self, settings: PoolSettings, size: int, workers: int) -> Outcome:
        if self.stage == CLEANING:
            path = self.numbers_file(size)
            chunk = min(DEFAULT_CLEANING_CHUNK_BYTES, _share(path.stat().st_size, workers))
            summary = CleaningSummary()
            batches = [
                pair for pair in clean_file(path, settings, chunk, summary, kernel=self.kernel)
            ]
            output = (
                pa.Table.from_batches([pair[0] for pair in batches]),
                pa.Table.from_batches([pair[1] for pair in batches]),
            )
        else:
            table = self.values(size)
            chunk = min(default_transform_chunk_values(self.kernel), _share(size, workers))
            pieces = table.to_batches(max_chunksize=chunk)
            summary = TransformSummary()
            output = (
                pa.Table.from_batches(
                    list(
                        transform_cleaned(
                            pieces, len(pieces), settings, summary, kernel=self.kernel
                        )
                    )
                ),
            )
        choice = "parallel" if summary.decision and summary.decision.parallel else "serial"
        startup = summary.pool.startup_seconds if summary.pool else 0.0
        return Outcome(output, RunDetail(summary.chunks, startup, choice))


def _repeats_for(serial: Callable[[], Outcome], repeats: int, seconds_per_size: float) -> int:
    """Enough repeats for about ``seconds_per_size`` of serial runs (at least ``repeats``, at
    most 20 times as many): where a run takes milliseconds, the machine's noise is as large as the
    differences measured, and repeating is cheap. One serial run, untimed, decides."""
    started = time.perf_counter()
    serial()
    seconds = max(time.perf_counter() - started, 1e-6)
    return max(repeats, min(20 * repeats, math.ceil(seconds_per_size / seconds)))


def _seconds_of(run: Callable[[], Outcome]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _share(total: int, workers: int) -> int:
    return max(1, math.ceil(total / (CHUNKS_PER_WORKER * workers)))


def _differences(reference: tuple, output: tuple) -> str | None:
    for want, got in zip(reference, output, strict=True):
        if not got.equals(want):
            return f"{got.num_rows:,} rows differ from the serial run's {want.num_rows:,}"
    return None


def log_spaced(smallest: int, largest: int, count: int) -> tuple[int, ...]:
    """``count`` sizes from ``smallest`` to ``largest``, evenly spaced on a log scale and
    rounded to two significant digits."""
    if count < 2 or smallest >= largest:
        return (largest,)
    ratio = (largest / smallest) ** (1 / (count - 1))
    sizes = {int(float(f"{smallest * ratio**step:.2g}")) for step in range(count)}
    return tuple(sorted(sizes | {smallest, largest}))


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
    """Every series: cleaning and the transform, each with every kernel in ``kernels``."""
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
                sweep_series(
                    stage,
                    kernel,
                    stage_sizes,
                    workers,
                    repeats,
                    directory,
                    start_method,
                    min(worker_size, max(stage_sizes)),
                    progress,
                    seconds_per_size,
                )
            )
    return SweepReport(tuple(series), workers, repeats)
