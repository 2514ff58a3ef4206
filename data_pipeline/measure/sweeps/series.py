"""What a sweep measured, one (stage, kernel) series at a time: its rows by size and by
worker count, its crossovers and Amdahl's fit, and the chart's view of it."""

from dataclasses import dataclass

from data_pipeline.measure.labels import PARALLEL, SERIAL
from data_pipeline.measure.sweeps.chart import SizePoint, SizeSeries, WorkerPoint, WorkerSeries
from data_pipeline.measure.sweeps.scaling import AmdahlFit, amdahl_fit, crossover_size
from data_pipeline.measure.timing import Spread

# auto's third choice, a pool of threads of the step process: only for a transform whose
# kernel releases the GIL, the only work auto may run on threads.
THREADS = "threads"


@dataclass(frozen=True)
class SizeRow:
    """One size of one series: serial, pool (processes) and auto timings, threads' where auto
    may choose them, and what auto chose."""

    size: int
    chunks: int
    serial: Spread
    parallel: Spread
    auto: Spread
    startup_seconds: float
    auto_choices: tuple[str, ...]
    # auto's first run at this size, before it had learned anything here (untimed by the
    # repeats, which measure auto once it has learned: see sweep.LEARNING_RUNS).
    auto_first_seconds: float | None = None
    # On a pool of threads (None: not measured, as auto may not choose threads here).
    threads: Spread | None = None

    @property
    def speedup(self) -> float:
        return self.serial.median / self.parallel.median if self.parallel.median else 0.0

    @property
    def threads_speedup(self) -> float | None:
        if self.threads is None:
            return None
        return self.serial.median / self.threads.median if self.threads.median else 0.0

    @property
    def medians(self) -> dict[str, float]:
        """The median of each choice measured here: serial, parallel and, if run, threads."""
        medians = {SERIAL: self.serial.median, PARALLEL: self.parallel.median}
        if self.threads is not None:
            medians[THREADS] = self.threads.median
        return medians

    @property
    def best_choice(self) -> str:
        return min(self.medians, key=self.medians.__getitem__)

    @property
    def best_seconds(self) -> float:
        """The best median of the choices measured here (threads' included where run)."""
        return min(self.medians.values())

    @property
    def auto_over_best(self) -> float:
        """auto's median over the best choice's (1.0: as good as the best)."""
        best = self.best_seconds
        return self.auto.median / best if best else 1.0

    @property
    def choice_over_best(self) -> float:
        """What auto's choices cost, apart from the noise of its own runs: the median time of
        the mode it chose, over the best median, averaged over its runs (1.0: it always
        chose the fastest)."""
        best, measured = self.best_seconds, self.medians
        # A choice with no series here cannot be judged (none expected: threads are measured
        # wherever auto may choose them).
        chosen = [measured[choice] for choice in self.auto_choices if choice in measured]
        if not best or not chosen:
            return 1.0
        return sum(chosen) / len(chosen) / best

    @property
    def auto_first_over_best(self) -> float | None:
        """auto's first run here over the best median: what learning this size cost."""
        best = self.best_seconds
        if self.auto_first_seconds is None or not best:
            return None
        return self.auto_first_seconds / best


@dataclass(frozen=True)
class WorkerRow:
    """One worker count of one series: its timings, speedup and Karp-Flatt metric."""

    workers: int
    seconds: Spread
    speedup: float
    karp_flatt: float | None
    oversubscribed: bool


@dataclass(frozen=True)
class Series:
    """One (stage, kernel) swept: a row per size, a row per worker count."""

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

    @property
    def has_threads(self) -> bool:
        return any(row.threads is not None for row in self.sizes)

    def crossover(self, startup: str = "counted") -> int | None:
        """Where the pool of processes starts to win for good: with its start-up as measured
        here ("counted"), without it ("none": a pool already running), or with the cold
        start-up a Dagster step's first pool pays ("cold", an estimate from the calibration)."""
        shift = {"counted": 0.0, "none": 0.0, "cold": self.cold_startup_seconds}[startup]
        parallel = [
            row.parallel.median - (0.0 if startup == "counted" else row.startup_seconds) + shift
            for row in self.sizes
        ]
        return crossover_size(
            [row.size for row in self.sizes], [row.serial.median for row in self.sizes], parallel
        )

    def threads_crossover(self) -> int | None:
        """Where the pool of threads starts to win for good (None: never, or not measured).
        Threads start in under a millisecond in the step process, cold or not, so their
        start-up stays counted."""
        if not self.has_threads:
            return None
        return crossover_size(
            [row.size for row in self.sizes],
            [row.serial.median for row in self.sizes],
            [row.threads.median if row.threads else float("nan") for row in self.sizes],
        )

    @property
    def amdahl(self) -> AmdahlFit | None:
        fitted = [row for row in self.workers if not row.oversubscribed]
        return amdahl_fit([row.workers for row in fitted], [row.speedup for row in fitted])

    def worst_auto(self) -> SizeRow | None:
        return max(self.sizes, key=lambda row: row.auto_over_best, default=None)

    def size_series(self) -> SizeSeries:
        points = tuple(
            SizePoint(row.size, row.serial, row.parallel, row.auto, row.threads)
            for row in self.sizes
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
