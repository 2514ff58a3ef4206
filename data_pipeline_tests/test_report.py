"""The verdict states only what was measured: a headline with the median speedup, then the
measured overheads that weighed most."""

import pyarrow as pa
import pytest

from data_pipeline.measure.comparison import Comparison, StageComparison
from data_pipeline.measure.report import (
    COMPARISON_COLUMNS,
    comparison_rows,
    headline,
    markdown_table,
    verdict,
)
from data_pipeline.measure.timing import Measurement, Spread
from data_pipeline.parallel.stats import PoolStats


def stats(workers, chunks=8, startup=0.0, busy=1.0, cpu=1.0, wall=None) -> PoolStats:
    """A pool's figures: ``busy`` and ``cpu`` seconds split evenly over the workers."""
    pids = range(1000, 1000 + workers)
    return PoolStats(
        workers=workers,
        start_method="forkserver" if workers > 1 else "none",
        chunks=chunks,
        startup_seconds=startup,
        map_seconds=wall if wall is not None else busy / workers,
        busy_seconds_by_worker={pid: busy / workers for pid in pids},
        cpu_seconds_by_worker={pid: cpu / workers for pid in pids},
    )


def stage(name, serial, parallel, pool: PoolStats, items=1000) -> StageComparison:
    serial_stats = stats(1, chunks=pool.chunks, busy=serial[0], cpu=serial[0])
    empty = (pa.table({"value": pa.array([], pa.int64())}),)
    return StageComparison(
        name=name,
        items=items,
        serial=Measurement("serial", Spread.of(serial), (serial_stats,) * len(serial)),
        parallel=Measurement("parallel", Spread.of(parallel), (pool,) * len(parallel)),
        serial_tables=empty,
        parallel_tables=empty,
    )


def comparison(cleaning: StageComparison, transform: StageComparison, requested=2) -> Comparison:
    return Comparison(cleaning, transform, cpus_available=2, requested_workers=requested, repeats=3)


def test_a_pool_that_halves_the_time_paid_off_and_says_by_how_much():
    result = comparison(
        stage("cleaning", [1.0, 1.0, 1.0], [0.5, 0.5, 0.5], stats(2, busy=0.95, cpu=0.95)),
        stage("transform", [9.0, 9.1, 8.9], [4.6, 4.5, 4.7], stats(2, busy=9.0, cpu=9.0)),
    )
    sentence = verdict(result)
    assert sentence.startswith("Parallelism paid off: 1.96x faster on 2 workers (98% efficiency")
    assert "median of 3 runs" in sentence
    assert "noise" not in sentence


def test_a_slower_pool_is_called_slower_with_its_measured_start_up_first():
    result = comparison(
        stage("cleaning", [0.10] * 3, [0.25] * 3, stats(2, startup=0.15, busy=0.1, cpu=0.1)),
        stage("transform", [0.10] * 3, [0.25] * 3, stats(2, startup=0.15, busy=0.1, cpu=0.1)),
    )
    sentence = verdict(result)
    assert sentence.startswith("Parallelism did not pay off: the pool was 2.50x slower")
    assert "Starting the pools took 0.30 s, 60% of the parallel time." in sentence
    assert "The cleaning alone was 2.50x slower on the pool (serially 100.0 µs per item)." in (
        sentence
    )
    assert "gained" not in sentence and "too small" not in sentence


def test_waiting_for_cpus_is_named_as_the_cause_when_it_was_measured():
    # The workers were busy 10 s but got only 3 s of CPU: other processes held the CPUs.
    busy_machine = stats(2, busy=10.0, cpu=3.0)
    result = comparison(
        stage("cleaning", [1.0] * 3, [1.0] * 3, stats(2, busy=1.0, cpu=1.0)),
        stage("transform", [5.0, 5.2, 4.8], [5.0, 5.1, 4.9], busy_machine),
    )
    sentence = verdict(result)
    assert sentence.startswith("Parallelism did not pay off: only 1.00x faster")
    assert "In the transform, the workers were off the CPU 70% of their time in tasks" in sentence
    assert "within this machine's noise" in sentence
    assert "Starting the pools" not in sentence, "start-up was not measured as significant"


def test_causes_come_weightiest_first():
    # Start-up is 40 % of the parallel time; the workers were off the CPU 20 % of theirs.
    pool = stats(2, startup=0.2, busy=1.0, cpu=0.8)
    result = comparison(
        stage("cleaning", [0.5] * 3, [0.5] * 3, pool),
        stage("transform", [0.5] * 3, [0.5] * 3, pool),
    )
    sentence = verdict(result)
    start_up = sentence.index("Starting the pools took 0.40 s, 40% of the parallel time.")
    off_cpu = sentence.index("the workers were off the CPU 20%")
    assert start_up < off_cpu


def test_a_serial_baseline_slower_than_the_workers_is_called_out_not_credited():
    # The serial runs burned 1.5 s of CPU for work the workers did in 1.0 s.
    result = comparison(
        stage("cleaning", [1.5] * 3, [0.5] * 3, stats(2, busy=1.0, cpu=1.0)),
        stage("transform", [9.0] * 3, [4.6] * 3, stats(2, busy=9.0, cpu=9.0)),
    )
    assert (
        "In the cleaning, the serial runs needed 50% more CPU time than the workers for the "
        "same work: the serial baseline was slowed down"
    ) in verdict(result)


@pytest.mark.parametrize(
    ("requested", "chunks", "reason"),
    [
        (2, 1, "the input made 1 chunk per stage at most"),
        (1, 8, "the pool is set to one worker"),
    ],
)
def test_a_single_worker_is_never_reported_as_a_speedup(requested, chunks, reason):
    one = stats(1, chunks=chunks, busy=0.01, cpu=0.01)
    result = comparison(
        stage("cleaning", [0.02] * 3, [0.01] * 3, one, items=0),
        stage("transform", [0.02] * 3, [0.01] * 3, one, items=0),
        requested=requested,
    )
    sentence = verdict(result)
    assert sentence.startswith("Nothing ran in parallel: ")
    assert reason in sentence
    assert "paid off" not in sentence and "µs" not in sentence


def test_the_table_shows_medians_with_their_range_and_ends_with_the_verdict():
    result = comparison(
        stage("cleaning", [1.0, 1.2, 0.9], [0.5, 0.7, 0.6], stats(2)),
        stage("transform", [9.0, 9.1, 8.9], [4.6, 4.5, 4.7], stats(2, busy=9.0, cpu=9.0)),
    )
    table = markdown_table(result)
    assert "| cleaning | 1,000 | 1.00 (0.90-1.20) | 0.60 (0.50-0.70) | 1.67x |" in table
    assert verdict(result) in table


@pytest.mark.parametrize(
    ("serial", "parallel", "workers", "expected"),
    [
        (9.0, 4.6, 2, "1.96x faster on 2 of 2 CPUs, outputs identical"),
        (0.2, 0.5, 2, "2.50x slower on 2 of 2 CPUs, outputs identical"),
        (0.02, 0.01, 1, "Nothing ran in parallel (one chunk or one worker): no speedup to report"),
    ],
)
def test_the_headline_says_the_answer_in_a_few_words(serial, parallel, workers, expected):
    pool = stats(workers, busy=parallel, cpu=parallel)
    result = comparison(
        stage("cleaning", [serial / 2] * 3, [parallel / 2] * 3, pool),
        stage("transform", [serial / 2] * 3, [parallel / 2] * 3, pool),
    )
    assert headline(result) == expected


@pytest.mark.parametrize("items", [0, 1])
def test_tiny_inputs_get_no_per_item_figure_and_no_speedup(items):
    # One chunk of at most one item: a pool never starts more workers than chunks.
    one = stats(1, chunks=1, busy=0.01, cpu=0.01)
    result = comparison(
        stage("cleaning", [0.003] * 3, [0.002] * 3, one, items=items),
        stage("transform", [0.003] * 3, [0.002] * 3, one, items=items),
    )
    sentence = verdict(result)
    assert sentence.startswith("Nothing ran in parallel: the input made 1 chunk per stage")
    assert "µs" not in sentence and "faster" not in sentence
    assert headline(result).startswith("Nothing ran in parallel")


def test_a_stage_that_lost_alone_is_called_slower_with_its_cost_per_item():
    result = comparison(
        stage("cleaning", [0.40] * 3, [0.90] * 3, stats(2, busy=0.4, cpu=0.4), items=200_000),
        stage("transform", [9.0] * 3, [4.6] * 3, stats(2, busy=9.0, cpu=9.0)),
    )
    sentence = verdict(result)
    assert "The cleaning alone was 2.25x slower on the pool (serially 2.0 µs per item)." in sentence
    assert "gained" not in sentence


def test_idle_workers_are_named_with_their_share_of_the_parallel_time():
    idle = stats(2, busy=1.0, cpu=1.0, wall=2.0)  # 0.5 s of work each in 2 s: 1.5 s idle
    result = comparison(
        stage("cleaning", [0.9] * 3, [2.0] * 3, idle),
        stage("transform", [0.9] * 3, [2.0] * 3, idle),
    )
    assert "Workers sat idle for 75% of the parallel time" in verdict(result)


def test_the_comparison_table_has_a_row_per_stage_and_run_then_both_stages():
    result = comparison(
        stage("cleaning", [1.0, 1.2, 0.9], [0.5, 0.7, 0.6], stats(2, startup=0.04)),
        stage("transform", [9.0, 9.1, 8.9], [4.6, 4.5, 4.7], stats(2, busy=9.0, cpu=8.1)),
    )
    rows = comparison_rows(result)
    assert [(row["stage"], row["run"]) for row in rows] == [
        (stage, run) for stage in ("cleaning", "transform", "both") for run in ("serial", "pool")
    ]
    assert rows[1] == {
        "stage": "cleaning",
        "run": "pool",
        "median_s": 0.6,
        "range_s": "0.50-0.70",
        "speedup": "1.67x",
        "cpu_wait": "0%",
    }
    assert rows[3]["cpu_wait"] == "10%"
    assert rows[-1]["median_s"] == round(result.parallel_seconds, 2)
    # The fastest and slowest repeat of both stages together: 0.5 + 4.6 and 0.6 + 4.7.
    assert rows[-1]["range_s"] == "5.10-5.30"
    assert {name for name, _, _ in COMPARISON_COLUMNS} == set(rows[0])


def with_shutdown(pool: PoolStats, seconds: float) -> PoolStats:
    pool.shutdown_seconds = seconds
    return pool


@pytest.mark.parametrize(
    ("serial", "parallel", "startup", "shutdown", "expected"),
    [
        # Start-up and shutdown (0.25 + 0.05 per stage) alone exceed the 0.2 s of work per stage.
        (0.2, 0.45, 0.25, 0.05, "Fixed costs outweigh the work: starting and stopping the pools "
         "took 0.60 s, at least the 0.40 s the whole work took in one process"),
        # The pool did each stage's work in 0.6 s instead of 1.0 s, but paid 0.5 s to start.
        (1.0, 1.1, 0.5, 0.0, "Fixed costs outweigh the work saved: the pool did the work in "
         "1.20 s against 2.00 s in one process, saving 0.80 s, but starting and stopping the "
         "pools took 1.00 s."),
    ],
)  # fmt: skip
def test_fixed_costs_that_outweigh_the_work_are_named_right_after_the_headline(
    serial, parallel, startup, shutdown, expected
):
    def pool():
        return with_shutdown(stats(2, startup=startup, busy=serial, cpu=serial), shutdown)

    result = comparison(
        stage("cleaning", [serial] * 3, [parallel] * 3, pool()),
        stage("transform", [serial] * 3, [parallel] * 3, pool()),
    )
    sentences = verdict(result)
    assert sentences.startswith("Parallelism did not pay off")
    assert sentences.split(". ", 1)[1].startswith(expected)


@pytest.mark.parametrize(
    ("serial", "parallel", "startup"),
    [
        (1.0, 0.55, 0.05),  # paid off: fixed costs are a small part
        (1.0, 1.3, 0.1),  # slower, but the work itself was slower on the pool, not the start
    ],
)
def test_fixed_costs_are_not_blamed_when_they_did_not_outweigh_the_work(serial, parallel, startup):
    pool = stats(2, startup=startup, busy=serial, cpu=serial)
    result = comparison(
        stage("cleaning", [serial] * 3, [parallel] * 3, pool),
        stage("transform", [serial] * 3, [parallel] * 3, pool),
    )
    assert "Fixed costs" not in verdict(result)


def test_a_single_worker_has_no_fixed_cost_sentence():
    result = comparison(
        stage("cleaning", [0.1] * 3, [0.1] * 3, stats(1, chunks=1)),
        stage("transform", [0.1] * 3, [0.1] * 3, stats(1, chunks=1)),
        requested=1,
    )
    assert "Fixed costs" not in verdict(result)
