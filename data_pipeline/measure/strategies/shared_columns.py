"""Results that never travel through a pipe: the numba kernel's columns written by the workers
into one shared memory block in Arrow's layout, used where written (preloaded, no Dagster)."""

import contextlib
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import pyarrow as pa

from data_pipeline.numbers.kernels.columns import (
    ARROW_TYPES,
    NO_COLLATZ_STEPS,
    NO_PRIME_FACTOR,
    primes_up_to,
    squares_beyond_int64,
)
from data_pipeline.numbers.kernels.numba_kernel import fill_transform
from data_pipeline.numbers.transforms import (
    TRANSFORM_COLUMNS,
    TRIAL_DIVISION_LIMIT,
    transform_values,
)
from data_pipeline.parallel.local.process_pool import ProcessPool


def transform_in_shared_memory(
    values: np.ndarray, pool: ProcessPool, chunk_values: int
) -> dict[str, pa.Array]:
    """The transform of int64 ``values`` on ``pool``, in tasks of about ``chunk_values``
    values (rounded up to whole bitmap bytes): input and output in shared memory."""
    total, layout = len(values), ArrowLayout(len(values))
    source = SharedMemory(create=True, size=max(1, 8 * total))
    target = SharedMemory(create=True, size=layout.size)
    try:
        np.ndarray((total,), np.int64, buffer=source.buf)[:] = values
        size = -(-chunk_values // 8) * 8
        tasks = [
            SharedMemoryTask(source.name, target.name, total, start, min(start + size, total))
            for start in range(0, total, size)
        ]
        for _ in pool.map(transform_into_shared_memory, tasks):
            pass
        return layout.columns(_MappedBlock.buffer_over(target))
    except BaseException:
        target.close()
        raise
    finally:
        source.close()
        for block in (source, target):
            block.unlink()  # the name goes; a mapping lives on until closed


@dataclass(frozen=True)
class SharedMemoryTask:
    """Values ``[start, stop)`` of the input block to transform into the output block;
    ``start`` is a multiple of 8, so each task owns whole bytes of the validity bitmaps."""

    input_name: str
    output_name: str
    total: int
    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.start % 8:
            raise ValueError(f"a slice must start at a multiple of 8 values, not {self.start:,}")


@dataclass(frozen=True)
class ArrowLayout:
    """The transform's columns for ``total`` values as Arrow lays them out, in one block: the
    squares as decimal128, the other numbers as int64, then four bitmaps (the validity of the
    three nullable columns, the is_prime bits). Workers fill their slices in place; the owner
    of the pool wraps the finished block as Arrow arrays, with nothing left to convert."""

    total: int

    @property
    def bitmap_bytes(self) -> int:
        return -(-self.total // 8)

    @property
    def size(self) -> int:
        return max(1, (16 + 8 * len(_INT64_COLUMNS)) * self.total + 4 * self.bitmap_bytes)

    def views(self, block: Any) -> dict[str, np.ndarray]:
        """NumPy views of the block: ``square`` as (low, high) int64 pairs, the int64
        columns, and each bitmap as bytes (named ``<column>_valid`` and ``is_prime``)."""
        views = {"square": np.ndarray((self.total, 2), np.int64, buffer=block)}
        offset = 16 * self.total
        for name in _INT64_COLUMNS:
            views[name] = np.ndarray((self.total,), np.int64, buffer=block, offset=offset)
            offset += 8 * self.total
        for name in _BITMAPS:
            views[name] = np.ndarray((self.bitmap_bytes,), np.uint8, buffer=block, offset=offset)
            offset += self.bitmap_bytes
        return views

    def columns(self, block: pa.Buffer) -> dict[str, pa.Array]:
        """The finished block's columns, as Arrow arrays over ``block`` (nothing copied)."""
        offsets, offset = {"square": 0}, 16 * self.total
        for name in _INT64_COLUMNS:
            offsets[name], offset = offset, offset + 8 * self.total
        for name in _BITMAPS:
            offsets[name], offset = offset, offset + self.bitmap_bytes

        def part(name: str, size: int) -> pa.Buffer:
            return block.slice(offsets[name], size)

        arrays = {
            "square": pa.Array.from_buffers(
                ARROW_TYPES["square"], self.total, [None, part("square", 16 * self.total)], 0
            )
        }
        for name in _INT64_COLUMNS:
            validity = part(f"{name}_valid", self.bitmap_bytes) if name in _NULLABLE else None
            buffers = [validity, part(name, 8 * self.total)]
            # A null count of -1 lets Arrow count the nulls when someone asks.
            arrays[name] = pa.Array.from_buffers(pa.int64(), self.total, buffers, -1)
        arrays["is_prime"] = pa.Array.from_buffers(
            pa.bool_(), self.total, [None, part("is_prime", self.bitmap_bytes)], 0
        )
        return {name: arrays[name] for name in TRANSFORM_COLUMNS}


_INT64_COLUMNS = ("digit_sum", "collatz_steps", "smallest_prime_factor", "largest_prime_factor")
# The reference's None, as the numba kernel marks it in each nullable column.
_NULLABLE = {
    "collatz_steps": NO_COLLATZ_STEPS,
    "smallest_prime_factor": NO_PRIME_FACTOR,
    "largest_prime_factor": NO_PRIME_FACTOR,
}
_BITMAPS = (*(f"{name}_valid" for name in _NULLABLE), "is_prime")


def transform_into_shared_memory(task: SharedMemoryTask) -> int:
    """Run the numba kernel on one slice of the shared input and write its columns, laid out
    as Arrow's, into the shared output: nothing but the task's few numbers crosses a pipe."""
    source, target = SharedMemory(name=task.input_name), SharedMemory(name=task.output_name)
    try:
        _transform_slice(source.buf, target.buf, task)
    finally:
        for block in (source, target):
            with contextlib.suppress(BufferError):  # a view held by a traceback
                block.close()
    return task.stop - task.start


def _transform_slice(source: memoryview, target: memoryview, task: SharedMemoryTask) -> None:
    # The arrays over the blocks live in this frame only, so the blocks can close after it.
    start, stop = task.start, task.stop
    values = np.ndarray((task.total,), np.int64, buffer=source)[start:stop]
    views = ArrowLayout(task.total).views(target)
    squares = views["square"][start:stop]
    columns = {name: views[name][start:stop] for name in _INT64_COLUMNS}
    needs_reference = np.empty(len(values), np.bool_)
    primes = primes_up_to(TRIAL_DIVISION_LIMIT)
    # The kernel writes straight into the block: the squares' low words, the int64 columns.
    fill_transform(values, primes, squares[:, 0], *columns.values(), needs_reference)
    squares[:, 1] = 0  # a square that fits int64 is not negative
    is_prime = (values >= 2) & (columns["smallest_prime_factor"] == values)
    # Values the kernel cannot settle in int64 take the reference's result, one by one.
    wide = squares_beyond_int64(values)
    for position in np.flatnonzero(needs_reference | wide).tolist():
        row = {
            name: column[0] for name, column in transform_values([int(values[position])]).items()
        }
        square = row["square"].to_bytes(16, "little", signed=True)
        squares[position] = np.frombuffer(square, np.int64)
        for name, column in columns.items():
            column[position] = _NULLABLE[name] if row[name] is None else row[name]
        is_prime[position] = row["is_prime"]
    bitmaps = {f"{name}_valid": columns[name] != marker for name, marker in _NULLABLE.items()}
    for name, flags in {**bitmaps, "is_prime": is_prime}.items():
        bits = np.packbits(flags, bitorder="little")
        views[name][start // 8 : start // 8 + len(bits)] = bits


class _MappedBlock:
    """Keeps a shared memory block mapped while an Arrow buffer over it lives, and closes
    it when the last Arrow array over it is gone: results used where the workers wrote them."""

    def __init__(self, block: SharedMemory):
        self.block, self.bytes = block, np.frombuffer(block.buf, np.uint8)

    @classmethod
    def buffer_over(cls, block: SharedMemory) -> pa.Buffer:
        owner = cls(block)
        return pa.foreign_buffer(owner.bytes.ctypes.data, owner.bytes.size, base=owner)

    def __del__(self) -> None:
        del self.bytes
        self.block.close()
