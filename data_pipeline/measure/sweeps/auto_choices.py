"""How close ``mode: auto`` comes to the best of its choices (serial and processes; threads too
for a transform whose kernel releases the GIL), counting every run after the machine's one-time
measurement of the pools' costs: auto's first runs at a size included, not warmed up."""

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.measure.labels import CLEANING, PARALLEL, SERIAL, TRANSFORM
from data_pipeline.measure.sweeps.inputs import SweepInputs
from data_pipeline.measure.sweeps.series import THREADS
from data_pipeline.measure.timing import measure_alternately
from data_pipeline.numbers.kernel_choice import Kernel
from data_pipeline.parallel.calibration import PoolShape, pool_costs
from data_pipeline.parallel.local.process_pool import ProcessPool
from data_pipeline.parallel.settings import PoolSettings, StartMethod

AUTO_SIZES = (2_000, 40_000, 400_000)
AUTO_REPEATS = 7
# The goal: auto's median and mean, every run counted, within this of the best choice's median.
AUTO_GOAL = 1.10
# The sweep's names of auto's choices, as this table names the choices.
_CHOICE_NAMES = {SERIAL: "serial", PARALLEL: "processes", THREADS: THREADS}


@dataclass(frozen=True)
class AutoRow:
    """One stage at one size: the median of each choice auto had, auto's runs (its first
    included), what auto chose in each and why."""

    stage: str
    size: int
    medians: dict[str, float]
    auto_seconds: tuple[float, ...]
    auto_choices: tuple[str, ...]
    auto_reasons: tuple[str, ...] = ()

    @property
    def best(self) -> str:
        return min(self.medians, key=self.medians.__getitem__)

    def ratio(self, figure: Callable[[Sequence[float]], float]) -> float:
        return figure(self.auto_seconds) / self.medians[self.best]


def compare_auto(
    kernel: Kernel,
    directory: Path,
    workers: int,
    start_method: StartMethod,
    repeats: int = AUTO_REPEATS,
    sizes: Sequence[int] = AUTO_SIZES,
    progress: Callable[[str], None] = lambda line: None,
) -> list[AutoRow]:
    """Cleaning and the transform with ``kernel`` at each size: serial, processes, threads
    where auto may choose them (the transform, if the kernel releases the GIL) and auto,
    ``repeats`` times each in alternating order.

    Args:
        kernel: the kernel every run uses.
        directory: where the inputs and the pools' measured costs go (fresh: auto has
            learned nothing).
        workers: the pools' workers.
        start_method: the process pools' start method.
        repeats: timed runs of each choice and of auto per size.
        sizes: lines for the cleaning, values for the transform.
        progress: called with a line as each size ends.
    """
    # The one-time measurement: both pools' costs, measured (and kept) before any run.
    for backend in ("local", "threads") if kernel.releases_gil else ("local",):
        pool_costs(str(directory), PoolShape(workers, start_method, kernel.worker_modules, backend))
    with ProcessPool(workers, start_method, tuple(kernel.worker_modules)):
        pass  # the fork server, as a step process that has run a pool before
    auto = PoolSettings(workers, start_method, mode="auto", costs_directory=str(directory))
    rows = []
    for stage in (CLEANING, TRANSFORM):
        choices = _choices(stage, kernel, workers, start_method)
        inputs = SweepInputs(directory, stage, kernel)
        for settings in choices.values():  # imports and numba's cache, too little to learn
            inputs.run(settings, 500, workers)
        for size in sizes:
            inputs.prepare(size)
            runs = {
                name: inputs.runner(settings, size, workers) for name, settings in choices.items()
            }
            measured = measure_alternately(
                {**runs, "auto": inputs.runner(auto, size, workers)}, repeats, _differences
            ).measurements
            rows.append(
                AutoRow(
                    stage,
                    size,
                    {name: measured[name].seconds.median for name in choices},
                    measured["auto"].seconds.values,
                    tuple(_CHOICE_NAMES[detail.choice] for detail in measured["auto"].details),
                    tuple(detail.reason for detail in measured["auto"].details),
                )
            )
            progress(f"{stage}, {kernel.name}: {size:,} {inputs.unit} done")
    return rows


def _choices(
    stage: str, kernel: Kernel, workers: int, start_method: StartMethod
) -> dict[str, PoolSettings]:
    """What auto chooses among for ``stage``: threads only for a transform whose kernel
    releases the GIL (the cleaning weighs serial and processes only, see cleaning.py)."""
    choices = {
        "serial": PoolSettings(workers, start_method, mode="serial"),
        "processes": PoolSettings(workers, start_method, mode="parallel"),
    }
    if stage == TRANSFORM and kernel.releases_gil:
        choices[THREADS] = PoolSettings(workers, start_method, mode="parallel", backend="threads")
    return choices


def auto_markdown(rows: list[AutoRow]) -> str:
    """The table: each choice's median ("-" where auto could not choose it), auto's median and
    mean over all its runs (its first included) over the best choice's median, its first run,
    and what it chose."""
    names = list(dict.fromkeys(name for row in rows for name in row.medians))
    lines = [
        f"| stage | size | {' | '.join(names)} | auto median / best | auto mean / best "
        "| auto's first run | its choices |",
        "|" + "---|" * (len(names) + 6),
    ]
    for row in rows:
        medians = " | ".join(
            f"{row.medians[name] * 1e3:.1f} ms" if name in row.medians else "-" for name in names
        )
        chosen = ", ".join(
            f"{name} {row.auto_choices.count(name)}" for name in dict.fromkeys(row.auto_choices)
        )
        lines.append(
            f"| {row.stage} | {row.size:,} | {medians} | {row.ratio(statistics.median):.2f}x "
            f"| {row.ratio(statistics.fmean):.2f}x | {row.auto_seconds[0] * 1e3:.1f} ms "
            f"| {chosen} |"
        )
    return "\n".join(lines)


def auto_misses(rows: list[AutoRow], goal: float = AUTO_GOAL) -> str:
    """Each run of auto, its time and its reason (which names its choice), at every stage and
    size where its median or mean came further than ``goal`` from the best choice ("" where
    none did)."""
    lines = []
    for row in rows:
        ratios = row.ratio(statistics.median), row.ratio(statistics.fmean)
        if max(ratios) <= goal:
            continue
        lines.append(
            f"{row.stage}, {row.size:,}: auto median {ratios[0]:.2f}x, mean {ratios[1]:.2f}x "
            f"the best ({row.best} {row.medians[row.best] * 1e3:.1f} ms); its runs:"
        )
        lines += [
            f"  {seconds * 1e3:.1f} ms, {reason}"
            for seconds, reason in zip(row.auto_seconds, row.auto_reasons, strict=True)
        ]
    return "\n".join(lines)


def _differences(reference: tuple, output: tuple) -> str | None:
    for want, got in zip(reference, output, strict=True):
        if not got.equals(want):
            return f"{got.num_rows:,} rows differ from the serial run's {want.num_rows:,}"
    return None
