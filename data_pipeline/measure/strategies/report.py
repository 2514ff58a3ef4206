"""The strategies table's report: its rows, the Markdown tables with their notes, the verdict
in words and the headline figures for metadata."""

from collections.abc import Sequence
from dataclasses import dataclass

from data_pipeline.measure.labels import CLEANING, TRANSFORM
from data_pipeline.measure.strategies.strategy import RunSettings
from data_pipeline.measure.timing import Spread

OK, FAILED, SKIPPED = "ok", "FAILED", "skipped"


@dataclass(frozen=True)
class StrategyRow:
    """One strategy's measurement, its speedups (per item) and the check of its output."""

    section: str
    key: str
    title: str
    kernel: str
    serial: bool
    items: int
    sampled: bool
    chunking: str
    seconds: Spread | None
    startup_seconds: float | None
    compile_seconds: float | None
    vs_serial_python: float | None
    vs_serial_kernel: float | None
    status: str
    problem: str = ""
    note: str = ""

    @property
    def seconds_per_item(self) -> float | None:
        if self.seconds is None or not self.items:
            return None
        return self.seconds.median / self.items


@dataclass(frozen=True)
class StrategiesReport:
    """The table's rows and what they were measured on. :meth:`markdown` is the table and a
    verdict in words; :meth:`headline_figures` the plain numbers for metadata."""

    rows: tuple[StrategyRow, ...]
    values: int
    python_sample: int
    lines: int
    workers: int
    cpus_available: int
    repeats: int
    settings: RunSettings
    compile_seconds: float | None
    numba_import_seconds: float | None
    notes: tuple[str, ...] = ()

    def row(self, key: str) -> StrategyRow | None:
        return next((row for row in self.rows if row.key == key), None)

    def section(self, name: str) -> list[StrategyRow]:
        return [row for row in self.rows if row.section == name]

    @property
    def failed(self) -> list[StrategyRow]:
        return [row for row in self.rows if row.status == FAILED]

    def best(self, section: str = TRANSFORM) -> StrategyRow | None:
        timed = [row for row in self.section(section) if row.status == OK and row.vs_serial_python]
        return max(timed, key=lambda row: row.vs_serial_python, default=None)

    def headline_figures(self) -> dict[str, float | str]:
        """Plain numbers for metadata: speedups against serial Python (per value) of every
        strategy whose output checked out, the best strategy's name and speedup."""
        return _headline_figures(self)

    def verdict(self) -> list[str]:
        """What the table says, in sentences."""
        return _verdict(self)

    def markdown(self) -> str:
        """The tables (transform, cleaning), their notes and the verdict."""
        return _markdown(self)


# The report: headline figures, verdict, Markdown.

_HEADLINE_NAMES = {
    "pool_python": "python_pool_speedup",
    "pool_map": "pool_map_speedup",
    "pool_imap": "pool_imap_speedup",
    "executor_map": "executor_map_speedup",
    "naive_queue": "naive_queue_speedup",
    "threads": "thread_pool_speedup",
    "joblib": "joblib_speedup",
    "numpy": "numpy_speedup",
    "pool_numpy": "numpy_pool_speedup",
    "numba": "numba_speedup",
    "pool_numba": "numba_pool_speedup",
    "pool_numba_shared_memory": "numba_shared_memory_speedup",
    "clean_fast": "fast_cleaning_speedup",
    "pool_clean": "cleaning_pool_speedup",
    "pool_clean_fast": "fast_cleaning_pool_speedup",
}
_NUMBA_POOLS = ("pool_numba", "pool_numba_shared_memory")


def _headline_figures(report: StrategiesReport) -> dict[str, float | str]:
    figures: dict[str, float | str] = {
        "values": float(report.values),
        "python_sample_values": float(report.python_sample),
        "workers": float(report.workers),
        "cpus_available": float(report.cpus_available),
        "failed_strategies": float(len(report.failed)),
    }
    for row in report.rows:
        reference = row.serial and row.kernel == "python"
        if row.status == OK and row.vs_serial_python is not None and not reference:
            figures[_HEADLINE_NAMES.get(row.key, f"{row.key}_speedup")] = row.vs_serial_python
    numba_pool = _best_pool(report, _NUMBA_POOLS)
    if numba_pool is not None and numba_pool.vs_serial_kernel is not None:
        figures["numba_pool_over_numba"] = numba_pool.vs_serial_kernel
    numpy_pool = _best_pool(report, ("pool_numpy",))
    if numpy_pool is not None and numpy_pool.vs_serial_kernel is not None:
        figures["numpy_pool_over_numpy"] = numpy_pool.vs_serial_kernel
    if report.compile_seconds is not None:
        figures["numba_compile_seconds"] = report.compile_seconds
    best = report.best()
    if best is not None:
        figures["best_strategy"] = best.title
        figures["best_speedup"] = best.vs_serial_python
    return figures


def _best_pool(report: StrategiesReport, keys: Sequence[str]) -> StrategyRow | None:
    rows = [report.row(key) for key in keys]
    usable = [row for row in rows if row and row.status == OK and row.vs_serial_kernel]
    return max(usable, key=lambda row: row.vs_serial_kernel, default=None)


def break_even_items(pool: StrategyRow, serial: StrategyRow) -> float | None:
    """Roughly where ``pool`` starts to beat ``serial`` (same kernel): its start-up over what
    it saves per item. None when it saves nothing per item, so it never pays."""
    if pool.seconds_per_item is None or serial.seconds_per_item is None:
        return None
    startup = pool.startup_seconds or 0.0
    work_per_item = (pool.seconds.median - startup) / pool.items
    saved = serial.seconds_per_item - work_per_item
    return startup / saved if saved > 0 else None


def _verdict(report: StrategiesReport) -> list[str]:
    def ok(key: str) -> StrategyRow | None:
        row = report.row(key)
        return row if row and row.status == OK and row.vs_serial_python else None

    sentences = []
    numba, numpy = ok("numba"), ok("numpy")
    if numba or numpy:
        parts = [f"numba in one process is {_times(numba.vs_serial_python)}"] if numba else []
        parts += [f"numpy in one process {_times(numpy.vs_serial_python)}"] if numpy else []
        sentences.append(f"Compile first: {' and '.join(parts)} serial Python per value.")
    pool = _best_pool(report, _NUMBA_POOLS)
    if numba and pool:
        sentence = (
            f"The pool ({report.workers} workers) makes numba "
            f"{_faster(pool.vs_serial_kernel)} at {pool.items:,} values ({pool.title}: "
            f"{_times(pool.vs_serial_python)} serial Python)"
        )
        threshold = break_even_items(pool, numba)
        if threshold is None:
            sentence += "; per value it saves nothing over numba alone, so no size pays."
        else:
            sentence += (
                f"; from its start-up and per-value times it pays above about "
                f"{_round(threshold):,} values (an estimate)."
            )
        sentences.append(sentence)
        pickled, shared = ok("pool_numba"), ok("pool_numba_shared_memory")
        if pickled and shared:
            sentences.append(
                f"Moving the results: pickled back {pickled.seconds.median:.3f} s, through "
                f"shared memory {shared.seconds.median:.3f} s (medians)."
            )
    python_pool, threads, naive = ok("pool_python"), ok("threads"), ok("naive_queue")
    if python_pool:
        sentence = (
            f"The Python kernel on the project pool: {_faster(python_pool.vs_serial_python)} "
            f"(the ceiling is {report.workers}x)"
        )
        if threads:
            sentence += (
                f"; threads {_faster(threads.vs_serial_python)} (the GIL runs one at a time)"
            )
        if naive:
            sentence += (
                f"; one item at a time through a Queue {_faster(naive.vs_serial_python)} "
                "(inter-process traffic per item eats the gain)"
            )
        sentences.append(sentence + ".")
    best = report.best()
    if best:
        sentences.append(f"Fastest: {best.title}, {_times(best.vs_serial_python)} serial Python.")
    fast, pool_fast, pool_clean = ok("clean_fast"), ok("pool_clean_fast"), ok("pool_clean")
    if fast:
        sentence = f"Cleaning: the vectorized cleaner is {_faster(fast.vs_serial_python)}"
        if pool_clean:
            sentence += f"; the Python one on the pool {_faster(pool_clean.vs_serial_python)}"
        if pool_fast:
            sentence += f"; the vectorized one on the pool {_faster(pool_fast.vs_serial_python)}"
        sentences.append(sentence + " (all against the Python one in one process).")
    if report.failed:
        titles = ", ".join(row.title for row in report.failed)
        sentences.append(f"{len(report.failed)} FAILED their check: {titles}.")
    else:
        sentences.append("Every output matched serial Python.")
    return sentences


def _markdown(report: StrategiesReport) -> str:
    settings = report.settings
    transform = report.section(TRANSFORM)
    lines = [
        f"### Transform: {report.values:,} values, {report.workers} workers "
        f"({report.cpus_available} CPUs available), medians of {report.repeats} runs",
        "",
        *_table(transform, "value"),
        "",
        *_transform_notes(report, transform),
    ]
    cleaning = report.section(CLEANING)
    if cleaning:
        lines += [
            "",
            f"### Cleaning: {report.lines:,} lines in byte ranges of "
            f"{settings.cleaning_chunk_bytes // 1024:,} KiB, medians of {report.repeats} runs",
            "",
            *_table(cleaning, "line"),
        ]
    lines += ["", "**Verdict.** " + " ".join(report.verdict())]
    return "\n".join(lines) + "\n"


def _table(rows: list[StrategyRow], unit: str) -> list[str]:
    header = (
        f"| strategy | {unit}s | chunks | median s (min-max) | µs a {unit} | start-up s "
        "| compile s | vs serial Python | vs same kernel serially | check |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        items = f"{row.items:,}" + (" (sample)" if row.sampled else "") if row.items else "-"
        timing = (
            f"{_seconds(row.seconds.median)} ({_seconds(row.seconds.minimum)}-"
            f"{_seconds(row.seconds.maximum)})"
            if row.seconds
            else "-"
        )
        per_item = row.seconds_per_item
        check = {OK: "ok", FAILED: f"**FAILED**: {row.problem}", SKIPPED: f"skipped: {row.problem}"}
        cells = [
            row.title,
            items,
            row.chunking,
            timing,
            f"{per_item * 1e6:.3g}" if per_item is not None else "-",
            _seconds(row.startup_seconds),
            _seconds(row.compile_seconds),
            _times(row.vs_serial_python),
            _times(row.vs_serial_kernel),
            check[row.status].replace("|", "/").replace("\n", " "),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _transform_notes(report: StrategiesReport, rows: list[StrategyRow]) -> list[str]:
    notes = []
    python = report.row("python")
    if report.python_sample < report.values and python and python.seconds_per_item:
        whole = python.seconds_per_item * report.values
        notes.append(
            f"(sample): per value, from a sample of {report.python_sample:,}: the Python-kernel "
            f"rows ran on the first {report.python_sample:,} values, as serial Python would "
            f"take about {whole:.0f} s on all {report.values:,}. Speedups compare time per value."
        )
    notes += [
        f"{row.title}: per value, from a sample of {row.items:,} (it is slow by design)."
        for row in rows
        if row.sampled and row.items != report.python_sample
    ]
    notes.append(
        "Pool.map, Pool.imap and ProcessPoolExecutor.map call the transform once per value "
        "(batched by their chunk size), as tutorials do; the project pool, threads and joblib "
        f"call it once per chunk of {report.settings.chunk_values:,} values."
    )
    notes.append(
        "Each run starts and stops its own pool, as a Dagster step does; start-up s is that "
        "part (measured by the project's pool, around the constructor for the others), "
        "included in the median."
    )
    if report.compile_seconds is not None:
        notes.append(
            f"compile s: numba's first compile or disk-cache load, timed once apart in a fresh "
            f"process (importing numba took another {report.numba_import_seconds:.2f} s); "
            "pool workers fork from a server that loaded it before any timed run."
        )
    notes.append("vs same kernel serially: against that kernel's one-process row.")
    notes += [f"{row.title}: {row.note}." for row in rows if row.note]
    notes += list(report.notes)
    return [f"- {note}" for note in notes]


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if value < 0.1 else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def _faster(factor: float) -> str:
    """A speedup in words: "1.66x faster", or "25.0x slower" for a factor below one."""
    return f"{_times(factor)} faster" if factor >= 1 else f"{_times(1 / factor)} slower"


def _round(number: float) -> int:
    """Two significant digits: an estimate should not look more precise than it is."""
    return int(float(f"{number:.2g}"))
