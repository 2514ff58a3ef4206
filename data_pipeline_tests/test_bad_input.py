"""Nasty input goes through without a crash, and every line is accounted for."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pyarrow.parquet as pq
import pytest

from data_pipeline.numbers.chunking import UTF8_BOM, count_lines
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline_tests.pool_tasks import clean_into

NASTY_LINES = [
    (UTF8_BOM + b"17", 17),
    (b"\xff\xfe\xfd", "invalid_utf8"),
    (b"\xc3\x28", "invalid_utf8"),
    (b"12\x0034", "not_a_number"),
    (b"\x00", "not_a_number"),
    (b"7" * 300_000, "out_of_range"),
    (b"x" * 300_000, "not_a_number"),
    (b"9" * 500, "out_of_range"),
    (b"1" + b"0" * 18, 10**18),
    ("١٢٣".encode(), "non_ascii_digits"),
    ("\u22125".encode(), "not_a_number"),  # U+2212 MINUS SIGN, not the ASCII hyphen
    (b"  -0  ", 0),
    (b"", "blank"),
    (b"\t", "blank"),
    (b"4\r", 4),
    (b"1e400", "out_of_range"),
    (b"0x", "not_a_number"),
]


@pytest.mark.parametrize("chunk_bytes", [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_corpus_of_nasty_lines_is_cleaned_line_by_line(tmp_path, workers, chunk_bytes):
    source = tmp_path / "nasty.txt"
    # Mixed endings: LF and CRLF alternate; the last line has no newline at all.
    endings = [b"\n", b"\r\n"]
    source.write_bytes(
        b"".join(line + endings[number % 2] for number, (line, _) in enumerate(NASTY_LINES[:-1]))
        + NASTY_LINES[-1][0]
    )
    cleaned, rejected = tmp_path / "cleaned.parquet", tmp_path / "rejected.parquet"
    summary = clean_to_parquet(source, cleaned, rejected, PoolSettings(workers), chunk_bytes)
    outcome = {row["line_number"]: row["value"] for row in pq.read_table(cleaned).to_pylist()} | {
        row["line_number"]: row["reason"] for row in pq.read_table(rejected).to_pylist()
    }
    assert [outcome[number] for number in range(1, len(NASTY_LINES) + 1)] == [
        expected for _, expected in NASTY_LINES
    ]
    assert summary.lines == count_lines(source) == len(NASTY_LINES)


@pytest.mark.parametrize(
    ("content", "lines", "accepted"),
    [
        (b"", 0, 0),
        (b"42", 1, 1),
        (b"\n\n\n", 3, 0),
        (b" \r\n\t\r\n", 2, 0),
        (UTF8_BOM, 1, 0),
        (UTF8_BOM + b"\n5", 2, 1),
    ],
)
def test_empty_blank_and_bom_only_files_count_every_line_as_accepted_or_rejected(
    tmp_path, content, lines, accepted
):
    source = tmp_path / "numbers.txt"
    source.write_bytes(content)
    summary = clean_to_parquet(
        source, tmp_path / "c.parquet", tmp_path / "r.parquet", PoolSettings(2), 2
    )
    assert (summary.lines, summary.accepted) == (lines, accepted)
    assert summary.accepted + summary.rejected == lines == count_lines(source)


def test_two_runs_writing_the_same_outputs_never_leave_a_mixed_or_partial_file(tmp_path):
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    write_numbers_file(small, 20_000, seed=1, dirty_fraction=0.1)
    write_numbers_file(large, 60_000, seed=2, dirty_fraction=0.1)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    runs = [(str(small), str(outputs)), (str(large), str(outputs))] * 4
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=context) as executor:
        accepted_counts = set(executor.map(clean_into, runs))
    assert len(accepted_counts) == 2
    cleaned = pq.read_table(outputs / "cleaned.parquet")
    assert cleaned.num_rows in accepted_counts, "a complete output of one of the runs"
    assert cleaned.column("line_number").to_pylist() == sorted(
        cleaned.column("line_number").to_pylist()
    )
    assert sorted(path.name for path in outputs.iterdir()) == [
        "cleaned.parquet",
        "rejected.parquet",
    ]
