"""Split a text file into byte ranges that hold whole lines, and read lines back from them."""

import os
from dataclasses import dataclass

from data_pipeline.numbers.storage import shown_path

UTF8_BOM = b"\xef\xbb\xbf"
_SCAN_BLOCK = 64 * 1024


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end)`` of the file at ``path``: they begin at a line start and end
    after a ``\\n`` (or at the end of the file), so every line belongs to exactly one range.

    Workers receive a range (a few integers) and read the bytes themselves, so file contents
    never travel through pickling and no single process has to hold the whole file."""

    path: str
    index: int
    start: int
    end: int

    def __str__(self) -> str:
        # The file as the user named it, not the hidden snapshot a step may be reading.
        return f"chunk {self.index} (bytes {self.start}-{self.end} of {shown_path(self.path)})"


def plan_byte_ranges(
    path: str | os.PathLike, chunk_bytes: int, start: int = 0, first_index: int = 0
) -> list[ByteRange]:
    """Cut the file from ``start`` (a line start) into ranges of about ``chunk_bytes``, each
    boundary moved forward to the next line start, numbered from ``first_index``. A line
    longer than ``chunk_bytes`` makes its range longer, never split.

    Args:
        path: The text file.
        chunk_bytes: About how many bytes each range holds (at least 1).
        start: Where the first range begins: 0 or a line start.
        first_index: The first range's index.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be at least 1, got {chunk_bytes}")
    size = os.path.getsize(path)
    ranges: list[ByteRange] = []
    with open(path, "rb") as file:
        while start < size:
            end = _end_of_range(file, start, chunk_bytes, size)
            ranges.append(ByteRange(str(path), first_index + len(ranges), start, end))
            start = end
    return ranges


def byte_range_at(path: str | os.PathLike, index: int, start: int, chunk_bytes: int) -> ByteRange:
    """The one range of about ``chunk_bytes`` from ``start`` (a line start), as
    :func:`plan_byte_ranges` would cut it.

    Args:
        path: The text file.
        index: The range's index.
        start: Where the range begins: 0 or a line start.
        chunk_bytes: About how many bytes it holds.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        return ByteRange(str(path), index, start, _end_of_range(file, start, chunk_bytes, size))


def _end_of_range(file, start: int, chunk_bytes: int, size: int) -> int:
    if start + chunk_bytes >= size:
        return size
    return _line_start_at_or_after(file, start + chunk_bytes)


def _line_start_at_or_after(file, position: int) -> int:
    """The first offset >= ``position`` at which a line starts (or the file size)."""
    # Looking from position - 1 makes a boundary that already sits just after a "\n" stay put.
    file.seek(position - 1)
    offset = position - 1
    while block := file.read(_SCAN_BLOCK):
        newline = block.find(b"\n")
        if newline >= 0:
            return offset + newline + 1
        offset += len(block)
    return offset


def read_lines(byte_range: ByteRange) -> list[bytes]:
    """The lines of one range, without their ``\\n`` or ``\\r\\n`` (and without a leading BOM
    on the file's first line)."""
    with open(byte_range.path, "rb") as file:
        file.seek(byte_range.start)
        data = file.read(byte_range.end - byte_range.start)
    lines = data.split(b"\n")
    if lines[-1] == b"":
        # The range ends with "\n" (or is empty): that is a terminator, not one more line.
        lines.pop()
    if byte_range.start == 0 and lines and lines[0].startswith(UTF8_BOM):
        lines[0] = lines[0][len(UTF8_BOM) :]
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def count_lines(path: str | os.PathLike, end: int | None = None) -> int:
    """How many lines start before byte ``end`` (the whole file when ``end`` is None).

    Reads in blocks, so memory stays small whatever the file size."""
    size = os.path.getsize(path)
    end = size if end is None else min(end, size)
    newlines = 0
    last_byte = b""
    with open(path, "rb") as file:
        remaining = end
        while remaining > 0 and (block := file.read(min(_SCAN_BLOCK * 16, remaining))):
            newlines += block.count(b"\n")
            last_byte = block[-1:]
            remaining -= len(block)
    unterminated_last_line = end > 0 and last_byte != b"\n"
    return newlines + unterminated_last_line
