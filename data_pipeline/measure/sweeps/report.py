"""The sweeps in words, tables, plain numbers and one chart."""

from dataclasses import dataclass

from data_pipeline.measure.sweeps.chart import scaling_chart, short_count
from data_pipeline.measure.sweeps.series import Series, SizeRow
from data_pipeline.measure.timing import Spread


@dataclass(frozen=True)
class SweepReport:
    """Every series of one sweep, and what they say together."""

    series: tuple[Series, ...]
    workers: int
    repeats: int

    def chart_png(self) -> bytes:
        return scaling_chart(
            [series.size_series() for series in self.series],
            [series.worker_series(self.workers) for series in self.series],
            size_unit="lines or values",
        )

    def worst_auto(self) -> tuple[Series, SizeRow] | None:
        """The series and size where ``auto`` came furthest from the best choice."""
        rows = [(series, series.worst_auto()) for series in self.series]
        rows = [(series, row) for series, row in rows if row is not None]
        return max(rows, key=lambda pair: pair[1].auto_over_best, default=None)

    def worst_choices(self) -> tuple[Series, SizeRow] | None:
        """The series and size where ``auto``'s choices cost the most (see
        :attr:`SizeRow.choice_over_best`)."""
        rows = [(series, row) for series in self.series for row in series.sizes]
        return max(rows, key=lambda pair: pair[1].choice_over_best, default=None)

    def headline_figures(self) -> dict[str, float | int | str]:
        """Plain numbers for asset metadata: crossovers (-1 for never), threads' where
        measured, the serial fraction, auto's worst ratios against the best choice."""
        figures: dict[str, float | int | str] = {"workers": self.workers, "repeats": self.repeats}
        for series in self.series:
            key = f"{series.stage}_{series.kernel}"
            figures[f"{key}_crossover"] = _or_never(series.crossover())
            figures[f"{key}_crossover_without_startup"] = _or_never(series.crossover("none"))
            figures[f"{key}_crossover_cold"] = _or_never(series.crossover("cold"))
            figures[f"{key}_best_speedup"] = round(max(r.speedup for r in series.sizes), 3)
            if series.has_threads:
                figures[f"{key}_threads_crossover"] = _or_never(series.threads_crossover())
                figures[f"{key}_best_threads_speedup"] = round(
                    max(r.threads_speedup or 0.0 for r in series.sizes), 3
                )
            if series.amdahl is not None:
                figures[f"{key}_serial_fraction"] = round(series.amdahl.serial_fraction, 4)
        worst = self.worst_auto()
        if worst is not None:
            series, row = worst
            figures["auto_worst_ratio"] = round(row.auto_over_best, 3)
            figures["auto_worst_at"] = f"{series.label}, {row.size:,} {series.unit}"
            series, row = self.worst_choices()
            figures["auto_choices_worst_ratio"] = round(row.choice_over_best, 3)
            figures["auto_choices_worst_at"] = f"{series.label}, {row.size:,} {series.unit}"
        return figures

    def verdict(self) -> str:
        sentences = []
        for series in self.series:
            crossover, cold = series.crossover(), series.crossover("cold")
            if crossover is None:
                sentences.append(
                    f"{_capital(series.label)}: the pool never beat one process up to "
                    f"{short_count(series.sizes[-1].size)} {series.unit}."
                )
            else:
                sentences.append(
                    f"{_capital(series.label)}: the pool wins from {short_count(crossover)} "
                    f"{series.unit} (a step's first, cold pool: from "
                    f"{short_count(cold) if cold else 'never within the sweep'})."
                )
            if series.has_threads:
                threads = series.threads_crossover()
                sentences.append(
                    f"A pool of threads never beat one process up to "
                    f"{short_count(series.sizes[-1].size)} {series.unit}."
                    if threads is None
                    else f"A pool of threads wins from {short_count(threads)} {series.unit}."
                )
        worst = self.worst_auto()
        if worst is not None:
            series, row = worst
            choice_series, choice_row = self.worst_choices()
            sentences.append(
                f"mode auto was at worst {row.auto_over_best:.2f}x the best choice "
                f"({series.label}, {row.size:,} {series.unit}); its choices alone cost at "
                f"worst {choice_row.choice_over_best:.2f}x ({choice_series.label}, "
                f"{choice_row.size:,} {choice_series.unit})."
            )
        return " ".join(sentences)

    def markdown(self) -> str:
        lines = [
            f"### When the pool pays: {self.workers} workers, medians of {self.repeats} runs",
            "",
            "| series | crossover | without start-up | a step's cold pool (est.) "
            "| best speedup | serial fraction (Amdahl) | threads cross at | best on threads |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for series in self.series:
            fit = series.amdahl
            fraction = "-" if fit is None else f"{fit.serial_fraction:.1%}"
            best = max(series.sizes, key=lambda row: row.speedup)
            crossovers = " | ".join(
                _size(series.crossover(startup)) for startup in ("counted", "none", "cold")
            )
            threads = "- | -"
            if series.has_threads:
                fastest = max(series.sizes, key=lambda row: row.threads_speedup or 0.0)
                threads = (
                    f"{_size(series.threads_crossover())} | {fastest.threads_speedup:.2f}x at "
                    f"{short_count(fastest.size)}"
                )
            lines.append(
                f"| {series.label} | {crossovers} | {best.speedup:.2f}x at "
                f"{short_count(best.size)} | {fraction} | {threads} |"
            )
        lines += [
            "",
            "### Sizes",
            "",
            "| series | size | chunks | serial s | pool s | threads s | auto s "
            "| speedup | auto chose | auto / best | its choices / best | auto's first run / best |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
        ]
        for series in self.series:
            for row in series.sizes:
                choices = ", ".join(sorted(set(row.auto_choices)))
                lines.append(
                    f"| {series.label} | {row.size:,} | {row.chunks:,} | {_spread(row.serial)} "
                    f"| {_spread(row.parallel)} | {_spread(row.threads)} | {_spread(row.auto)} "
                    f"| {row.speedup:.2f}x "
                    f"| {choices} | {row.auto_over_best:.2f} | {row.choice_over_best:.2f} "
                    f"| {_ratio(row.auto_first_over_best)} |"
                )
        lines += [
            "",
            "### Workers",
            "",
            "| series | workers | s | speedup | Karp-Flatt |",
            "|---|---:|---:|---:|---:|",
        ]
        for series in self.series:
            for row in series.workers:
                flag = " (oversubscribed)" if row.oversubscribed else ""
                metric = "-" if row.karp_flatt is None else f"{row.karp_flatt:.3f}"
                lines.append(
                    f"| {series.label}, {series.worker_sweep_size:,} {series.unit} "
                    f"| {row.workers}{flag} | {_spread(row.seconds)} | {row.speedup:.2f}x "
                    f"| {metric} |"
                )
        fits = [
            f"- {series.label}: {series.amdahl.in_words(self.workers)}"
            for series in self.series
            if series.amdahl is not None
        ]
        lines += ["", "**Amdahl.**", "", *fits, "", f"**Verdict.** {self.verdict()}"]
        return "\n".join(lines) + "\n"


def _or_never(size: int | None) -> int:
    return -1 if size is None else size


def _size(size: int | None) -> str:
    return "never" if size is None else f"{size:,}"


def _spread(spread: Spread | None) -> str:
    if spread is None:
        return "-"
    return f"{spread.median:.4f} ({spread.minimum:.4f}-{spread.maximum:.4f})"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
