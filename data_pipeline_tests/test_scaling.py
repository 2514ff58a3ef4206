"""Scaling arithmetic: where the pool starts to pay for good, Amdahl's serial fraction and what
it means for more cores, and the Karp-Flatt metric."""

import math

import numpy as np
import pytest

from data_pipeline.measure.sweeps.scaling import (
    AmdahlFit,
    amdahl_fit,
    crossover_size,
    karp_flatt,
    speedup,
)

SIZES = (1_000, 10_000, 100_000, 1_000_000)
WORKERS = (1, 2, 4, 8)


def amdahl_speedups(serial_fraction, workers=WORKERS):
    return [1 / (serial_fraction + (1 - serial_fraction) / count) for count in workers]


@pytest.mark.parametrize(
    ("case", "serial", "parallel", "crossover"),
    [
        ("never faster", (1, 2, 3, 4), (2, 3, 4, 5), None),
        ("a clean crossing", (1, 2, 3, 4), (2, 2.5, 2, 2), 100_000),
        ("faster from the first size", (1, 2, 3, 4), (0.5, 1, 1.5, 2), 1_000),
        (
            "a dip after the first win moves the crossover past it",
            (1, 2, 3, 4),
            (2, 1, 3.5, 2),
            1_000_000,
        ),
        ("winning only before the largest size is never", (1, 2, 3, 4), (2, 1, 2, 5), None),
        ("equal times are not a win", (1, 2, 3, 4), (2, 2, 3, 4), None),
    ],
)
def test_the_crossover_is_the_smallest_size_from_which_parallel_wins_at_every_larger_one(
    case, serial, parallel, crossover
):
    assert crossover_size(SIZES, serial, parallel) == crossover, case


def test_the_warm_crossover_is_the_same_rule_on_times_without_the_pool_start_up():
    serial, parallel, start_up = (1, 2, 3, 4), (2.5, 2.5, 3.5, 3), 1.0
    assert crossover_size(SIZES, serial, parallel) == 1_000_000
    warm = [seconds - start_up for seconds in parallel]
    assert crossover_size(SIZES, serial, warm) == 10_000


@pytest.mark.parametrize("broken", [0.0, -1.0, math.nan, math.inf])
def test_a_broken_time_counts_as_a_loss_for_parallel(broken):
    assert crossover_size(SIZES, (1, 2, 3, 4), (2, 1, broken, 1)) == 1_000_000
    assert crossover_size(SIZES, (1, 2, 3, broken), (2, 1, 1, 1)) is None


def test_an_empty_sweep_never_crosses():
    assert crossover_size([], [], []) is None


@pytest.mark.parametrize(
    ("sizes", "serial", "parallel"),
    [
        ((1, 2), (1.0,), (1.0, 2.0)),
        ((2, 1), (1.0, 1.0), (1.0, 1.0)),
        ((1, 1), (1.0, 1.0), (1.0, 1.0)),
    ],
)
def test_sequences_of_different_lengths_or_unsorted_sizes_are_refused(sizes, serial, parallel):
    with pytest.raises(ValueError):
        crossover_size(sizes, serial, parallel)


@pytest.mark.parametrize("serial_fraction", [0.0, 0.1, 0.25, 0.6, 1.0])
def test_amdahl_fit_recovers_the_serial_fraction_of_exact_speedups(serial_fraction):
    fit = amdahl_fit(WORKERS, amdahl_speedups(serial_fraction))
    assert fit.serial_fraction == pytest.approx(serial_fraction, abs=1e-6)


def test_amdahl_fit_recovers_the_serial_fraction_of_noisy_speedups_closely():
    noise = np.random.default_rng(seed=7).uniform(0.97, 1.03, size=len(WORKERS))
    fit = amdahl_fit(WORKERS, list(np.array(amdahl_speedups(0.1)) * noise))
    assert fit.serial_fraction == pytest.approx(0.1, abs=0.02)


def test_a_single_point_with_more_than_one_worker_determines_the_fit():
    fit = amdahl_fit([4], amdahl_speedups(0.2, workers=[4]))
    assert fit.serial_fraction == pytest.approx(0.2, abs=1e-6)


@pytest.mark.parametrize(
    ("case", "workers", "speedups", "serial_fraction"),
    [
        ("speedups above the worker count clip to nothing serial", (2, 4), (2.5, 5), 0.0),
        ("parallel slower than serial clips to all serial", (2, 4), (0.6, 0.5), 1.0),
        (
            "unusable speedups are ignored",
            (2, 4, 8),
            (0, math.nan, amdahl_speedups(0.1, [8])[0]),
            0.1,
        ),
    ],
)
def test_amdahl_fit_keeps_the_serial_fraction_between_0_and_1(
    case, workers, speedups, serial_fraction
):
    fit = amdahl_fit(workers, speedups)
    assert fit.serial_fraction == pytest.approx(serial_fraction, abs=1e-6), case


@pytest.mark.parametrize(("workers", "speedups"), [((), ()), ((1,), (0.9,)), ((1, 2), (1, -1))])
def test_there_is_no_fit_without_a_usable_point_beyond_one_worker(workers, speedups):
    assert amdahl_fit(workers, speedups) is None


def test_the_fit_predicts_speedups_and_its_ceiling():
    fit = AmdahlFit(serial_fraction=0.125)
    assert fit.predicted(1) == 1
    assert fit.predicted(8) == pytest.approx(1 / (0.125 + 0.875 / 8))
    assert fit.max_speedup == 8


def test_nothing_serial_means_no_ceiling_and_the_words_say_so():
    fit = amdahl_fit(WORKERS, WORKERS)
    assert fit.max_speedup == math.inf
    assert fit.predicted(16) == pytest.approx(16)
    assert "no ceiling" in fit.in_words(cpus_here=2)


def test_the_words_quote_the_serial_share_the_larger_machines_and_the_ceiling():
    words = AmdahlFit(serial_fraction=0.12).in_words(cpus_here=2)
    assert words.startswith("About 12% of the work stays serial")
    assert "2 CPUs" in words
    assert "4 cores would give at most 2.9x, 8 cores 4.3x, 16 cores 5.7x" in words
    assert "no number of cores more than 8.3x" in words


def test_the_words_only_predict_machines_larger_than_this_one():
    words = AmdahlFit(serial_fraction=0.05).in_words(cpus_here=8)
    assert "4 cores" not in words
    assert "8 cores" not in words
    assert "16 cores would give at most 9.1x" in words


def test_the_words_for_a_machine_of_16_or_more_cpus_predict_twice_and_four_times_as_many():
    words = AmdahlFit(serial_fraction=0.05).in_words(cpus_here=16)
    assert "32 cores would give at most 12.5x, 64 cores 15.4x" in words


def test_all_serial_work_is_said_plainly():
    assert "more cores would not make it faster" in AmdahlFit(1.0).in_words(cpus_here=4)


@pytest.mark.parametrize("workers", [2, 4, 8])
def test_karp_flatt_equals_the_serial_fraction_on_exact_amdahl_speedups(workers):
    (exact,) = amdahl_speedups(0.1, workers=[workers])
    assert karp_flatt(workers, exact) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("case", "workers", "speedup_measured", "serial_fraction"),
    [
        ("one worker divides by zero", 1, 1.0, None),
        ("no speedup measured", 4, 0.0, None),
        ("not a number", 4, math.nan, None),
        ("superlinear is below zero", 2, 2.5, -0.2),
        ("slower than serial is above one", 2, 0.5, 3.0),
    ],
)
def test_karp_flatt_at_the_edges(case, workers, speedup_measured, serial_fraction):
    result = karp_flatt(workers, speedup_measured)
    assert result == (
        serial_fraction if serial_fraction is None else pytest.approx(serial_fraction)
    )


@pytest.mark.parametrize(
    ("serial", "parallel", "expected"),
    [(4.0, 2.0, 2.0), (1.0, 0.0, None), (0.0, 1.0, None), (-1.0, 1.0, None), (math.inf, 1.0, None)],
)
def test_speedup_is_serial_over_parallel_and_none_for_broken_times(serial, parallel, expected):
    assert speedup(serial, parallel) == expected
