"""The scaling chart: speedup against input size and against worker count, as PNG bytes drawn
with Agg and no global pyplot state, and the Markdown that shows it in Dagster's UI."""

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from data_pipeline.measure.sweeps.scaling import crossover_size, speedup
from data_pipeline.measure.timing import Spread

# 1,000 x 620 pixels: fits the Dagster UI's Markdown dialog without scrolling sideways.
FIGURE_INCHES = (10.0, 6.2)
DOTS_PER_INCH = 100
# Legends go under their panel, out of the lines' way.
LEGEND_BELOW = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.14), "ncol": 2, "fontsize": 8}
COLOURS = matplotlib.colormaps["tab10"].colors
OVERSUBSCRIBED_SHADE = "#d62728"


@dataclass(frozen=True)
class SizePoint:
    """One input size: serial and parallel timings, and the auto mode's and a pool of threads'
    when they were measured."""

    size: int
    serial: Spread
    parallel: Spread
    auto: Spread | None = None
    threads: Spread | None = None

    @property
    def speedup(self) -> float | None:
        return speedup(self.serial.median, self.parallel.median)

    @property
    def speedup_range(self) -> tuple[float, float] | None:
        """The least and the most speedup the repeats allow: the fastest serial run over the
        slowest parallel one, and the slowest serial run over the fastest parallel one."""
        low = speedup(self.serial.minimum, self.parallel.maximum)
        high = speedup(self.serial.maximum, self.parallel.minimum)
        return None if low is None or high is None else (low, high)

    @property
    def auto_speedup(self) -> float | None:
        return None if self.auto is None else speedup(self.serial.median, self.auto.median)

    @property
    def threads_speedup(self) -> float | None:
        return None if self.threads is None else speedup(self.serial.median, self.threads.median)


@dataclass(frozen=True)
class SizeSeries:
    """One line of the size panel, e.g. "transform, numba"; points by ascending size."""

    label: str
    points: tuple[SizePoint, ...]

    @property
    def crossover(self) -> int | None:
        """The size from which parallel wins for good (see :func:`crossover_size`)."""
        return crossover_size(
            [point.size for point in self.points],
            [point.serial.median for point in self.points],
            [point.parallel.median for point in self.points],
        )


@dataclass(frozen=True)
class WorkerPoint:
    """The speedup on one worker count, with its spread over the repeats when known."""

    workers: int
    speedup: float
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class WorkerSeries:
    """One line of the worker panel, measured on a machine with ``cpus`` CPUs."""

    label: str
    points: tuple[WorkerPoint, ...]
    cpus: int


def short_count(count: float) -> str:
    """1_500_000 -> "1.5M", 250_000 -> "250k", 800 -> "800"."""
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= threshold:
            return f"{count / threshold:.3g}{suffix}"
    return f"{count:.3g}"


def _start_panel(axes: Axes, title: str, x_label: str, measured: bool) -> bool:
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.set_ylabel("speedup (serial time ÷ parallel time)")
    if measured:
        axes.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="break-even")
    else:
        axes.text(0.5, 0.5, "no measurements", ha="center", va="center", transform=axes.transAxes)
        axes.set(xticks=[], yticks=[])
    return measured


def _draw_sizes(axes: Axes, series_list: Sequence[SizeSeries], size_unit: str) -> None:
    sizes = [point.size for series in series_list for point in series.points if point.size > 0]
    title, x_label = "Speedup by input size", f"input size ({size_unit}, log scale)"
    if not _start_panel(axes, title, x_label, measured=bool(sizes)):
        return
    smallest, largest = min(sizes), max(sizes)
    for index, series in enumerate(series_list):
        colour = COLOURS[index % len(COLOURS)]
        points = [point for point in series.points if point.speedup is not None]
        crossover = series.crossover
        crosses = "never crosses" if crossover is None else f"crosses at {short_count(crossover)}"
        axes.plot(
            [point.size for point in points],
            [point.speedup for point in points],
            marker="o",
            color=colour,
            label=f"{series.label} ({crosses})",
        )
        banded = [(point.size, *point.speedup_range) for point in points if point.speedup_range]
        if banded:
            axes.fill_between(*zip(*banded, strict=True), color=colour, alpha=0.15, linewidth=0)
        auto = [point for point in series.points if point.auto_speedup is not None]
        if auto:
            axes.plot(
                [point.size for point in auto],
                [point.auto_speedup for point in auto],
                linestyle="--",
                marker="s",
                markersize=4,
                color=colour,
                alpha=0.8,
                label=f"{series.label}, auto mode",
            )
        threads = [point for point in series.points if point.threads_speedup is not None]
        if threads:
            axes.plot(
                [point.size for point in threads],
                [point.threads_speedup for point in threads],
                linestyle="-.",
                marker="^",
                markersize=5,
                color=colour,
                alpha=0.8,
                label=f"{series.label}, threads",
            )
        if crossover is not None:
            # Labelled on the side with more room, so the largest size's label stays inside.
            left_of_line = crossover >= math.sqrt(smallest * largest)
            axes.axvline(crossover, color=colour, linestyle=":", linewidth=1.5)
            axes.annotate(
                f"crossover {short_count(crossover)}",
                xy=(crossover, 0.97 - 0.06 * index),
                xycoords=("data", "axes fraction"),
                xytext=(-4 if left_of_line else 4, 0),
                textcoords="offset points",
                ha="right" if left_of_line else "left",
                va="top",
                color=colour,
                fontsize=8,
            )
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: short_count(value)))
    axes.set_ylim(bottom=0)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(**LEGEND_BELOW)


def _error_bar(point: WorkerPoint) -> tuple[float, float]:
    """How far the spread reaches below and above the speedup; nothing where it is unknown."""
    minimum = point.speedup if point.minimum is None else point.minimum
    maximum = point.speedup if point.maximum is None else point.maximum
    return max(0.0, point.speedup - minimum), max(0.0, maximum - point.speedup)


def _draw_workers(axes: Axes, series_list: Sequence[WorkerSeries]) -> None:
    counts = [point.workers for series in series_list for point in series.points]
    if not _start_panel(axes, "Speedup by worker count", "worker processes", bool(counts)):
        return
    most = max([*counts, 2])
    ideal = "ideal (speedup = workers)"
    axes.plot([1, most], [1, most], color="black", linestyle=":", linewidth=1, label=ideal)
    for cpus in sorted({series.cpus for series in series_list if series.points}):
        if cpus < most:
            axes.axvspan(cpus, most + 0.5, color=OVERSUBSCRIBED_SHADE, alpha=0.06, linewidth=0)
        axes.axvline(cpus, color="grey", linestyle=":", linewidth=1)
        axes.annotate(
            f"{cpus} CPUs",
            xy=(cpus, 0.02),
            xycoords=("data", "axes fraction"),
            xytext=(-3, 0),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color="grey",
        )
    oversubscribed: dict[tuple[int, int], float] = {}  # (workers, cpus) -> lowest speedup
    for index, series in enumerate(series_list):
        colour = COLOURS[index % len(COLOURS)]
        points = sorted(series.points, key=lambda point: point.workers)
        axes.errorbar(
            [point.workers for point in points],
            [point.speedup for point in points],
            yerr=list(zip(*map(_error_bar, points), strict=True)) or None,
            marker="o",
            capsize=3,
            color=colour,
            label=series.label,
        )
        for point in points:
            if point.workers > series.cpus:
                axes.plot(point.workers, point.speedup, marker="X", markersize=12, color=colour)
                key = (point.workers, series.cpus)
                oversubscribed[key] = min(point.speedup, oversubscribed.get(key, point.speedup))
    # One label per oversubscribed worker count, below its lowest point, shared by all series.
    for (workers, cpus), lowest in sorted(oversubscribed.items()):
        axes.annotate(
            f"oversubscribed:\n{workers} workers on {cpus} CPUs",
            xy=(workers, lowest),
            xytext=(-10, -14),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=8,
            color=OVERSUBSCRIBED_SHADE,
        )
    handles, labels = axes.get_legend_handles_labels()
    if oversubscribed:
        shade = Patch(color=OVERSUBSCRIBED_SHADE, alpha=0.15, label="more workers than CPUs")
        handles, labels = [*handles, shade], [*labels, shade.get_label()]
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(0.5, most + 0.5)
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend(handles, labels, **LEGEND_BELOW)


def scaling_chart(
    size_series: Sequence[SizeSeries],
    worker_series: Sequence[WorkerSeries],
    size_unit: str = "rows",
) -> bytes:
    """One PNG, two panels: speedup against input size (left) and against workers (right)."""
    figure = Figure(figsize=FIGURE_INCHES, dpi=DOTS_PER_INCH)
    FigureCanvasAgg(figure)
    size_axes, worker_axes = figure.subplots(1, 2)
    _draw_sizes(size_axes, size_series, size_unit)
    _draw_workers(worker_axes, worker_series)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    return png.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that shows the image inline, as Dagster's UI renders Markdown metadata."""
    escaped = alt.replace("[", r"\[").replace("]", r"\]")
    return f"![{escaped}]({png_data_uri(png)})"
