"""What the stages write: the schemas of their three Parquet files, and a writer whose bytes
do not depend on how the rows were batched."""

import queue
import threading
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
    of runs with other chunk sizes, or on another backend, compare by their SHA-256.

    Row groups are encoded and written by a thread of their own (Arrow's encoding and zstd
    release the GIL), so the caller goes on with the next batches meanwhile; an error of that
    thread (a full disk) is raised by the next ``write`` or on leaving the block."""

    ROW_GROUP_ROWS = 1 << 16
    # Row groups waiting for the writing thread: enough to overlap, few enough to bound memory.
    QUEUED_GROUPS = 2

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
        self._groups: queue.Queue[pa.Table | None] = queue.Queue(self.QUEUED_GROUPS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_groups, name="parquet-writer")
        self._thread.start()

    def write(self, batch: pa.RecordBatch) -> None:
        self._raise_error()
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self.ROW_GROUP_ROWS:
            pending = pa.Table.from_batches(self._pending, self._schema)
            self._groups.put(pending.slice(0, self.ROW_GROUP_ROWS))
            rest = pending.slice(self.ROW_GROUP_ROWS)
            self._pending, self._pending_rows = rest.to_batches(), rest.num_rows

    def _write_groups(self) -> None:
        while (rows := self._groups.get()) is not None:
            if self._error is None:
                try:
                    # One contiguous chunk per column: how the rows were batched leaves no trace.
                    self._writer.write_table(rows.combine_chunks(), row_group_size=len(rows))
                except BaseException as error:  # raised in the caller's thread
                    self._error = error

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> "ParquetOutput":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None and self._pending_rows:
                self._groups.put(pa.Table.from_batches(self._pending, self._schema))
            self._pending, self._pending_rows = [], 0
        finally:
            self._groups.put(None)
            self._thread.join()
            self._writer.close()
        if exc_type is None:
            self._raise_error()
