"""The strategies table: a row for every strategy, each checked against serial Python, a
wrong or crashing strategy marked FAILED while the others still run, and a verdict."""

import re

import numpy as np
import pyarrow as pa
import pytest

from data_pipeline.measure.strategies.cleaning_runs import CLEANING_STRATEGIES
from data_pipeline.measure.strategies.compare import compare_strategies
from data_pipeline.measure.strategies.report import FAILED, OK, SKIPPED, StrategiesReport
from data_pipeline.measure.strategies.shared_columns import SharedMemoryTask
from data_pipeline.measure.strategies.strategy import (
    RunSettings,
    Strategy,
    StrategyRunDetail,
    Workload,
)
from data_pipeline.measure.strategies.transform_runs import (
    TRANSFORM_STRATEGIES,
    run_pool_numba_shared_memory,
)
from data_pipeline.measure.timing import Outcome
from data_pipeline.numbers.kernels.columns import ARROW_TYPES
from data_pipeline.numbers.kernels.numba_kernel import transform_columns_numba
from data_pipeline.numbers.transforms import TRANSFORM_COLUMNS, transform_values


@pytest.fixture(scope="module")
def small_run() -> StrategiesReport:
    return compare_strategies(3_000, repeats=3, workers=2)


def test_a_small_run_has_a_row_for_every_strategy_and_none_failed(small_run):
    strategies = (*TRANSFORM_STRATEGIES, *CLEANING_STRATEGIES)
    assert [row.key for row in small_run.rows] == [strategy.key for strategy in strategies]
    optional = {strategy.key for strategy in strategies if strategy.requires}
    assert {"joblib", "dask_python", "dask_numba", "dask_clean_fast"} <= optional
    for row in small_run.rows:
        if row.status == SKIPPED:  # only an optional extra that is not installed
            assert row.key in optional
            continue
        assert row.status == OK, f"{row.title}: {row.problem}"
        assert len(row.seconds.values) == 3
        assert row.seconds.minimum <= row.seconds.median <= row.seconds.maximum


def test_speedups_are_the_ratios_of_the_medians_per_item(small_run):
    for section, reference_key in (("transform", "python"), ("cleaning", "clean")):
        reference = small_run.row(reference_key)
        serial_of = {row.kernel: row for row in small_run.section(section) if row.serial}
        for row in small_run.section(section):
            if row.status == SKIPPED:
                continue
            per_item = row.seconds.median / row.items
            assert row.vs_serial_python == pytest.approx(reference.seconds_per_item / per_item)
            expected_kernel = serial_of[row.kernel].seconds_per_item / per_item
            assert row.vs_serial_kernel == pytest.approx(expected_kernel)
        assert reference.vs_serial_python == pytest.approx(1.0)


def test_the_markdown_shows_every_row_and_a_verdict(small_run):
    markdown = small_run.markdown()
    for row in small_run.rows:
        assert f"| {row.title} |" in markdown
    assert "**Verdict.** Compile first: numba in one process is" in markdown
    assert "Every output matched serial Python." in markdown
    assert "FAILED" not in markdown


def test_a_pool_that_loses_is_called_slower_not_a_fraction_of_a_gain(small_run):
    # At 3,000 values numba needs about a millisecond; starting a pool alone takes tens.
    verdict = " ".join(small_run.verdict())
    # A slowdown reads "27.4x slower", never "0.04x faster" (other ratios may be below 1).
    assert re.search(r"The pool \(2 workers\) makes numba [1-9][\d.]*x slower at 3,000", verdict)


def test_headline_figures_are_plain_numbers_and_the_best_strategy(small_run):
    figures = small_run.headline_figures()
    for name in ("numba_speedup", "numba_pool_speedup", "numpy_speedup", "python_pool_speedup"):
        assert isinstance(figures[name], float) and figures[name] > 0
    assert figures["failed_strategies"] == 0
    assert figures["best_strategy"] == small_run.best().title
    assert figures["numba_speedup"] == small_run.row("numba").vs_serial_python


def run_numba_with_the_last_digit_sum_wrong(workload: Workload, settings) -> Outcome:
    columns = transform_columns_numba(workload.values)
    digit_sums = columns["digit_sum"].to_pylist()
    digit_sums[-1] += 1
    columns["digit_sum"] = pa.array(digit_sums, pa.int64())
    return Outcome(columns, StrategyRunDetail())


def run_and_crash(workload: Workload, settings) -> Outcome:
    raise RuntimeError("this strategy always breaks")


def test_a_wrong_or_crashing_strategy_is_marked_failed_and_the_others_still_run():
    report = compare_strategies(
        3_000,
        repeats=2,
        workers=2,
        sample_python_above=1_000,
        python_sample_values=1_000,
        only={"pool_python", "numba", "pool_numba"},
        extra_strategies=[
            Strategy(
                "wrong",
                "numba, last digit sum off",
                "numba",
                run_numba_with_the_last_digit_sum_wrong,
            ),
            Strategy("crash", "a strategy that crashes", "numba", run_and_crash),
        ],
        cleaning=False,
    )
    statuses = {row.key: row.status for row in report.rows}
    assert statuses == {
        "python": OK,
        "pool_python": OK,
        "numba": OK,
        "pool_numba": OK,
        "wrong": FAILED,
        "crash": FAILED,
    }
    # The wrong value lies beyond the Python sample: the check against numba catches it.
    assert (
        "digit_sum differs from numba in one process at value 2,999" in report.row("wrong").problem
    )
    assert "RuntimeError: this strategy always breaks" in report.row("crash").problem
    assert report.row("crash").seconds is None
    markdown = report.markdown()
    assert "**FAILED**: run 1: digit_sum differs" in markdown
    assert "2 FAILED their check" in markdown
    assert "per value, from a sample of 1,000" in markdown
    assert report.row("python").items == report.row("pool_python").items == 1_000
    assert report.row("numba").items == 3_000 and not report.row("numba").sampled
    assert report.headline_figures()["failed_strategies"] == 2


def test_results_written_into_shared_memory_are_the_reference_on_hard_values_across_chunks():
    hard = [
        0, 1, -1, 2, 97, -12, 2**61 - 1, 2**63 - 1, -(2**63), 3_037_000_500, -3_037_000_500,
        8_528_817_511, 3_037_000_493 * 3_037_000_453, 2**40 + 15,
    ]  # fmt: skip
    common = np.random.default_rng(5).integers(-10_000, 1_000_001, 60).tolist()
    values = [*common[:7], *hard, *common[7:], *hard[::-1], 3]  # 89 values: not whole bytes
    # Chunks of 13 round up to 16 values, so bitmaps split at whole bytes and hard values
    # fall on both sides of chunk boundaries.
    settings = RunSettings(2, 2_000, 13, 256 * 1024, "forkserver")
    columns = run_pool_numba_shared_memory(Workload.of(np.array(values)), settings).output
    expected = transform_values(values)
    for name in TRANSFORM_COLUMNS:
        assert columns[name].equals(pa.array(expected[name], ARROW_TYPES[name])), name
    assert columns["collatz_steps"].null_count == expected["collatz_steps"].count(None)


def test_a_shared_memory_slice_must_start_on_a_whole_byte_of_the_bitmaps():
    with pytest.raises(ValueError, match="multiple of 8 values, not 3"):
        SharedMemoryTask("input", "output", total=16, start=3, stop=16)
