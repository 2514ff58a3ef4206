"""Every strategy timed on the same input by the measuring core, each output checked against
serial Python, failures shown, never dropped: the strategies table's rows."""

import importlib.util
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.measure.labels import CLEANING, TRANSFORM
from data_pipeline.measure.strategies.checks import (
    OutputChecks,
    cleaning_differences,
    guarded,
    transform_differences,
)
from data_pipeline.measure.strategies.cleaning_runs import CLEANING_STRATEGIES
from data_pipeline.measure.strategies.pools import stop_joblib_workers
from data_pipeline.measure.strategies.report import (
    FAILED,
    OK,
    SKIPPED,
    StrategiesReport,
    StrategyRow,
)
from data_pipeline.measure.strategies.strategy import FULL, RunSettings, Strategy, Workload
from data_pipeline.measure.strategies.transform_runs import TRANSFORM_STRATEGIES
from data_pipeline.measure.timing import Spread, measure_alternately
from data_pipeline.numbers.chunking import count_lines, plan_byte_ranges
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernels.numba_kernel import transform_columns_numba
from data_pipeline.parallel.cpus import available_cpus
from data_pipeline.parallel.settings import DEFAULT_START_METHOD, StartMethod

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

    Args:
        values: a count of values (drawn with ``seed`` in :data:`VALUE_RANGE`), or the values.
        lines_path: the numbers file the cleaning runs on; None, a generated file with as
            many lines as there are values.
        repeats: timed runs of each strategy.
        workers: the pools' workers; None, the CPUs available.
        chunk_values: values per task of the Python-kernel pools.
        sample_python_above: above this many values, the Python-kernel strategies run on the
            first ``python_sample_values`` (the one-item-at-a-time queue on at most
            ``naive_sample_values``) and are compared per value.
        python_sample_values: the Python-kernel strategies' sample, see above.
        naive_sample_values: the one-item-at-a-time queue's sample, see above.
        compiled_chunk_values: values per task of the compiled kernels' pools; None, about
            :data:`COMPILED_CHUNKS_PER_WORKER` chunks per worker.
        cleaning_chunk_bytes: the cleaning's byte ranges.
        start_method: the pools' start method.
        only: just the built-in strategies with these keys (serial Python always runs: it
            is the reference); None, all of them.
        extra_strategies: transform rows to add (a test's deliberately wrong one, say).
        cleaning: whether to time the cleaning's strategies too.
        seed: the seed of the drawn values and of the generated numbers file.
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
    inputs = workload.by_scope(python_sample, naive_sample_values)
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
    items: int | None = None,
) -> list[StrategyRow]:
    runnable = [strategy for strategy in strategies if _available(strategy)]
    checks = OutputChecks(compare)
    warm_ups = {
        strategy.key: guarded(strategy, warm_input_of(strategy), settings) for strategy in runnable
    }
    measured = measure_alternately(
        {strategy.key: guarded(strategy, input_of(strategy), settings) for strategy in runnable},
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
        strategy.key: (items if items is not None else len(input_of(strategy)))
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
