"""What the stages write: the schemas of their three Parquet files, and a writer whose bytes
do not depend on how the rows were batched."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data_pipeline.numbers.kernels.columns import ARROW_TYPES as TRANSFORMED_TYPES

CLEANED_SCHEMA = pa.schema([("line_number", pa.int64()), ("value", pa.int64())])
REJECTED_SCHEMA = pa.schema(
    [("line_number", pa.int64()), ("raw", pa.string()), ("reason", pa.string())]
)
TRANSFORMED_SCHEMA = pa.schema(
    [
        ("line_number", pa.int64()),
        ("value", pa.int64()),
        # The square of an int64 needs up to 127 bits: a 38-digit decimal holds it exactly.
        *TRANSFORMED_TYPES.items(),
    ]
)


class ParquetOutput:
    """A Parquet file written batch by batch in row groups of exactly ROW_GROUP_ROWS rows (the
    last one fewer; one per chunk would make thousands of tiny row groups on a large input),
    zstd-compressed, with increasing line numbers delta-encoded: about a quarter of pyarrow's
    default size. The same rows give the same bytes whatever batches they came in, so outputs
    of runs with other chunk sizes, or on another backend, compare by their SHA-256."""

    ROW_GROUP_ROWS = 1 << 16

    def __init__(self, path: Path, schema: pa.Schema):
        self._schema = schema
        self._writer = pq.ParquetWriter(
            path,
            schema,
            compression="zstd",
            use_dictionary=[name for name in schema.names if name != "line_number"],
            column_encoding={"line_number": "DELTA_BINARY_PACKED"},
        )
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self.ROW_GROUP_ROWS:
            pending = pa.Table.from_batches(self._pending, self._schema)
            self._write_group(pending.slice(0, self.ROW_GROUP_ROWS))
            rest = pending.slice(self.ROW_GROUP_ROWS)
            self._pending, self._pending_rows = rest.to_batches(), rest.num_rows

    def _write_group(self, rows: pa.Table) -> None:
        # One contiguous chunk per column: how the rows were batched leaves no trace.
        self._writer.write_table(rows.combine_chunks(), row_group_size=self.ROW_GROUP_ROWS)

    def _flush(self) -> None:
        if self._pending_rows:
            self._write_group(pa.Table.from_batches(self._pending, self._schema))
        self._pending, self._pending_rows = [], 0

    def __enter__(self) -> "ParquetOutput":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                self._flush()
        finally:
            self._writer.close()
