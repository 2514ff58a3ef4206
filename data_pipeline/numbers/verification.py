"""Independent checks of the outputs, read back from disk (no Dagster): the asset checks call
them. Each streams its files, so memory grows with one byte per line at most."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_pipeline.numbers.chunking import count_lines

_BATCH_ROWS = 1 << 16
_ROW_COLUMNS = ["line_number", "value"]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    explanation: str
    figures: dict[str, int]


def every_line_accounted_for(numbers: Path, cleaned: Path, rejected: Path) -> Verdict:
    """Accepted + rejected == lines in the file; each output's line numbers strictly increase;
    together they cover 1..lines with none missing and none twice."""
    lines = count_lines(numbers)
    seen = np.zeros(lines + 1, dtype=bool)
    problems: list[str] = []
    counts = {}
    for name, path in (("accepted", cleaned), ("rejected", rejected)):
        previous = 0
        counts[name] = 0
        for line_numbers in _column_blocks(path, "line_number"):
            counts[name] += len(line_numbers)
            if len(line_numbers) == 0:
                continue
            if line_numbers[0] <= previous or np.any(np.diff(line_numbers) <= 0):
                problems.append(f"{name} line numbers do not strictly increase")
                break
            previous = line_numbers[-1]
            if line_numbers[0] < 1 or line_numbers[-1] > lines:
                problems.append(f"{name} has line numbers outside 1..{lines}")
                break
            if seen[line_numbers].any():
                problems.append(f"a line is both accepted and rejected ({name})")
                break
            seen[line_numbers] = True
    missing = int(lines - seen[1:].sum())
    if missing:
        problems.append(f"{missing} line(s) of the file are in neither output")
    figures = {"lines": lines, **counts, "missing": missing}
    if counts["accepted"] + counts["rejected"] != lines:
        problems.append(
            f"accepted {counts['accepted']} + rejected {counts['rejected']} != {lines} lines"
        )
    return _verdict(problems, figures, f"all {lines} lines accounted for, in order")


def one_row_per_accepted_value(cleaned: Path, transformed: Path) -> Verdict:
    """The transform has exactly the cleaned (line_number, value) rows, in the same order."""
    metadata = pq.read_metadata(cleaned), pq.read_metadata(transformed)
    expected_rows, rows = (data.num_rows for data in metadata)
    figures = {"accepted": expected_rows, "rows": rows}
    if rows != expected_rows:
        return _verdict([f"{rows} rows for {expected_rows} accepted values"], figures, "")
    if _same_encoded((cleaned, transformed), metadata, _ROW_COLUMNS):
        return _verdict([], figures, f"{rows} rows, same values in the same order")
    problems: list[str] = []  # encoded otherwise, or different: compare the decoded values
    for column in _ROW_COLUMNS:
        blocks = zip(
            _fixed_blocks(_column_blocks(cleaned, column)),
            _fixed_blocks(_column_blocks(transformed, column)),
            strict=True,
        )
        for block, (expected, actual) in enumerate(blocks):
            mismatch = np.flatnonzero(expected != actual)
            if len(mismatch):
                row = block * _BATCH_ROWS + int(mismatch[0]) + 1
                problems.append(f"{column} differs first at row {row}")
                break
    return _verdict(problems, figures, f"{rows} rows, same values in the same order")


def identical_parquet_files(expected: Path, actual: Path) -> Verdict:
    """The two files hold the same columns and the same values in the same rows (nulls
    included), whatever their row groups; read block by block."""
    expected_rows = pq.read_metadata(expected).num_rows
    rows = pq.read_metadata(actual).num_rows
    figures = {"expected_rows": expected_rows, "rows": rows}
    if rows != expected_rows:
        return _verdict(
            [f"{actual.name}: {rows} rows, {expected.name}: {expected_rows}"], figures, ""
        )
    blocks = zip(_table_blocks(expected), _table_blocks(actual), strict=True)
    for number, (expected_block, actual_block) in enumerate(blocks):
        difference = table_differences(expected_block, actual_block, first_row=number * _BATCH_ROWS)
        if difference is not None:
            return _verdict(
                [f"{actual.name} differs from {expected.name}: {difference}"], figures, ""
            )
    return _verdict([], figures, f"{rows} rows identical in {expected.name} and {actual.name}")


def table_differences(expected: pa.Table, actual: pa.Table, first_row: int = 0) -> str | None:
    """Where ``actual`` first differs from ``expected`` (row numbers from 1), or None."""
    if expected.column_names != actual.column_names:
        return f"columns {actual.column_names} instead of {expected.column_names}"
    if expected.num_rows != actual.num_rows:
        return f"{actual.num_rows} rows instead of {expected.num_rows}"
    for name in expected.column_names:
        left, right = expected[name], actual[name]
        if left.type != right.type:
            return f"column {name} is {right.type} instead of {left.type}"
        if left.equals(right):
            continue
        same_value = pc.fill_null(pc.equal(left, right), False)
        both_null = pc.and_(pc.is_null(left), pc.is_null(right))
        row = pc.index(pc.or_(same_value, both_null), False).as_py()
        return (
            f"column {name} differs first at row {first_row + row + 1} "
            f"({left[row].as_py()!r} expected, {right[row].as_py()!r} found)"
        )
    return None


def _verdict(problems: list[str], figures: dict[str, int], success: str) -> Verdict:
    return Verdict(not problems, "; ".join(problems) or success, figures)


def same_encoded_columns(first: Path, second: Path, columns: list[str]) -> bool:
    """Whether both files store ``columns`` in byte-identical column chunks: the same type,
    encodings and compression, row group by row group of the same rows. Identical encoded
    bytes decode to identical values, so they hold the same values in the same order, proven
    without decoding anything (the pipeline's writer encodes the columns it copies the same
    way in both files). False proves nothing: compare the decoded values then."""
    paths = (first, second)
    return _same_encoded(paths, tuple(pq.read_metadata(path) for path in paths), columns)


def _same_encoded(
    paths: tuple[Path, Path], metadata: tuple[pq.FileMetaData, pq.FileMetaData], columns: list
) -> bool:
    if metadata[0].num_row_groups != metadata[1].num_row_groups:
        return False
    schemas = [data.schema.to_arrow_schema() for data in metadata]
    if any(schemas[0].field(name).type != schemas[1].field(name).type for name in columns):
        return False
    with open(paths[0], "rb") as first_file, open(paths[1], "rb") as second_file:
        for group in range(metadata[0].num_row_groups):
            groups = [data.row_group(group) for data in metadata]
            if groups[0].num_rows != groups[1].num_rows:
                return False
            for name in columns:
                # (``is None``: pyarrow's == on its metadata objects does not take None)
                chunks = [_column_chunk(row_group, name) for row_group in groups]
                if any(chunk is None for chunk in chunks):
                    return False
                if _chunk_shape(chunks[0]) != _chunk_shape(chunks[1]):
                    return False
                if _chunk_bytes(first_file, chunks[0]) != _chunk_bytes(second_file, chunks[1]):
                    return False
    return True


def _column_chunk(row_group: pq.RowGroupMetaData, name: str) -> pq.ColumnChunkMetaData | None:
    for index in range(row_group.num_columns):
        if row_group.column(index).path_in_schema == name:
            return row_group.column(index)
    return None


def _chunk_shape(chunk: pq.ColumnChunkMetaData) -> tuple:
    return (
        chunk.physical_type,
        chunk.encodings,
        chunk.compression,
        chunk.num_values,
        chunk.total_compressed_size,
    )


def _chunk_bytes(file, chunk: pq.ColumnChunkMetaData) -> bytes:
    """The column chunk's pages as stored: its dictionary page (if any) and data pages."""
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and chunk.dictionary_page_offset:
        start = min(start, chunk.dictionary_page_offset)
    file.seek(start)
    return file.read(chunk.total_compressed_size)


def _column_blocks(path: Path, column: str) -> Iterator[np.ndarray]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH_ROWS, columns=[column]):
        yield batch.column(0).to_numpy(zero_copy_only=False)


def _table_blocks(path: Path) -> Iterator[pa.Table]:
    """The file's rows re-cut into tables of exactly _BATCH_ROWS (the last may be shorter)."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= _BATCH_ROWS:
            table = pa.Table.from_batches(pending, parquet.schema_arrow)
            yield table.slice(0, _BATCH_ROWS)
            pending = table.slice(_BATCH_ROWS).to_batches()
            pending_rows -= _BATCH_ROWS
    if pending_rows:
        yield pa.Table.from_batches(pending, parquet.schema_arrow)


def _fixed_blocks(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """The same values re-cut into blocks of exactly _BATCH_ROWS (the last may be shorter),
    so two files with different row groups can be compared block by block."""
    pending = np.empty(0, dtype=np.int64)
    for block in blocks:
        pending = np.concatenate([pending, block])
        while len(pending) >= _BATCH_ROWS:
            yield pending[:_BATCH_ROWS]
            pending = pending[_BATCH_ROWS:]
    if len(pending):
        yield pending
