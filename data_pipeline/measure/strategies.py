"""Every way to run the transform and the cleaning, side by side in one honest table: timed by
the measuring core, each output checked against serial Python, failures shown, never dropped."""

import importlib.util
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.measure.strategy_report import (
    CLEANING,
    FAILED,
    OK,
    SKIPPED,
    TRANSFORM,
    StrategiesReport,
    StrategyRow,
)
from data_pipeline.measure.strategy_runners import (
    CLEANING_STRATEGIES,
    FULL,
    NAIVE_SAMPLE,
    PYTHON_SAMPLE,
    TRANSFORM_STRATEGIES,
    RunDetail,
    RunSettings,
    Strategy,
    Workload,
    stop_joblib_workers,
)
from data_pipeline.measure.strategy_workers import cleaning_differences, transform_differences
from data_pipeline.measure.timing import Outcome, Spread, measure_alternately
from data_pipeline.numbers.chunking import count_lines, plan_byte_ranges
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernels.numba_kernel import transform_columns_numba
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.pool import DEFAULT_START_METHOD, StartMethod

__all__ = [
    "CLEANING",
    "FAILED",
    "OK",
    "SKIPPED",
    "TRANSFORM",
    "StrategiesReport",
    "Strategy",
    "StrategyRow",
    "compare_strategies",
]

# The values are drawn like the default input's clean values.
VALUE_RANGE = (-10_000, 1_000_000)
# Compiled kernels get about this many chunks per worker: enough to balance, few enough that
# each chunk's work dwarfs its task overhead.
COMPILED_CHUNKS_PER_WORKER = 4
# numba's import and compile, timed once in a fresh process.
_COMPILE_TIMING = (
    "import time; started = time.perf_counter(); "
    "from data_pipeline.numbers.kernels import numba_kernel; imported = time.perf_counter(); "
    "numba_kernel.warm_up(); print(imported - started, time.perf_counter() - imported)"
)
_COMPILE_TIMEOUT_SECONDS = 600


def compare_strategies(
    values: int | Sequence[int] | np.ndarray = 400_000,
    lines_path: str | os.PathLike | None = None,
    repeats: int = 3,
    workers: int | None = None,
    chunk_values: int = 2_000,
    sample_python_above: int = 400_000,
    python_sample_values: int = 200_000,
    naive_sample_values: int = 20_000,
    compiled_chunk_values: int | None = None,
    cleaning_chunk_bytes: int = 256 * 1024,
    start_method: StartMethod = DEFAULT_START_METHOD,
    only: Collection[str] | None = None,
    extra_strategies: Sequence[Strategy] = (),
    cleaning: bool = True,
    seed: int = 42,
) -> StrategiesReport:
    """Time every strategy for the transform and the cleaning on the same input, each output
    checked against serial Python; a strategy that crashes or disagrees is marked FAILED.

    ``values`` is a count (drawn with ``seed`` in :data:`VALUE_RANGE`) or the values. Above
    ``sample_python_above`` values, the Python-kernel strategies run on the first
    ``python_sample_values`` (the one-item-at-a-time queue on at most
    ``naive_sample_values``) and are compared per value. The cleaning runs on ``lines_path``,
    or on a generated file with as many lines as there are values. ``only`` keeps just the
    built-in strategies with those keys (serial Python always runs: it is the reference);
    ``extra_strategies`` adds transform rows (a test's deliberately wrong one, say).
    """
    workload = Workload.of(_values(values, seed))
    total = len(workload)
    workers = workers or available_cpus()
    python_sample = total if total <= sample_python_above else min(python_sample_values, total)
    settings = RunSettings(
        workers=workers,
        chunk_values=chunk_values,
        compiled_chunk_values=compiled_chunk_values
        or max(chunk_values, -(-total // (COMPILED_CHUNKS_PER_WORKER * workers))),
        cleaning_chunk_bytes=cleaning_chunk_bytes,
        start_method=start_method,
    )
    import_seconds, compile_seconds = numba_compile_seconds()
    inputs = {
        FULL: workload,
        PYTHON_SAMPLE: workload.head(python_sample),
        NAIVE_SAMPLE: workload.head(min(python_sample, naive_sample_values)),
    }
    warm_input = workload.head(min(total, 2 * workers * chunk_values))
    notes: list[str] = []
    transform = [*_selected(TRANSFORM_STRATEGIES, only), *extra_strategies]
    full_reference = None
    if python_sample < total and any(strategy.scope == FULL for strategy in transform):
        # Beyond the Python sample, outputs are checked against numba in one process (untimed
        # here; its own row is checked against serial Python on the sample, and numpy's
        # against it on every value).
        full_reference = transform_columns_numba(workload.values)
        notes.append(
            f"Checks: every output against serial Python on the first {python_sample:,} "
            f"values; beyond them, against numba in one process (an untimed run), so numpy "
            "and numba check each other there."
        )
    try:
        rows = _measure_section(
            TRANSFORM,
            transform,
            lambda strategy: inputs[strategy.scope],
            lambda strategy: warm_input,
            lambda items: items < total,
            transform_differences(full_reference),
            settings,
            repeats,
            compile_seconds,
        )
    finally:
        stop_joblib_workers()
    lines = 0
    if cleaning:
        with tempfile.TemporaryDirectory(prefix="strategies_") as directory:
            path = Path(lines_path or Path(directory) / "numbers.txt")
            if lines_path is None:
                write_numbers_file(path, total, seed, 0.05)
            ranges = plan_byte_ranges(path, cleaning_chunk_bytes)
            lines = count_lines(path)
            rows += _measure_section(
                CLEANING,
                _selected(CLEANING_STRATEGIES, only),
                lambda strategy: ranges,
                lambda strategy: ranges[:2],
                lambda items: False,
                cleaning_differences,
                settings,
                repeats,
                None,
                items=lines,
            )
    return StrategiesReport(
        rows=tuple(rows),
        values=total,
        python_sample=python_sample,
        lines=lines,
        workers=workers,
        cpus_available=available_cpus(),
        repeats=repeats,
        settings=settings,
        compile_seconds=compile_seconds,
        numba_import_seconds=import_seconds,
        notes=tuple(notes),
    )


@dataclass
class _Tagged:
    """A run's output with the strategy it came from; the payload is dropped once checked."""

    key: str
    items: int
    payload: Any
    error: str | None = None


@dataclass
class _Checks:
    """The comparer handed to the measuring core: records each strategy's first problem
    instead of raising, so one wrong strategy never stops the others."""

    compare: Callable[[Any, Any, int], str | None]
    problems: dict[str, str] = field(default_factory=dict)
    crashed: set[str] = field(default_factory=set)
    runs: Counter = field(default_factory=Counter)

    def differences(self, reference: _Tagged, output: _Tagged) -> None:
        self.runs[output.key] += 1 + (self.runs[output.key] == 0 and output.key == reference.key)
        problem = output.error
        if problem is not None:
            self.crashed.add(output.key)
        elif reference.payload is None:
            problem = f"unchecked: the reference failed ({reference.error})"
        else:
            try:
                problem = self.compare(reference.payload, output.payload, output.items)
            except Exception as error:
                problem = f"its output cannot be compared: {type(error).__name__}: {error}"
        if problem is not None:
            self.problems.setdefault(output.key, f"run {self.runs[output.key]}: {problem}")
        output.payload = None
        return None


def _measure_section(
    section: str,
    strategies: list[Strategy],
    input_of: Callable[[Strategy], Any],
    warm_input_of: Callable[[Strategy], Any],
    is_sample: Callable[[int], bool],
    compare: Callable[[Any, Any, int], str | None],
    settings: RunSettings,
    repeats: int,
    compile_seconds: float | None,
    count: Callable[[Any], int] = len,
    items: int | None = None,
) -> list[StrategyRow]:
    runnable = [strategy for strategy in strategies if _available(strategy)]
    checks = _Checks(compare)
    warm_ups = {
        strategy.key: _guarded(strategy, warm_input_of(strategy), settings, count)
        for strategy in runnable
    }
    measured = measure_alternately(
        {
            strategy.key: _guarded(strategy, input_of(strategy), settings, count)
            for strategy in runnable
        },
        repeats,
        checks.differences,
        warm_ups,
    )
    reference_key = runnable[0].key
    reference_output = measured.outputs[reference_key]
    if reference_output.error is not None:
        checks.problems[reference_key] = f"run 1: {reference_output.error}"
        checks.crashed.add(reference_key)
    spans = {
        strategy.key: (items if items is not None else count(input_of(strategy)))
        for strategy in runnable
    }

    def per_item(key: str) -> float | None:
        if key not in measured.measurements or key in checks.crashed or not spans[key]:
            return None
        return measured.measurements[key].seconds.median / spans[key]

    serial_of = {strategy.kernel: strategy.key for strategy in runnable if strategy.serial}
    rows = []
    for strategy in strategies:
        if strategy not in runnable:
            rows.append(_skipped_row(section, strategy, settings))
            continue
        measurement = measured.measurements[strategy.key]
        own = per_item(strategy.key)
        startups = [d.startup_seconds for d in measurement.details if d.startup_seconds is not None]
        rows.append(
            StrategyRow(
                section=section,
                key=strategy.key,
                title=strategy.title,
                kernel=strategy.kernel,
                serial=strategy.serial,
                items=spans[strategy.key],
                sampled=is_sample(spans[strategy.key]),
                chunking=strategy.chunking(settings, spans[strategy.key]),
                seconds=None if strategy.key in checks.crashed else measurement.seconds,
                startup_seconds=Spread.of(startups).median if startups else None,
                compile_seconds=compile_seconds if strategy.kernel == "numba" else None,
                vs_serial_python=_ratio(per_item(reference_key), own),
                vs_serial_kernel=_ratio(per_item(serial_of.get(strategy.kernel, "")), own),
                status=FAILED if strategy.key in checks.problems else OK,
                problem=checks.problems.get(strategy.key, ""),
                note=strategy.note,
            )
        )
    return rows


def _guarded(
    strategy: Strategy, work: Any, settings: RunSettings, count: Callable[[Any], int]
) -> Callable[[], Outcome]:
    """The strategy as the measuring core calls it; an exception becomes a failed output."""

    def run() -> Outcome:
        try:
            outcome = strategy.run(work, settings)
        except Exception as error:
            return Outcome(
                _Tagged(strategy.key, count(work), None, f"{type(error).__name__}: {error}"),
                RunDetail(),
            )
        return Outcome(_Tagged(strategy.key, count(work), outcome.output), outcome.detail)

    return run


def _values(values: int | Sequence[int] | np.ndarray, seed: int) -> np.ndarray:
    if isinstance(values, int | np.integer):
        return np.random.default_rng(seed).integers(
            VALUE_RANGE[0], VALUE_RANGE[1] + 1, int(values), dtype=np.int64
        )
    return np.asarray(values, dtype=np.int64)


def _selected(strategies: Sequence[Strategy], only: Collection[str] | None) -> list[Strategy]:
    # The first strategy is the reference: it always runs.
    return [s for n, s in enumerate(strategies) if n == 0 or only is None or s.key in only]


def _available(strategy: Strategy) -> bool:
    return strategy.requires is None or importlib.util.find_spec(strategy.requires) is not None


def _skipped_row(section: str, strategy: Strategy, settings: RunSettings) -> StrategyRow:
    return StrategyRow(
        section=section,
        key=strategy.key,
        title=strategy.title,
        kernel=strategy.kernel,
        serial=strategy.serial,
        items=0,
        sampled=False,
        chunking="-",
        seconds=None,
        startup_seconds=None,
        compile_seconds=None,
        vs_serial_python=None,
        vs_serial_kernel=None,
        status=SKIPPED,
        problem=f"{strategy.requires} is not installed (an optional extra)",
    )


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def numba_compile_seconds() -> tuple[float | None, float | None]:
    """Seconds to import numba's kernel and to compile it (or load it from the disk cache),
    timed once in a fresh process, so no earlier work in this one hides it."""
    try:
        completed = subprocess.run(
            [sys.executable, "-c", _COMPILE_TIMING],
            capture_output=True,
            text=True,
            timeout=_COMPILE_TIMEOUT_SECONDS,
            check=True,
        )
        imported, compiled = (float(part) for part in completed.stdout.split()[-2:])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None, None
    return imported, compiled
