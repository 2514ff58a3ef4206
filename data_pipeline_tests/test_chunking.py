import itertools
import random

import pytest

from data_pipeline.numbers.chunking import (
    UTF8_BOM,
    byte_range_at,
    count_lines,
    plan_byte_ranges,
    read_lines,
)

FILES = {
    "plain": b"1\n22\n333\n4444\n",
    "no final newline": b"1\n22\n333",
    "crlf": b"1\r\n22\r\n\r\n333\r\n",
    "mixed endings": b"1\r\n22\n333\r\n4\n",
    "blank lines": b"\n\n1\n\n\n2\n\n",
    "bom": UTF8_BOM + b"7\n8\n9\n",
    "bom only": UTF8_BOM,
    "one line, no newline": b"12345",
    "only newlines": b"\n\n\n",
    "empty": b"",
    "one long line": b"1\n" + b"9" * 5000 + b"\n2\n",
    "invalid utf-8": b"1\n\xff\xfe\n3\n",
}


def reference_lines(content: bytes) -> list[bytes]:
    """What a careful reader sees: split on \\n, drop one \\r before it, drop a leading BOM."""
    if content.startswith(UTF8_BOM):
        content = content[len(UTF8_BOM) :]
        if not content:
            return [b""]
    lines = content.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


@pytest.mark.parametrize("name", FILES)
def test_every_line_is_read_exactly_once_in_order_whatever_the_chunk_size(tmp_path, name):
    path = tmp_path / "numbers.txt"
    path.write_bytes(FILES[name])
    expected = reference_lines(FILES[name])
    rng = random.Random(name)
    chunk_sizes = {1, 2, 3, len(FILES[name]) + 1, *(rng.randint(1, 64) for _ in range(25))}
    for chunk_bytes in sorted(chunk_sizes):
        ranges = plan_byte_ranges(path, chunk_bytes)
        lines = [line for byte_range in ranges for line in read_lines(byte_range)]
        assert lines == expected, f"chunk_bytes={chunk_bytes}"
        assert count_lines(path) == len(expected)


def test_random_files_read_every_line_once_in_order_at_random_chunk_sizes(tmp_path):
    rng = random.Random(7)
    pieces = [b"12", b"-3", b"", b" 4 ", b"\xef\xbb\xbf", b"\xff", b"x" * 300, b"1,234", b"\r"]
    path = tmp_path / "numbers.txt"
    for _ in range(200):
        content = b"".join(rng.choice(pieces) + rng.choice([b"\n", b"\r\n"]) for _ in range(30))
        if rng.random() < 0.5:
            content = content.rstrip(b"\r\n")
        path.write_bytes(content)
        ranges = plan_byte_ranges(path, rng.randint(1, 200))
        lines = [line for byte_range in ranges for line in read_lines(byte_range)]
        assert lines == reference_lines(content)
        assert count_lines(path) == len(lines)


def test_ranges_tile_the_file_and_start_at_line_starts(tmp_path):
    path = tmp_path / "numbers.txt"
    content = b"".join(b"%d\n" % n for n in range(1000))
    path.write_bytes(content)
    ranges = plan_byte_ranges(path, 100)
    assert ranges[0].start == 0
    assert ranges[-1].end == len(content)
    for previous, current in itertools.pairwise(ranges):
        assert previous.end == current.start
        assert content[current.start - 1 : current.start] == b"\n"
    assert [byte_range.index for byte_range in ranges] == list(range(len(ranges)))


def test_lines_before_an_offset_are_counted_for_error_messages(tmp_path):
    path = tmp_path / "numbers.txt"
    path.write_bytes(b"a\nb\nc\nd")
    assert count_lines(path, 0) == 0
    assert count_lines(path, 2) == 1
    assert count_lines(path, 6) == 3
    assert count_lines(path) == 4


def test_a_chunk_size_below_one_is_refused(tmp_path):
    path = tmp_path / "numbers.txt"
    path.write_bytes(b"1\n")
    with pytest.raises(ValueError, match="chunk_bytes"):
        plan_byte_ranges(path, 0)


def test_a_range_cut_on_its_own_and_a_plan_from_its_end_tile_the_file_at_line_starts(tmp_path):
    path = tmp_path / "numbers.txt"
    path.write_bytes(b"".join(b"%d\n" % number for number in range(5_000)))
    first = byte_range_at(path, 0, 0, 100)
    assert 100 <= first.end < 110, "the range ends at the first line end after 100 bytes"
    ranges = [first, *plan_byte_ranges(path, 4_096, start=first.end, first_index=1)]
    assert [r.index for r in ranges] == list(range(len(ranges)))
    assert all(4_096 <= r.end - r.start < 4_110 for r in ranges[1:-1])
    assert [r.start for r in ranges[1:]] == [r.end for r in ranges[:-1]]
    assert ranges[-1].end == path.stat().st_size
    lines = [line for r in ranges for line in read_lines(r)]
    assert lines == [b"%d" % number for number in range(5_000)]
