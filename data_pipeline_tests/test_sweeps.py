"""The sweeps: a crossover with the pool's start-up counted, left out, or as a step's cold
first pool pays it; auto measured against the best of serial, processes and, where auto may
choose them, threads. Real sweeps on tiny sizes prove every mode gives the same output."""

import dataclasses

import pytest

from data_pipeline.measure.labels import CLEANING, TRANSFORM
from data_pipeline.measure.sweeps.auto_choices import AutoRow, auto_markdown, auto_misses
from data_pipeline.measure.sweeps.report import SweepReport
from data_pipeline.measure.sweeps.series import Series, SizeRow, WorkerRow
from data_pipeline.measure.sweeps.sweep import sweep_all
from data_pipeline.measure.timing import Spread
from data_pipeline.numbers.kernel_choice import PYTHON, kernel_named


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


# The python kernel and the fastest installed one, as the sweep asset runs them. One sweep for
# the module: the fork server preloads the kernels its first pool names, for every later pool.
KERNELS = list(dict.fromkeys([PYTHON, kernel_named("auto")]))


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> SweepReport:
    # measure_alternately raises if any mode's or worker count's output differs from serial.
    directory = tmp_path_factory.mktemp("sweep")
    return sweep_all(KERNELS, directory, workers=2, repeats=3, sizes=(10, 2_000))


def test_a_tiny_real_sweep_times_every_mode_and_worker_count_on_identical_outputs(
    tiny_sweep: SweepReport,
):
    assert [(s.stage, s.kernel) for s in tiny_sweep.series] == [
        (stage, kernel.name) for stage in (CLEANING, TRANSFORM) for kernel in KERNELS
    ]
    for series in tiny_sweep.series:
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
    assert "| cleaning, python | 10 |" in tiny_sweep.markdown()


def test_threads_are_timed_at_every_size_exactly_where_auto_may_choose_them(
    tiny_sweep: SweepReport,
):
    # Only a transform whose kernel releases the GIL: python holds it, and the cleaning's
    # vectorized path holds it for part of each task, so auto never runs either on threads.
    for series in tiny_sweep.series:
        kernel = next(kernel for kernel in KERNELS if kernel.name == series.kernel)
        expected = series.stage == TRANSFORM and kernel.releases_gil
        assert series.has_threads == expected, series.label
        for size_row in series.sizes:
            if not expected:
                assert size_row.threads is None, series.label
                continue
            assert len(size_row.threads.values) >= 3, "repeated like every other mode"
            assert size_row.threads.minimum <= size_row.threads.median
            assert size_row.threads.median <= size_row.threads.maximum


def test_what_autos_choices_cost_is_told_apart_from_the_noise_of_its_own_runs():
    mixed = dataclasses.replace(row(100_000, 1.0, 0.8, 0.95), auto_choices=("serial", "parallel"))
    assert mixed.auto_over_best == pytest.approx(0.95 / 0.8)
    assert mixed.choice_over_best == pytest.approx((1.0 + 0.8) / 2 / 0.8)
    always_best = dataclasses.replace(row(100_000, 1.0, 0.8, 0.9), auto_choices=("parallel",))
    assert always_best.choice_over_best == 1.0, "slower runs of the right choice are noise"


def threaded_row(
    size: int, serial: float, processes: float, threads: float, auto: float, *choices: str
) -> SizeRow:
    return dataclasses.replace(
        row(size, serial, processes, auto), threads=spread(threads), auto_choices=choices
    )


# A compiled transform: threads win from 10,000 values, the pool of processes only at 100,000.
THREADED = dataclasses.replace(
    SERIES,
    kernel="numba",
    sizes=(
        threaded_row(1_000, 0.002, 0.05, 0.004, 0.002, "serial"),
        threaded_row(10_000, 0.02, 0.06, 0.015, 0.016, "threads"),
        threaded_row(100_000, 0.2, 0.15, 0.1, 0.11, "threads"),
    ),
)


@pytest.mark.parametrize(
    ("case", "size_row", "choices_cost"),
    [
        ("threads chosen, threads fastest", threaded_row(1, 1.0, 0.9, 0.5, 0.55, "threads"), 1.0),
        ("serial chosen, threads fastest", threaded_row(1, 1.0, 0.9, 0.5, 1.0, "serial"), 2.0),
        (
            "threads chosen once of two, processes fastest",
            threaded_row(1, 1.0, 0.4, 0.5, 0.45, "threads", "parallel"),
            (0.5 + 0.4) / 2 / 0.4,
        ),
    ],
)
def test_autos_threads_choices_cost_the_threads_median(case, size_row, choices_cost):
    assert size_row.choice_over_best == pytest.approx(choices_cost), case


def test_where_threads_were_timed_the_best_is_the_best_of_three():
    size_row = threaded_row(1, 1.0, 0.9, 0.5, 0.55, "threads")
    assert size_row.best_choice == "threads"
    assert size_row.auto_over_best == pytest.approx(0.55 / 0.5)
    assert dataclasses.replace(size_row, auto_first_seconds=1.0).auto_first_over_best == 2.0
    without = row(1, 1.0, 0.9, 0.95)
    assert without.medians.keys() == {"serial", "parallel"}
    assert without.auto_over_best == pytest.approx(0.95 / 0.9), "as before threads existed"


def test_threads_have_a_crossover_of_their_own_beside_the_pool_of_processes():
    assert THREADED.threads_crossover() == 10_000
    assert THREADED.crossover() == 100_000
    assert SERIES.threads_crossover() is None, "not measured"


def test_the_report_shows_threads_where_measured_and_a_dash_elsewhere():
    report = SweepReport((SERIES, THREADED), workers=2, repeats=3)
    figures = report.headline_figures()
    assert figures["transform_numba_threads_crossover"] == 10_000
    assert figures["transform_numba_best_threads_speedup"] == 2.0
    assert "transform_python_threads_crossover" not in figures
    assert all(isinstance(value, int | float | str) for value in figures.values())
    markdown = report.markdown()
    python_row = "| transform, python | 1,000 | 8 | 0.0200 (0.0180-0.0220) | 0.0600 (0.0540-0.0660)"
    assert f"{python_row} | - |" in markdown
    numba_row = "| transform, numba | 100,000 | 8 | 0.2000 (0.1800-0.2200) | 0.1500 (0.1350-0.1650)"
    assert f"{numba_row} | 0.1000 (0.0900-0.1100) |" in markdown
    assert "A pool of threads wins from 10k values." in report.verdict()
    assert report.chart_png().startswith(b"\x89PNG")


def test_auto_against_its_choices_is_judged_against_the_choices_it_had():
    cleaning = AutoRow(
        "cleaning",
        2_000,
        {"serial": 0.002, "processes": 0.03},
        (0.002,) * 3,
        ("serial",) * 3,
        ("serial: why",) * 3,
    )
    transform = AutoRow(
        "transform",
        40_000,
        {"serial": 0.017, "processes": 0.05, "threads": 0.012},
        (0.017, 0.017, 0.012),
        ("serial", "serial", "threads"),
        ("serial: a", "serial: b", "threads: c"),
    )
    assert transform.best == "threads"
    assert "| cleaning | 2,000 | 2.0 ms | 30.0 ms | - |" in auto_markdown([cleaning, transform])
    assert auto_misses([cleaning]) == "", "within 1.10x: nothing to explain"
    misses = auto_misses([cleaning, transform])
    assert misses.startswith("transform, 40,000: auto median 1.42x")
    assert "  17.0 ms, serial: b" in misses
