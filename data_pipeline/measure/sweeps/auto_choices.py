"""How close ``mode: auto`` comes to the better of its choices (serial, threads, processes for a
kernel that releases the GIL), counting every run after the machine's one-time measurement of
the pools' costs: auto's first runs at a size included, not warmed up."""

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.measure.labels import CLEANING, TRANSFORM
from data_pipeline.measure.sweeps.inputs import SweepInputs
from data_pipeline.measure.timing import measure_alternately
from data_pipeline.numbers.kernel_choice import Kernel
from data_pipeline.parallel.calibration import PoolShape, pool_costs
from data_pipeline.parallel.local.process_pool import ProcessPool
from data_pipeline.parallel.settings import PoolSettings, StartMethod

AUTO_SIZES = (2_000, 40_000, 400_000)


@dataclass(frozen=True)
class AutoRow:
    """One stage at one size: each choice's median, auto's runs (its first included) and what
    auto chose in each."""

    stage: str
    size: int
    medians: dict[str, float]
    auto_seconds: tuple[float, ...]
    auto_choices: tuple[str, ...]

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
    repeats: int = 7,
    sizes: Sequence[int] = AUTO_SIZES,
    progress: Callable[[str], None] = lambda line: None,
) -> list[AutoRow]:
    """Cleaning and the transform with ``kernel`` at each size: serial, threads (if the kernel
    releases the GIL), processes and auto, ``repeats`` times each in alternating order.

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
    choices = {
        "serial": PoolSettings(workers, start_method, mode="serial"),
        "processes": PoolSettings(workers, start_method, mode="parallel"),
    }
    if kernel.releases_gil:
        choices["threads"] = PoolSettings(workers, start_method, mode="parallel", backend="threads")
    auto = PoolSettings(workers, start_method, mode="auto", costs_directory=str(directory))
    rows = []
    for stage in (CLEANING, TRANSFORM):
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
                    tuple(detail.choice for detail in measured["auto"].details),
                )
            )
            progress(f"{stage}, {kernel.name}: {size:,} {inputs.unit} done")
    return rows


def auto_markdown(rows: list[AutoRow]) -> str:
    """The table: each choice's median, auto's median and mean over all its runs (its first
    included) over the better choice's median, its first run, and what it chose."""
    names = list(rows[0].medians)
    lines = [
        f"| stage | size | {' | '.join(names)} | auto median / best | auto mean / best "
        "| auto's first run | its choices |",
        "|" + "---|" * (len(names) + 6),
    ]
    for row in rows:
        medians = " | ".join(f"{row.medians[name] * 1e3:.1f} ms" for name in names)
        chosen = ", ".join(
            f"{name} {row.auto_choices.count(name)}" for name in dict.fromkeys(row.auto_choices)
        )
        lines.append(
            f"| {row.stage} | {row.size:,} | {medians} | {row.ratio(statistics.median):.2f}x "
            f"| {row.ratio(statistics.fmean):.2f}x | {row.auto_seconds[0] * 1e3:.1f} ms "
            f"| {chosen} |"
        )
    return "\n".join(lines)


def _differences(reference: tuple, output: tuple) -> str | None:
    for want, got in zip(reference, output, strict=True):
        if not got.equals(want):
            return f"{got.num_rows:,} rows differ from the serial run's {want.num_rows:,}"
    return None
