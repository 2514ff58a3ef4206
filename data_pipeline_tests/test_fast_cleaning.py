"""The vectorized cleaning gives exactly the reference's CleanedChunk for every byte range."""

import logging
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_pipeline.numbers import fast_cleaning
from data_pipeline.numbers.chunking import UTF8_BOM, ByteRange, plan_byte_ranges
from data_pipeline.numbers.fast_cleaning import clean_byte_range_fast
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.parsing import INT64_MAX, INT64_MIN, clean_byte_range
from data_pipeline_tests.test_bad_input import NASTY_LINES

CHUNK_SIZES = [1, 7, 4096, 1 << 20]

# The inputs of the table in test_parsing.py: every rule and every reason.
PARSING_TABLE_LINES = [
    b"42",
    b"-17",
    b"+5",
    b"007",
    b"  12\t",
    b"12\r",
    b"1,234",
    b"-1,234,567",
    b"12.0",
    b"12.",
    b"-3.000",
    b"1e3",
    b"1.5E3",
    b"1.234567e+06",
    b"0.0",
    b"0e999999999",
    str(INT64_MAX).encode(),
    str(INT64_MIN).encode(),
    b"0" * 40 + b"9",
    b"0" * 5000 + b"7",
    b"-" + b"0" * 5000 + b"7",
    b"1,234.0",
    b"0e99999999999999999999999",
    b"",
    b"   ",
    b"\t\r",
    b"12,34",
    b"1,2345",
    b"0,500",
    b"1,234.5",
    b"1e-99999999999999999999999",
    b"1e99999999999999999999999",
    b"12.5",
    b"1.5e-1",
    b"1e-3",
    b"0x1F",
    b"-0XfF",
    b"NaN",
    b"-inf",
    b"Infinity",
    str(INT64_MAX + 1).encode(),
    str(INT64_MIN - 1).encode(),
    b"9" * 400,
    b"1e19",
    b"1e999999999",
    b"9,223,372,036,854,775,808",
    b"twelve",
    b"12 34",
    b"1_000",
    b"--5",
    b"12\x0034",
    b"\x1e12",
    "12\u2028".encode(),
    "١٢٣".encode(),
    "\uff11\uff12".encode(),
    b"\xff\xfe12",
    b"12\xc3",
    b"x" * 300_000,
]

# Lines at the edge of the bulk path: those it takes and those it must leave alone.
EDGE_LINES = [
    b"-0",
    b"+0",
    b"+5",
    b"-5",
    b"000000000000000000",
    b"9" * 18,
    b"-" + b"9" * 18,
    b"+" + b"9" * 18,
    b"9" * 19,
    b"0" * 18 + b"1",
    b"-" + b"0" * 30 + b"1",
    b"1" + b"0" * 18,
    b" \t+12 \t",
    b"\v12\f",
    b"12\r\r",
    b"\r",
    b"\r\r",
    b" ",
    b"+",
    b"-",
    b"+-5",
    b"- 5",
    b"5-",
    b"5+",
    b"1 2",
    b"\x1c5",
    b"5\x1f",
    b"5\x00",
    b"\x85" + b"5",
    "\u00a05".encode(),
    UTF8_BOM + b"5",  # a BOM anywhere but the file's start is part of the line
    UTF8_BOM,
    b"\xef\xbb5",
    b"\xff",
    b"5\xff",
]


def lines_file(path, lines, endings=(b"\n", b"\r\n"), final_newline=False):
    """Write ``lines`` with endings taken in turn; the last line has none unless asked."""
    body = b"".join(line + endings[number % len(endings)] for number, line in enumerate(lines))
    if not final_newline and lines:
        body = body[: -len(endings[(len(lines) - 1) % len(endings)])]
    path.write_bytes(body)
    return path


def assert_same_chunks(path, chunk_bytes):
    for byte_range in plan_byte_ranges(path, chunk_bytes):
        assert clean_byte_range_fast(byte_range) == clean_byte_range(byte_range), byte_range


@pytest.mark.parametrize("chunk_bytes", CHUNK_SIZES)
@pytest.mark.parametrize("final_newline", [False, True])
def test_the_nasty_corpus_is_cleaned_exactly_like_the_reference(
    tmp_path, chunk_bytes, final_newline
):
    lines = [line for line, _ in NASTY_LINES]
    source = lines_file(tmp_path / "nasty.txt", lines, final_newline=final_newline)
    assert_same_chunks(source, chunk_bytes)


@pytest.mark.parametrize("chunk_bytes", CHUNK_SIZES)
def test_the_parsing_table_is_cleaned_exactly_like_the_reference(tmp_path, chunk_bytes):
    source = lines_file(tmp_path / "table.txt", PARSING_TABLE_LINES)
    assert_same_chunks(source, chunk_bytes)


@pytest.mark.parametrize("chunk_bytes", CHUNK_SIZES)
@pytest.mark.parametrize("first_line", [b"", UTF8_BOM, UTF8_BOM + b"+5\r", UTF8_BOM + b"x"])
def test_lines_at_the_edge_of_the_bulk_path_are_cleaned_exactly_like_the_reference(
    tmp_path, chunk_bytes, first_line
):
    source = lines_file(tmp_path / "edges.txt", [first_line, *EDGE_LINES])
    assert_same_chunks(source, chunk_bytes)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"42",
        b"\n",
        b"\n\n\n",
        b" \r\n\t\r\n",
        b"\r\n",
        UTF8_BOM,
        UTF8_BOM + b"\n",
        UTF8_BOM + b"\r\n5",
        UTF8_BOM + b"\n5",
        UTF8_BOM + UTF8_BOM + b"5",
        b"5\r",
        b"-0\n+5\n007",
    ],
)
def test_tiny_files_are_cleaned_exactly_like_the_reference(tmp_path, content):
    source = tmp_path / "tiny.txt"
    source.write_bytes(content)
    for chunk_bytes in CHUNK_SIZES:
        assert_same_chunks(source, chunk_bytes)


def test_an_empty_range_gives_an_empty_chunk(tmp_path):
    source = tmp_path / "numbers.txt"
    source.write_bytes(b"1\n2\n")
    for start in (0, 2, 4):
        empty = ByteRange(str(source), 0, start, start)
        assert clean_byte_range_fast(empty) == clean_byte_range(empty)
        assert clean_byte_range_fast(empty).line_count == 0


@pytest.mark.parametrize("seed", [1, 7])
@pytest.mark.parametrize("chunk_bytes", [4096, 1 << 20])
def test_a_generated_file_with_every_kind_of_dirt_is_cleaned_exactly_like_the_reference(
    tmp_path, seed, chunk_bytes
):
    source = tmp_path / "numbers.txt"
    dirt = write_numbers_file(source, 20_000, seed, 0.05)
    assert all(dirt.values()), "every kind of dirt is in the file"
    assert_same_chunks(source, chunk_bytes)


def test_plain_integers_skip_the_line_by_line_parser(tmp_path, monkeypatch):
    lines = [UTF8_BOM + b"1", b" -22\r", b"+333", b"-0", b"4.0", b"x", b"9" * 19]
    source = lines_file(tmp_path / "numbers.txt", lines)
    parsed = []
    reference_parse_line = fast_cleaning.parse_line

    def recording_parse_line(raw):
        parsed.append(raw)
        return reference_parse_line(raw)

    monkeypatch.setattr(fast_cleaning, "parse_line", recording_parse_line)
    (byte_range,) = plan_byte_ranges(source, 1 << 20)
    chunk = clean_byte_range_fast(byte_range)
    assert parsed == [b"4.0", b"x", b"9" * 19]
    assert list(chunk.accepted_values) == [1, -22, 333, 0, 4]


def test_each_range_is_logged_like_the_reference_does(tmp_path, caplog):
    source = lines_file(tmp_path / "numbers.txt", [b"1", b"x", b"3"])
    (byte_range,) = plan_byte_ranges(source, 1 << 20)
    with caplog.at_level(logging.DEBUG, logger=fast_cleaning.__name__):
        clean_byte_range_fast(byte_range)
    assert [(record.name, record.getMessage()) for record in caplog.records] == [
        (fast_cleaning.__name__, f"{byte_range}: 3 lines, 1 rejected")
    ]


_WHITESPACE = st.text(" \t\r\v\f", max_size=3)
_PLAIN_INTEGERS = st.builds(
    lambda before, sign, digits, after: f"{before}{sign}{digits}{after}".encode(),
    _WHITESPACE,
    st.sampled_from(["", "+", "-"]),
    st.text("0123456789", min_size=1, max_size=25),
    _WHITESPACE,
)
_NUMBER_LIKE = st.text("0123456789,.eE+-xX \t\r\x00", max_size=20).map(str.encode)
_MESSY_LINES = st.one_of(
    _PLAIN_INTEGERS,
    _PLAIN_INTEGERS.map(lambda line: UTF8_BOM + line),
    _NUMBER_LIKE,
    st.binary(max_size=12),
    st.sampled_from([b"", b" ", b"\r", UTF8_BOM, b"NaN", "١٢".encode(), b"\xc3\x28"]),
)


@settings(
    max_examples=300,
    deadline=None,
    # The file is rewritten on every example; the per-test directories need no reset.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(_MESSY_LINES, max_size=30),
    endings=st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=1, max_size=3),
    final_newline=st.booleans(),
    chunk_bytes=st.integers(1, 120),
)
def test_random_messy_files_are_cleaned_exactly_like_the_reference(
    tmp_path, lines, endings, final_newline, chunk_bytes
):
    source = lines_file(tmp_path / "random.txt", lines, endings, final_newline)
    assert_same_chunks(source, chunk_bytes)


def test_a_fresh_worker_cleans_without_importing_pandas(tmp_path):
    # pyarrow imports pandas lazily for some conversions: a quarter of a second per worker.
    source = lines_file(tmp_path / "numbers.txt", [b"1", b"x", b"+3"])
    script = (
        "import sys\n"
        "from data_pipeline.numbers.chunking import plan_byte_ranges\n"
        "from data_pipeline.numbers.fast_cleaning import clean_byte_range_fast\n"
        f"for byte_range in plan_byte_ranges({str(source)!r}, 1 << 20):\n"
        "    clean_byte_range_fast(byte_range)\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
