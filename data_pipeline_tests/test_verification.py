import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.stages.parquet_output import (
    REJECTED_SCHEMA,
    TRANSFORMED_SCHEMA,
    ParquetOutput,
)
from data_pipeline.numbers.stages.transform import transform_to_parquet
from data_pipeline.numbers.verification import (
    every_line_accounted_for,
    one_row_per_accepted_value,
    same_encoded_columns,
)
from data_pipeline.parallel.settings import PoolSettings

CONTENT = b"1\nx\n3\n\n5\n6.5\n7\n"


@pytest.fixture
def outputs(tmp_path):
    numbers = tmp_path / "numbers.txt"
    numbers.write_bytes(CONTENT)
    cleaned, rejected, transformed = (
        tmp_path / name for name in ("cleaned.parquet", "rejected.parquet", "transformed.parquet")
    )
    clean_to_parquet(numbers, cleaned, rejected, PoolSettings(1), 4)
    transform_to_parquet(cleaned, transformed, PoolSettings(1), 2)
    return numbers, cleaned, rejected, transformed


def rewrite(path, transform):
    pq.write_table(transform(pq.read_table(path)), path)


def rewrite_as_the_pipeline_does(path, transform):
    """The damaged table written by the pipeline's own writer, so that its untouched
    columns are encoded exactly as before."""
    table = transform(pq.read_table(path))
    with ParquetOutput(path, TRANSFORMED_SCHEMA) as writer:
        for batch in table.to_batches():
            writer.write(batch)


def test_real_outputs_pass_both_checks(outputs):
    numbers, cleaned, rejected, transformed = outputs
    lines = every_line_accounted_for(numbers, cleaned, rejected)
    assert lines.passed, lines.explanation
    assert lines.figures == {"lines": 7, "accepted": 4, "rejected": 3, "missing": 0}
    rows = one_row_per_accepted_value(cleaned, transformed)
    assert rows.passed, rows.explanation


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        (lambda table: table.slice(1), "in neither output"),
        (lambda table: table.take([1, 0, 2]), "do not strictly increase"),
        (
            lambda table: pa.Table.from_pylist(
                [*table.to_pylist(), {"line_number": 7, "raw": "7", "reason": "blank"}],
                schema=REJECTED_SCHEMA,
            ),
            "both accepted and rejected",
        ),
    ],
)
def test_a_lost_reordered_or_doubled_line_fails_the_line_check(outputs, damage, complaint):
    numbers, cleaned, rejected, _ = outputs
    rewrite(rejected, damage)
    verdict = every_line_accounted_for(numbers, cleaned, rejected)
    assert not verdict.passed
    assert complaint in verdict.explanation


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        (lambda table: table.slice(0, 3), "3 rows for 4 accepted values"),
        (lambda table: table.take([0, 2, 1, 3]), "line_number differs first at row 2"),
    ],
)
def test_a_missing_or_reordered_row_fails_the_transform_check(outputs, damage, complaint):
    _, cleaned, _, transformed = outputs
    rewrite(transformed, damage)
    verdict = one_row_per_accepted_value(cleaned, transformed)
    assert not verdict.passed
    assert complaint in verdict.explanation


def test_the_pipelines_files_are_proven_equal_from_their_encoded_columns_without_decoding(
    outputs,
):
    _, cleaned, _, transformed = outputs
    assert same_encoded_columns(cleaned, transformed, ["line_number", "value"])


def test_the_same_values_encoded_differently_still_pass_by_their_decoded_values(outputs):
    _, cleaned, _, transformed = outputs
    rewrite(transformed, lambda table: table)  # snappy instead of zstd: other bytes
    assert not same_encoded_columns(cleaned, transformed, ["line_number", "value"])
    verdict = one_row_per_accepted_value(cleaned, transformed)
    assert verdict.passed, verdict.explanation


def test_a_changed_value_written_by_the_pipelines_writer_fails_the_transform_check(outputs):
    _, cleaned, _, transformed = outputs

    def change_the_third_value(table):
        values = table.column("value").to_pylist()
        values[2] += 1
        return table.set_column(1, "value", pa.array(values, pa.int64()))

    rewrite_as_the_pipeline_does(transformed, change_the_third_value)
    assert not same_encoded_columns(cleaned, transformed, ["line_number", "value"])
    verdict = one_row_per_accepted_value(cleaned, transformed)
    assert not verdict.passed
    assert "value differs first at row 3" in verdict.explanation
