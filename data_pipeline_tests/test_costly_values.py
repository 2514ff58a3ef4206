"""Values of very different cost: tasks are cut by what the values cost once measured, so a
small file of costly values spreads over every worker, cheap values keep their chunks, the
output does not depend on the cutting, and a chunk that runs long is named while it runs."""

import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.stages.chunk_sizes import FIRST_TASK_VALUES, TARGET_TASK_SECONDS
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.stages.parquet_output import CLEANED_SCHEMA
from data_pipeline.numbers.stages.transform import CostSizedPieces, transform_to_parquet
from data_pipeline.numbers.transforms import transform_values
from data_pipeline.parallel.pool import logger as pool_logger
from data_pipeline.parallel.pool_run import map_tasks
from data_pipeline.parallel.progress import LongTasks
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline_tests.pool_tasks import sleep_for
from data_pipeline_tests.test_progress import FakeClock, Recorder

# Trial division to 2**20 and a Miller-Rabin test: ~55 ms in every kernel (stages/chunk_sizes.py).
COSTLY_PRIME = 9_223_372_036_854_775_783


def cleaned_file(path, values: list[int]):
    """A cleaned Parquet file of ``values`` on lines 1, 2, ..."""
    batch = pa.record_batch(
        [pa.array(range(1, len(values) + 1), pa.int64()), pa.array(values, pa.int64())],
        schema=CLEANED_SCHEMA,
    )
    pq.write_table(pa.Table.from_batches([batch]), path)
    return path


def batch_of(rows: int) -> pa.RecordBatch:
    return pa.record_batch(
        [pa.array(range(rows), pa.int64()), pa.array(range(rows), pa.int64())],
        schema=CLEANED_SCHEMA,
    )


def piece_sizes(batches, first_values, seconds_per_value) -> list[int]:
    pieces = CostSizedPieces(first_values, batches[0].num_rows, lambda: seconds_per_value)
    return [piece.num_rows for piece in pieces.cut(batches)]


@pytest.mark.parametrize(
    ("seconds_per_value", "first_values", "expected"),
    [
        # Nothing measured yet: 4 values, twice that, and so on, never past a chunk.
        (None, FIRST_TASK_VALUES, [4, 8, 16, 32, 40, 100]),
        # On Dask the first tasks are whole chunks.
        (None, None, [100, 100]),
        # Cheap values (the python kernel's ~20 µs): whole chunks, as planned.
        (20e-6, FIRST_TASK_VALUES, [100, 100]),
        # Costly values: as many as take the target time.
        (0.055, FIRST_TASK_VALUES, [9] * 11 + [1] + [9] * 11 + [1]),
        # A value costlier than the target: one a task, never fewer.
        (10.0, FIRST_TASK_VALUES, [1] * 200),
    ],
)
def test_tasks_hold_as_many_values_as_take_the_target_time(
    seconds_per_value, first_values, expected
):
    assert int(TARGET_TASK_SECONDS / 0.055) == 9
    assert piece_sizes([batch_of(100), batch_of(100)], first_values, seconds_per_value) == expected


def test_pieces_keep_every_row_in_order():
    batches = [batch_of(100), batch_of(37)]
    pieces = CostSizedPieces(FIRST_TASK_VALUES, 100, lambda: 0.055)
    joined = pa.Table.from_batches(list(pieces.cut(batches)))
    assert joined.equals(pa.Table.from_batches(batches))


def test_1000_costly_values_run_on_both_workers(tmp_path, caplog):
    cleaned = cleaned_file(tmp_path / "cleaned.parquet", [COSTLY_PRIME] * 1_000)
    target = tmp_path / "transformed.parquet"
    with caplog.at_level(logging.INFO, logger=pool_logger.name):
        summary = transform_to_parquet(
            cleaned, target, PoolSettings(2, mode="auto", costs_directory=str(tmp_path)), 2_000
        )
    # One chunk of 2,000 values as configured; cut into dozens of tasks by their cost.
    metadata = summary.run.metadata()
    assert metadata["decision"] == "parallel" and metadata["workers"] == 2
    assert metadata["chunks"] >= 24
    items = [metadata["worker_0_items"], metadata["worker_1_items"]]
    assert min(items) >= 300, f"both workers share the work: {items}"
    transformed = pq.read_table(target).to_pydict()
    assert transformed["line_number"] == list(range(1, 1_001))
    expected = transform_values([COSTLY_PRIME])
    for column, values in expected.items():
        assert {int(value) for value in transformed[column]} == set(values), column
    assert [line for line in caplog.messages if "worker pid" in line and " done: " in line]


def test_a_re_cut_run_gives_the_same_bytes_as_the_reference(tmp_path):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, 6_000, seed=4, dirty_fraction=0.05)
    with source.open("ab") as file:
        file.write(b"\n".join(str(COSTLY_PRIME - 2 * n).encode() for n in range(40)) + b"\n")
    write_numbers_file(tmp_path / "more.txt", 6_000, seed=5, dirty_fraction=0.05)
    with source.open("ab") as file:
        file.write((tmp_path / "more.txt").read_bytes())
    cleaned = tmp_path / "cleaned.parquet"
    clean_to_parquet(source, cleaned, tmp_path / "rejected.parquet", PoolSettings(1), 64 * 1024)
    outputs, chunks = {}, {}
    for name, settings, chunk_values in (
        ("reference", PoolSettings(1, mode="serial"), 50_000),
        ("re-cut", PoolSettings(2, mode="parallel"), 2_000),
    ):
        outputs[name] = tmp_path / f"{name}.parquet"
        chunks[name] = transform_to_parquet(cleaned, outputs[name], settings, chunk_values).chunks
    assert chunks["re-cut"] > chunks["reference"] + 40 // 9, "the costly values were cut small"
    assert outputs["re-cut"].read_bytes() == outputs["reference"].read_bytes()


def test_cheap_values_keep_their_chunks(tmp_path):
    cleaned = cleaned_file(tmp_path / "cleaned.parquet", list(range(-1_000, 39_000)))
    summary = transform_to_parquet(
        cleaned, tmp_path / "transformed.parquet", PoolSettings(2, mode="parallel"), 2_000
    )
    # 20 chunks; the first cut in the few pieces sent before any task had finished.
    assert 20 < summary.chunks <= 20 + 2 * 2
    assert summary.pool.workers == 2


def test_a_chunk_running_long_is_named_while_it_runs(caplog):
    settings = PoolSettings(2, mode="parallel")
    with caplog.at_level(logging.INFO, logger=pool_logger.name):
        run = map_tasks(
            settings,
            sleep_for,
            [1.5, 0.01, 0.01],
            describe=lambda seconds: f"a nap of {seconds} s",
            log=pool_logger,
            long_task_seconds=0.3,
        )
        assert list(run) == [1.5, 0.01, 0.01]
    lines = [line for line in caplog.messages if "running for" in line]
    assert lines, caplog.messages
    assert lines[0].startswith("tasks: a nap of 1.5 s running for 0.")
    assert 2 <= len(lines) <= 6, "one line every 0.3 s at most while it runs"


def test_long_tasks_are_named_at_most_every_interval():
    log, clock = Recorder(), FakeClock()
    watch = LongTasks(log, "transform", threshold_seconds=10, clock=clock)
    for clock.now in range(0, 40):
        watch.check([("chunk 3 (lines 1-9, 9 values)", 0.0), ("chunk 4", 15.0)])
    assert log.lines == [
        "transform: chunk 3 (lines 1-9, 9 values) running for 10 s",
        "transform: chunk 3 (lines 1-9, 9 values) running for 20 s",
        "transform: chunk 3 (lines 1-9, 9 values) running for 30 s, chunk 4 running for 15 s",
    ]


def test_tasks_shorter_than_the_threshold_stay_quiet():
    log, clock = Recorder(), FakeClock()
    watch = LongTasks(log, "transform", threshold_seconds=10, clock=clock)
    for clock.now in range(0, 9):
        watch.check([("chunk 0", 0.0)])
    assert log.lines == []


def test_the_measured_cost_is_of_the_last_tasks():
    run = map_tasks(PoolSettings(1), sleep_for, [0.0], size_of=lambda seconds: 2)
    assert run.seconds_per_unit() is None
    for seconds in (1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0):
        run._note_cost(seconds, seconds)
    assert run.seconds_per_unit() == pytest.approx(1.5)
