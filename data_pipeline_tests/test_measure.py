"""The measuring core: warm-up first, alternating repeats, medians with spread, outputs
compared outside the timed region."""

import pytest

from data_pipeline.measure.timing import (
    Outcome,
    OutputMismatchError,
    Spread,
    alternating_order,
    measure_alternately,
)


def test_repeats_alternate_direction_so_neither_side_always_goes_first():
    assert alternating_order(["serial", "pool"], 4) == [
        *("serial", "pool"),
        *("pool", "serial"),
        *("serial", "pool"),
        *("pool", "serial"),
    ]
    assert alternating_order(["a", "b", "c"], 2) == ["a", "b", "c", "c", "b", "a"]


def test_every_strategy_is_warmed_up_once_before_any_timed_run():
    events = []
    measure_alternately(
        {name: lambda name=name: events.append(name) or Outcome(1, None) for name in "ab"},
        repeats=3,
        differences=lambda expected, actual: None,
        warm_ups={name: lambda name=name: events.append(f"warm {name}") for name in "ab"},
    )
    assert events == ["warm a", "warm b", "a", "b", "b", "a", "a", "b"]


def test_each_run_is_timed_alone_and_summarised_as_median_min_and_max():
    durations = {"a": iter([5, 1, 3]), "b": iter([2, 2, 8])}
    clock_readings = []

    def clock():
        return clock_readings[-1] if clock_readings else 0

    def run(name):
        clock_readings.append(clock() + next(durations[name]))  # the run "takes" this long
        return Outcome(name, {"detail": name})

    measured = measure_alternately(
        {name: lambda name=name: run(name) for name in "ab"},
        repeats=3,
        differences=lambda expected, actual: None,
        clock=clock,
    )
    a, b = measured.measurements["a"], measured.measurements["b"]
    assert (a.seconds.median, a.seconds.minimum, a.seconds.maximum) == (3, 1, 5)
    assert (b.seconds.median, b.seconds.minimum, b.seconds.maximum) == (2, 2, 8)
    assert a.repeats == b.repeats == 3
    assert measured.outputs == {"a": "a", "b": "b"}


def test_an_output_that_differs_from_the_first_strategy_names_the_strategy_and_the_run():
    outputs = {"serial": iter([10, 10, 10]), "pool": iter([10, 11, 10])}
    with pytest.raises(OutputMismatchError, match=r"pool \(run 2 of 3\) differs from serial: 11"):
        measure_alternately(
            {name: lambda name=name: Outcome(next(outputs[name]), None) for name in outputs},
            repeats=3,
            differences=lambda expected, actual: None if expected == actual else str(actual),
        )


def test_a_spread_of_nothing_is_zero_and_of_values_is_their_median_and_range():
    assert Spread.of([]) == Spread(0.0, 0.0, 0.0, ())
    assert Spread.of([3.0, 1.0, 2.0, 10.0]) == Spread(2.5, 1.0, 10.0, (3.0, 1.0, 2.0, 10.0))


def test_fewer_than_one_repeat_is_refused():
    with pytest.raises(ValueError, match="repeats must be at least 1, got 0"):
        measure_alternately({}, repeats=0, differences=lambda expected, actual: None)
