"""The sweeps: a crossover with the pool's start-up counted, left out, or as a step's cold
first pool pays it; auto measured against the better of serial and parallel. A real sweep
on tiny sizes proves every mode gives the same output."""

import dataclasses
from pathlib import Path

import pytest

from data_pipeline.measure.labels import CLEANING, TRANSFORM
from data_pipeline.measure.sweeps.series import Series, SizeRow, WorkerRow
from data_pipeline.measure.sweeps.sweep import sweep_all
from data_pipeline.measure.timing import Spread
from data_pipeline.numbers.kernel_choice import PYTHON


def spread(seconds: float) -> Spread:
    return Spread.of([seconds * 0.9, seconds, seconds * 1.1])


def row(size: int, serial: float, parallel: float, auto: float, startup: float = 0.05) -> SizeRow:
    return SizeRow(size, 8, spread(serial), spread(parallel), spread(auto), startup, ("serial",))


# Serial grows with the size; the pool pays its 50 ms start-up and halves the rest.
SERIES = Series(
    TRANSFORM,
    "python",
    "values",
    (
        row(1_000, 0.02, 0.06, 0.02),
        row(10_000, 0.20, 0.15, 0.16),
        row(100_000, 2.00, 1.05, 1.10),
    ),
    (
        WorkerRow(1, spread(2.0), 1.0, None, False),
        WorkerRow(2, spread(1.1), 2.0 / 1.1, 0.1, False),
        WorkerRow(4, spread(1.2), 2.0 / 1.2, 0.4, True),
    ),
    100_000,
    cold_startup_seconds=0.8,
)


def test_the_crossover_counts_start_up_leaves_it_out_or_takes_a_cold_pools():
    assert SERIES.crossover() == 10_000
    # Without its start-up the pool would win from the first size (0.01 s < 0.02 s).
    assert SERIES.crossover("none") == 1_000
    # A cold pool pays 0.8 s instead of 0.05 s: only the largest size still wins.
    assert SERIES.crossover("cold") == 100_000


def test_auto_is_measured_against_the_better_of_serial_and_parallel():
    assert [r.auto_over_best for r in SERIES.sizes] == pytest.approx(
        [1.0, 0.16 / 0.15, 1.10 / 1.05]
    )
    assert SERIES.worst_auto().size == 10_000


def test_amdahls_fit_leaves_out_the_oversubscribed_point():
    fit = SERIES.amdahl
    assert fit.predicted(2) == pytest.approx(2.0 / 1.1, rel=1e-3)


def test_a_tiny_real_sweep_times_every_mode_and_worker_count_on_identical_outputs(tmp_path: Path):
    # measure_alternately raises if any mode's or worker count's output differs from serial.
    report = sweep_all([PYTHON], tmp_path, workers=2, repeats=3, sizes=(10, 2_000))
    assert [(s.stage, s.kernel) for s in report.series] == [
        (CLEANING, "python"),
        (TRANSFORM, "python"),
    ]
    for series in report.series:
        assert [r.size for r in series.sizes] == [10, 2_000]
        for size_row in series.sizes:
            for timing in (size_row.serial, size_row.parallel, size_row.auto):
                # At least the repeats asked for; runs of milliseconds get more.
                assert len(timing.values) >= 3
                assert timing.minimum <= timing.median <= timing.maximum
            assert size_row.chunks >= 2, "small inputs are cut so every worker gets chunks"
        assert [(w.workers, w.oversubscribed) for w in series.workers] == [
            (1, False),
            (2, False),
            (4, True),
        ]
        assert series.workers[0].karp_flatt is None
        assert series.cold_startup_seconds > 0
    assert "| cleaning, python | 10 |" in report.markdown()


def test_what_autos_choices_cost_is_told_apart_from_the_noise_of_its_own_runs():
    mixed = dataclasses.replace(row(100_000, 1.0, 0.8, 0.95), auto_choices=("serial", "parallel"))
    assert mixed.auto_over_best == pytest.approx(0.95 / 0.8)
    assert mixed.choice_over_best == pytest.approx((1.0 + 0.8) / 2 / 0.8)
    always_best = dataclasses.replace(row(100_000, 1.0, 0.8, 0.9), auto_choices=("parallel",))
    assert always_best.choice_over_best == 1.0, "slower runs of the right choice are noise"
