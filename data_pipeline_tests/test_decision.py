"""`mode`: serial and parallel force the choice; auto predicts both from the step's own work on
a sample and the pool's measured costs, and starts a pool only where it should win. The
pool's costs are measured in a fresh process once and kept a day."""

import dataclasses
import json
import time

import pyarrow.parquet as pq
import pytest

from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import PYTHON
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.stages.transform import transform_to_parquet
from data_pipeline.parallel.calibration import (
    COSTS_FILE,
    PoolShape,
    corrections,
    learn,
    pool_costs,
)
from data_pipeline.parallel.corrections import FORGET_AFTER, KEPT_RATIOS
from data_pipeline.parallel.decision import (
    Corrections,
    Decision,
    PoolCosts,
    WorkSample,
    forced,
    predicted,
)
from data_pipeline.parallel.settings import PoolSettings

KEY = "v2: forkserver, 2 workers, preloading nothing"
# A machine where a pool costs 0.3 s to start cold, 0.05 s warm, and 0.3 ms a task.
COSTS = PoolCosts(2, 0.3, 0.05, 3e-4, time.time())


def sample_of(seconds_per_item: float, items: int = 1_000) -> WorkSample:
    return WorkSample(items, seconds_per_item * items, 0.0, 0.0)


def never(*arguments):
    raise AssertionError("the pool's costs were read although the choice was already made")


def costs(workers: int) -> PoolCosts:
    return COSTS


def as_modelled(size: int) -> Corrections:
    """Runs at this size took what the model predicted, in both modes: nothing left to try."""
    return Corrections(size, (1.0, 1.0), (1.0, 1.0))


def test_serial_and_parallel_force_the_choice_without_measuring_anything():
    serial, parallel = forced("serial", 2, 1_000), forced("parallel", 2, 5)
    assert (serial.workers, serial.parallel) == (1, False)
    assert (parallel.workers, parallel.parallel) == (2, True)
    assert "as configured" in serial.reason and "as configured" in parallel.reason


def test_auto_runs_one_chunk_serially_without_measuring():
    decision = forced("auto", 2, 1)
    assert decision.workers == 1 and "one chunk" in decision.reason
    assert forced("auto", 2, 2) is None, "two chunks: auto samples the first"


def test_auto_runs_little_work_serially_without_reading_the_pools_costs():
    # 4,000 values at 0.36 µs: 1.4 ms of work, less than any pool needs to start.
    decision = predicted(2, 4_000, 2, "values", sample_of(0.36e-6), never, warm=False, cpus=2)
    assert decision.workers == 1
    assert decision.reason.startswith("serial: 4,000 values x 0.36 µs = 1.4 ms of work left")
    assert decision.predicted_serial_seconds == pytest.approx(4_000 * 0.36e-6)


def test_auto_weighs_the_work_against_the_pools_measured_costs_and_says_so_in_numbers():
    # 40,000 values at 2 µs: 80 ms of work, against 300 ms to start a cold pool.
    decision = predicted(2, 40_000, 20, "values", sample_of(2e-6), costs, warm=False, cpus=2)
    assert decision.workers == 1
    assert decision.reason.startswith("serial: 40,000 values x 2.00 µs = 80.0 ms of work <= 1.1 x")
    assert "300.0 ms start-up (cold)" in decision.reason


def test_auto_starts_a_pool_when_the_work_outweighs_its_costs():
    # 400,000 values at 25 µs: 10 s of work; a pool of 2 needs 0.3 s + 5 s + 200 x 0.3 ms.
    decision = predicted(2, 400_000, 200, "values", sample_of(25e-6), costs, warm=False, cpus=2)
    assert decision.workers == 2
    assert decision.predicted_parallel_seconds == pytest.approx(0.3 + 5.0 + 200 * 3e-4)
    assert decision.metadata()["decision"] == "parallel"


def test_a_warm_pool_moves_the_line_the_cold_one_draws():
    # 0.2 s of work: more than a warm start-up plus half the work, less than a cold one.
    arguments = (2, 20_000, 10, "values", sample_of(10e-6), costs)
    assert predicted(*arguments, False, 2, as_modelled).workers == 1
    assert predicted(*arguments, True, 2, as_modelled).workers == 2


def test_a_fork_server_started_ahead_takes_its_head_start_off_the_cold_start_up():
    assert COSTS.started_ahead(0.1).cold_startup_seconds == pytest.approx(0.2)
    # Never below a warm start-up: the workers themselves still start.
    assert COSTS.started_ahead(5.0).cold_startup_seconds == COSTS.warm_startup_seconds


def test_moving_results_back_counts_against_the_pool():
    # Compute is cheap to split, but the owner unpickles every result alone.
    costly_results = WorkSample(1_000, 1_000 * 2e-6, 0.0, 1_000 * 2.1e-6)
    decision = predicted(2, 4_000_000, 8, "values", costly_results, costs, True, 2, as_modelled)
    assert decision.workers == 1


def test_an_unknown_mode_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="mode='fast' is not a mode: choose one of auto"):
        forced("fast", 2, 10)


def test_a_work_sample_times_the_work_once_and_the_round_trip_of_its_result_when_asked():
    calls = []

    def work():
        calls.append(1)
        return list(range(100_000))

    sample, result = WorkSample.timed(work, 100_000)
    assert len(calls) == 1 and result == list(range(100_000)), "the sample's output is used"
    assert sample.seconds > 0 and sample.pickle_seconds is None, "not measured until needed"
    measured = sample.with_round_trip()
    assert measured.pickle_seconds > 0 and measured.unpickle_seconds > 0
    assert measured.result_bytes > 100_000 and measured.result is None


def test_the_pools_costs_are_measured_once_then_kept_for_a_day(tmp_path):
    first = pool_costs(tmp_path, PoolShape(2, "forkserver"))
    assert first.warm_startup_seconds > 0 and 0 < first.cold_startup_seconds < 60
    assert 0 < first.task_seconds < 1
    kept = json.loads((tmp_path / COSTS_FILE).read_text())
    assert list(kept) == [KEY]
    assert pool_costs(tmp_path, PoolShape(2, "forkserver")) == first, (
        "read back, not measured again"
    )
    assert pool_costs(tmp_path, PoolShape(2, "forkserver"), max_age_seconds=0) != first, "too old"


def test_an_unreadable_costs_file_is_measured_again_and_replaced(tmp_path):
    (tmp_path / COSTS_FILE).write_text("{not json")
    costs = pool_costs(tmp_path, PoolShape(2, "forkserver"))
    kept = json.loads((tmp_path / COSTS_FILE).read_text())
    assert kept[KEY]["measured_at"] == pytest.approx(costs.measured_at)


def test_auto_in_the_pipeline_decides_per_stage_and_the_outputs_do_not_change(tmp_path):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, count=60_000, seed=3, dirty_fraction=0.05)
    outputs = {}
    for mode in ("auto", "serial"):
        settings = PoolSettings(workers=2, mode=mode, costs_directory=str(tmp_path))
        cleaned, rejected = tmp_path / f"cleaned_{mode}.parquet", tmp_path / f"rej_{mode}.parquet"
        transformed = tmp_path / f"transformed_{mode}.parquet"
        cleaning = clean_to_parquet(source, cleaned, rejected, settings, 64 * 1024, kernel=PYTHON)
        transform = transform_to_parquet(cleaned, transformed, settings, 2_000, kernel=PYTHON)
        outputs[mode] = [pq.read_table(path) for path in (cleaned, rejected, transformed)]
        if mode == "auto":
            # ~1.5 s of per-value Python in the transform: a pool wins by far.
            assert transform.decision.parallel, transform.decision.reason
            assert transform.pool.workers == 2
            assert "values x" in transform.decision.reason
            assert "bytes x" in cleaning.decision.reason
            assert (tmp_path / COSTS_FILE).exists()
    assert all(a.equals(b) for a, b in zip(outputs["auto"], outputs["serial"], strict=True))


def test_the_steps_own_work_on_each_result_is_not_split_by_the_workers():
    # 1 µs of work a worker can do, 3 µs the step does on each result: Amdahl's serial part.
    sample = WorkSample(1_000, 1e-3, 0.0, 0.0).with_owner_seconds(3e-3)
    decision = predicted(2, 1_000_000, 20, "values", sample, costs, True, 2, as_modelled)
    assert decision.predicted_serial_seconds == pytest.approx(4.0)
    assert decision.predicted_parallel_seconds == pytest.approx(0.05 + 3.0 + 20 * 3e-4)
    assert decision.workers == 2
    assert decision.reason.startswith(
        "parallel: 1,000,000 values x 4.00 µs = 4.00 s x1.00 = 4.00 s of work > 1 x a pool of 2: "
        "(50.0 ms start-up (warm) + 3.00 s + 20 tasks x 300 µs) x1.00 = 3.06 s"
    )


def test_with_no_spare_cpu_the_steps_share_competes_with_the_workers():
    # 1 µs a worker's, 0.8 µs the step's own: 1.8 s of CPU for a million values.
    sample = WorkSample(1_000, 1e-3, 0.0, 0.0).with_owner_seconds(0.8e-3)
    on_two = predicted(2, 1_000_000, 20, "values", sample, costs, warm=True, cpus=2)
    on_eight = predicted(2, 1_000_000, 20, "values", sample, costs, warm=True, cpus=8)
    tasks = 0.05 + 20 * 3e-4
    assert on_two.predicted_parallel_seconds == pytest.approx(tasks + 1.8 / 2)
    assert on_eight.predicted_parallel_seconds == pytest.approx(tasks + 0.8), "the step's own"


def test_a_pool_never_measured_at_this_size_must_win_by_the_margin():
    # 17.8 ms serially; a warm pool: 5 ms + 8.9 ms + 10 tasks x 0.3 ms = 16.9 ms, 5 % less.
    quick = PoolCosts(2, 0.3, 0.005, 3e-4, time.time())
    decision = predicted(2, 1_780, 10, "values", sample_of(10e-6), lambda w: quick, True, 2)
    assert decision.predicted_parallel_seconds < decision.predicted_serial_seconds
    assert decision.workers == 1


def test_a_close_second_never_measured_at_this_size_is_run_to_measure_it():
    # 125 ms serially against a warm pool's 118.5 ms: a near tie, and no run here measured either.
    arguments = (2, 100_000, 20, "values", sample_of(1.25e-6), costs)
    first = predicted(*arguments, warm=True, cpus=4)
    assert first.workers == 2, "the pool: within the margin, but never measured here"
    assert first.reason.startswith("parallel, to measure it at this size (1.05x the serial")
    pool_measured = Corrections(17, parallel_ratios=(1.0,))
    second = predicted(*arguments, True, 4, lambda size: pool_measured)
    assert second.workers == 1 and second.reason.startswith("serial, to measure it")
    assert "median of 0 serial and 1 pooled" in second.reason
    near_tie_measured = Corrections(17, serial_ratios=(1.0, 1.0), parallel_ratios=(1.0,))
    third = predicted(*arguments, True, 4, lambda size: near_tie_measured)
    assert third.workers == 2 and third.reason.startswith("parallel: "), "now the faster"


def test_lessons_of_a_choice_not_run_for_ten_runs_are_forgotten(tmp_path):
    # Three slow pool runs on a loaded machine taught x3.0: serial was chosen ever after. Ten
    # serial runs later the pool's lessons are forgotten, and the model's near tie runs it.
    arguments = (2, 100_000, 20, "values", sample_of(1.25e-6), costs)
    slow_pools = Corrections(17, parallel_ratios=(3.0,) * 3, parallel_seconds_per_item=(4e-6,) * 3)
    serial_chosen = Decision("auto", 1, "serial", 0.125, 0.2, 1e-6, slow_pools, 100_000)
    for _ in range(FORGET_AFTER - 1):
        learn(tmp_path, "a step", serial_chosen, 0.125)
        serial_chosen = dataclasses.replace(
            serial_chosen, corrections=corrections(tmp_path, "a step", 17)
        )
    assert corrections(tmp_path, "a step", 17).runs("parallel") == 3, "not yet stale"
    learn(tmp_path, "a step", serial_chosen, 0.125)
    learned = corrections(tmp_path, "a step", 17)
    assert learned.runs("parallel") == 0 and learned.runs("serial") == KEPT_RATIOS
    refresh = predicted(*arguments, True, 4, lambda size: learned)
    assert refresh.workers == 2 and refresh.reason.startswith("parallel, to measure it")


def test_what_past_runs_of_this_size_took_corrects_the_model():
    # 1.3x predicted gain: a pool, unless pools of this size took 1.5x the model's time.
    arguments = (2, 100_000, 20, "values", sample_of(2.6e-6), costs)
    both_measured = Corrections(0, serial_ratios=(1.0, 1.0), parallel_ratios=(1.0, 1.0))
    assert predicted(*arguments, True, 4, lambda size: both_measured).workers == 2
    slow_pools = Corrections(0, serial_ratios=(1.0, 1.0), parallel_ratios=(1.4, 1.5, 3.0))
    taught = predicted(*arguments, warm=True, cpus=4, corrections=lambda size: slow_pools)
    assert taught.workers == 1
    assert ") x1.50 = " in taught.reason, "the median of the pool's ratios"


def test_once_both_choices_ran_at_this_size_how_their_times_compared_decides():
    # The sample predicts a clear win for the pool; runs here measured the opposite.
    arguments = (2, 100_000, 20, "values", sample_of(5e-6), costs)
    assert predicted(*arguments, True, 4, as_modelled).workers == 2
    measured = Corrections(
        17,
        serial_ratios=(1.0, 1.0, 1.0),
        parallel_ratios=(1.0, 1.0),
        serial_seconds_per_item=(3.0e-6, 3.2e-6, 9.0e-6),  # one slow run does not count
        parallel_seconds_per_item=(3.5e-6, 3.4e-6),
    )
    decision = predicted(*arguments, True, 4, lambda size: measured)
    assert decision.workers == 1
    # This run's sample: 0.5 s of work, so the pool's 345/320 of it.
    assert decision.predicted_serial_seconds == pytest.approx(0.5)
    assert decision.predicted_parallel_seconds == pytest.approx(0.5 * 3.45 / 3.2)
    assert decision.reason.startswith(
        "serial: runs of this size here took 320.0 ms serially (3 runs) <= 345.0 ms on a pool "
        "of 2 (2 runs), medians for 100,000 values; this run's sample: 500.0 ms of work"
    )
    # What this run teaches is measured against the model, not against the past runs.
    learned = measured.after(decision, 0.25)
    assert learned.serial_ratios[-1] == pytest.approx(0.5)
    assert learned.serial_seconds_per_item[-1] == pytest.approx(2.5e-6)


def test_the_median_of_the_last_five_runs_is_the_correction():
    pool_chosen = Decision("auto", 2, "parallel", 2.0, 1.0, 1e-6, Corrections(17), 1_000)
    corrections = Corrections(17)
    for observed in (1.2, 1.1, 9.0, 1.3, 1.25, 1.15):  # one run disturbed by the machine
        corrections = corrections.after(pool_chosen, observed)
    assert corrections.parallel_ratios == (1.1, 4.0, 1.3, 1.25, 1.15), "bounded, last five"
    assert corrections.factor("parallel") == pytest.approx(1.25)
    assert corrections.factor("serial") == 1.0, "no serial run yet"
    assert corrections.observed_seconds("parallel", 2_000) == pytest.approx(2_000 * 1.25e-3)
    assert corrections.observed_seconds("serial", 2_000) is None
    assert Corrections().after(pool_chosen, 0.0) == Corrections(), "nothing observed"


def test_the_model_time_is_what_a_corrected_prediction_was_divided_by_its_correction():
    # Predicted 2.0 s = the model's 1.0 s x the median 2.0: a run of 3.0 s is 3x the model.
    corrections = Corrections(17, parallel_ratios=(2.0,))
    decision = Decision("auto", 2, "parallel", 4.0, 2.0, 1e-6, corrections, 1_000)
    assert corrections.after(decision, 3.0).parallel_ratios == (2.0, 3.0)


def test_what_a_run_taught_is_kept_beside_the_costs_per_kind_of_step_and_size(tmp_path):
    decision = Decision("auto", 2, "parallel", 2.0, 1.0, 1e-6, Corrections(17), 1_000)
    learn(tmp_path, "values, numba", decision, 4.0)
    assert corrections(tmp_path, "values, numba", 17).parallel_ratios == (4.0,)
    assert corrections(tmp_path, "values, numba", 20) == Corrections(20), "per size"
    assert corrections(tmp_path, "bytes, python", 17) == Corrections(17), "per kind of step"
    forced_decision = forced("parallel", 2, 10)
    learn(tmp_path, "values, numba", forced_decision, 99.0)  # forced: nothing to learn
    assert corrections(tmp_path, "values, numba", 17).parallel_ratios == (4.0,)


def test_a_run_too_short_to_tell_is_not_kept(tmp_path):
    decision = Decision("auto", 2, "parallel", 0.02, 0.01, 1e-6, Corrections(10))
    learn(tmp_path, "values, numba", decision, 0.04)  # 40 ms: the machine's noise
    assert not (tmp_path / COSTS_FILE).exists()


def test_auto_learns_at_each_size_in_a_real_run(tmp_path):
    numbers = tmp_path / "numbers.txt"
    write_numbers_file(numbers, count=100_000, seed=5, dirty_fraction=0.0)
    settings = PoolSettings(2, mode="auto", costs_directory=str(tmp_path))
    outputs = tmp_path / "clean.parquet", tmp_path / "rejected.parquet"
    for _ in range(2):  # ~0.3 s of cleaning each: long enough to learn from
        clean_to_parquet(numbers, *outputs, settings, chunk_bytes=64 * 1024, kernel=PYTHON)
    kept = json.loads((tmp_path / COSTS_FILE).read_text())["corrections by size"]
    (sizes,) = kept.values()  # one kind of step
    (entry,) = sizes.values()  # one size, twice
    assert len(entry["serial_ratios"]) + len(entry["parallel_ratios"]) == 2
    assert len(entry["serial_seconds_per_item"]) + len(entry["parallel_seconds_per_item"]) == 2


def test_the_kept_costs_are_read_again_only_after_the_file_changed(tmp_path):
    (tmp_path / COSTS_FILE).write_text(json.dumps({KEY: dataclasses.asdict(COSTS)}))
    assert pool_costs(tmp_path, PoolShape(2, "forkserver")) == COSTS
    changed = {**dataclasses.asdict(COSTS), "task_seconds": 1e-3}
    (tmp_path / COSTS_FILE).write_text(json.dumps({KEY: changed}))
    assert pool_costs(tmp_path, PoolShape(2, "forkserver")).task_seconds == 1e-3
