import dataclasses
import os

import pyarrow.parquet as pq
import pytest

from data_pipeline.measure.comparison import compare_serial_and_parallel
from data_pipeline.measure.report import markdown_table
from data_pipeline.measure.timing import OutputMismatchError
from data_pipeline.numbers.chunking import UTF8_BOM
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import PYTHON, Kernel, installed, kernel_named
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.stages.transform import transform_to_parquet
from data_pipeline.numbers.storage import atomic_directory, atomic_output, pinned
from data_pipeline.numbers.transforms import transform_values
from data_pipeline.numbers.verification import identical_parquet_files
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline_tests.comparison_tasks import (
    FIRST_CALL_SECONDS,
    transform_slowly_on_the_first_call,
    transform_wrongly_in_a_pool_worker,
)

MESSY = (
    UTF8_BOM + b"10\r\n"
    b"\n"
    b"  20  \n"
    b"1,234\n"
    b"12.0\n"
    b"12.5\n"
    b"0x1F\n"
    b"\xff\xfe\n"
    b"NaN\n"
    b"99999999999999999999\n"
    b"10\n"
    b"7"
)


def clean(tmp_path, content: bytes, workers: int, chunk_bytes: int = 8):
    source = tmp_path / "numbers.txt"
    source.write_bytes(content)
    cleaned, rejected = (
        tmp_path / f"cleaned{workers}.parquet",
        tmp_path / f"rejected{workers}.parquet",
    )
    summary = clean_to_parquet(source, cleaned, rejected, PoolSettings(workers), chunk_bytes)
    return summary, pq.read_table(cleaned), pq.read_table(rejected)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_line_is_accepted_or_rejected_with_a_reason(tmp_path, workers):
    summary, cleaned, rejected = clean(tmp_path, MESSY, workers)
    assert cleaned.to_pydict() == {
        "line_number": [1, 3, 4, 5, 11, 12],
        "value": [10, 20, 1234, 12, 10, 7],
    }
    assert rejected.to_pydict() == {
        "line_number": [2, 6, 7, 8, 9, 10],
        "raw": ["", "12.5", "0x1F", "\\xff\\xfe", "NaN", "99999999999999999999"],
        "reason": [
            "blank",
            "non_integral",
            "hexadecimal",
            "invalid_utf8",
            "not_finite",
            "out_of_range",
        ],
    }
    assert summary.lines == 12 == summary.accepted + summary.rejected
    assert summary.rejected_by_reason["blank"] == 1


def test_line_numbers_are_complete_and_increasing_across_both_outputs(tmp_path):
    source = tmp_path / "generated.txt"
    write_numbers_file(source, count=5_000, seed=3, dirty_fraction=0.3)
    summary, cleaned, rejected = clean(tmp_path, source.read_bytes(), workers=2, chunk_bytes=997)
    for table in (cleaned, rejected):
        numbers = table.column("line_number").to_pylist()
        assert numbers == sorted(set(numbers))
    all_numbers = (
        cleaned.column("line_number").to_pylist() + rejected.column("line_number").to_pylist()
    )
    assert sorted(all_numbers) == list(range(1, 5_001))
    assert summary.lines == 5_000
    assert summary.chunks > 2


def test_an_empty_file_gives_empty_outputs(tmp_path):
    summary, cleaned, rejected = clean(tmp_path, b"", workers=2)
    assert (summary.lines, cleaned.num_rows, rejected.num_rows) == (0, 0, 0)


def test_the_transform_keeps_line_numbers_and_order(tmp_path):
    clean(tmp_path, b"5\nx\n-4\n97\n\n1\n", workers=1)
    target = tmp_path / "transformed.parquet"
    summary = transform_to_parquet(tmp_path / "cleaned1.parquet", target, PoolSettings(2), 2)
    transformed = pq.read_table(target).to_pydict()
    assert transformed["line_number"] == [1, 3, 4, 6]
    assert transformed["value"] == [5, -4, 97, 1]
    expected = transform_values([5, -4, 97, 1])
    assert transformed["square"] == [25, 16, 9409, 1]
    for column, values in expected.items():
        if column != "square":
            assert transformed[column] == values
    assert summary.rows == 4


def test_a_failed_write_leaves_neither_output_nor_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_successful_write_replaces_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_output(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert list(tmp_path.iterdir()) == [target]


def kernel_with(transform) -> Kernel:
    """The python kernel with another transform worker function."""
    return dataclasses.replace(PYTHON, name="under test", transform=transform)


def test_the_comparison_times_both_sides_alternately_on_identical_chunks(tmp_path):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, count=20_000, seed=1, dirty_fraction=0.1)
    comparison = compare_serial_and_parallel(source, PoolSettings(2), 16 * 1024, 500, repeats=3)
    assert comparison.cleaning.items == 20_000
    assert comparison.workers == 2
    for stage in comparison.stages:
        assert stage.serial.repeats == stage.parallel.repeats == 3
        assert stage.chunks > 1
        assert all(stats.workers == 1 for stats in stage.serial.details)
        assert all(stats.chunks == stage.chunks for stats in stage.parallel.details)
        seconds = stage.parallel.seconds
        assert 0 < seconds.minimum <= seconds.median <= seconds.maximum
        assert stage.serial.median(lambda stats: stats.cpu_seconds) > 0
    serial_tables = comparison.transform.serial_tables
    assert serial_tables[0].num_rows == comparison.transform.items
    assert serial_tables[0].equals(comparison.transform.parallel_tables[0])
    table = markdown_table(comparison)
    assert "| cleaning |" in table and "| transform |" in table and "median" in table
    assert list(tmp_path.iterdir()) == [source], "no scratch files are left"


def test_a_pool_that_computes_a_different_value_fails_the_comparison(tmp_path):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, count=2_000, seed=1, dirty_fraction=0.0)
    with pytest.raises(
        OutputMismatchError,
        match=r"parallel \(run 1 of 3\) differs from serial: transform, transformed output: "
        r"column digit_sum differs first at row \d+",
    ):
        compare_serial_and_parallel(
            source,
            PoolSettings(2),
            4096,
            500,
            kernel=kernel_with(transform_wrongly_in_a_pool_worker),
        )


def test_a_slow_first_call_of_the_transform_is_spent_in_the_warm_up_not_in_a_timed_run(tmp_path):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, count=200, seed=1, dirty_fraction=0.0)
    comparison = compare_serial_and_parallel(
        source, PoolSettings(2), 4096, 50, kernel=kernel_with(transform_slowly_on_the_first_call)
    )
    # 200 values take milliseconds: a timed run that paid the first call would take 2 s.
    assert comparison.transform.serial.seconds.maximum < FIRST_CALL_SECONDS / 2


def test_a_pinned_input_is_read_as_it_was_even_if_replaced_meanwhile(tmp_path):
    source = tmp_path / "numbers.txt"
    source.write_bytes(b"1\n2\n3\n")
    with pinned(source) as snapshot:
        replacement = tmp_path / "other.txt"
        replacement.write_bytes(b"x\n" * 1000)
        os.replace(replacement, source)  # what a concurrent run's atomic write does
        summary = clean_to_parquet(
            snapshot, tmp_path / "c.parquet", tmp_path / "r.parquet", PoolSettings(2), 2
        )
    assert (summary.lines, summary.accepted) == (3, 3)
    assert sorted(
        path.name for path in tmp_path.iterdir() if not path.name.startswith(".cleaned")
    ) == ["c.parquet", "numbers.txt", "r.parquet"], "the pin is removed afterwards"


def test_small_chunks_still_make_few_row_groups(tmp_path):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, 100_000, seed=1, dirty_fraction=0.0)
    cleaned = tmp_path / "cleaned.parquet"
    summary = clean_to_parquet(source, cleaned, tmp_path / "r.parquet", PoolSettings(1), 1024)
    assert summary.chunks > 500
    assert pq.ParquetFile(cleaned).metadata.num_row_groups <= 2


def test_a_directory_written_as_a_set_replaces_the_old_set_whole_or_not_at_all(tmp_path):
    target = tmp_path / "outputs"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("old a")
        (staging / "b.txt").write_text("old b")
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "a.txt").write_text("new a")
        raise RuntimeError("interrupted before b was written")
    assert {path.name: path.read_text() for path in target.iterdir()} == {
        "a.txt": "old a",
        "b.txt": "old b",
    }
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("new a")
    assert [path.name for path in target.iterdir()] == ["a.txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["outputs"], "nothing left over"


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_every_kernel_writes_the_same_parquet_rows_as_the_python_kernel(tmp_path, name):
    if not installed(name):
        pytest.skip(f"{name} is not installed")
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, count=30_000, seed=5, dirty_fraction=0.3)
    with source.open("ab") as file:  # values only the reference settles exactly
        file.write(b"\n9223372036854775807\n-9223372036854775808\n3037000500\n2305843009213693951")
    outputs = {}
    for kernel in (PYTHON, kernel_named(name)):
        folder = tmp_path / kernel.name
        folder.mkdir()
        paths = [folder / f"{output}.parquet" for output in ("cleaned", "rejected", "transformed")]
        clean_to_parquet(source, paths[0], paths[1], PoolSettings(2), 16 * 1024, kernel=kernel)
        transform_to_parquet(paths[0], paths[2], PoolSettings(2), 1000, kernel=kernel)
        outputs[kernel.name] = paths
    for reference, candidate in zip(outputs["python"], outputs[name], strict=True):
        verdict = identical_parquet_files(reference, candidate)
        assert verdict.passed, verdict.explanation


def test_the_same_rows_make_the_same_file_whatever_the_chunk_sizes(tmp_path):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, 150_000, seed=11, dirty_fraction=0.05)
    digests = []
    for chunk_bytes, chunk_values in ((8 * 1024, 700), (300 * 1024, 50_000)):
        out = tmp_path / f"chunks_{chunk_bytes}"
        out.mkdir()
        settings = PoolSettings(1)
        cleaning = clean_to_parquet(
            source, out / "cleaned.parquet", out / "rejected.parquet", settings, chunk_bytes
        )
        transform = transform_to_parquet(
            out / "cleaned.parquet", out / "transformed.parquet", settings, chunk_values
        )
        digests.append({**cleaning.digests, **transform.digests})
        assert pq.ParquetFile(out / "cleaned.parquet").metadata.num_row_groups == 3
    assert digests[0] == digests[1], "byte-identical files"
