from data_pipeline.numbers.chunking import count_lines
from data_pipeline.numbers.generation import DIRT_KINDS, write_numbers_file


def test_the_same_seed_gives_a_byte_identical_file(tmp_path):
    first, second, other = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    write_numbers_file(first, 2_000, seed=5, dirty_fraction=0.2)
    write_numbers_file(second, 2_000, seed=5, dirty_fraction=0.2)
    write_numbers_file(other, 2_000, seed=6, dirty_fraction=0.2)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_dirt_is_counted_by_kind_and_every_kind_appears(tmp_path):
    path = tmp_path / "numbers.txt"
    dirt = write_numbers_file(path, 20_000, seed=1, dirty_fraction=0.5)
    assert set(dirt) == set(DIRT_KINDS)
    assert all(dirt[kind] > 0 for kind in DIRT_KINDS)
    assert 9_000 < sum(dirt.values()) < 11_000
    assert count_lines(path) == 20_000
    assert path.read_bytes().count(b"\r\n") == dirt["windows_line_ending"]


def test_a_dirty_fraction_of_zero_gives_only_plain_integers_and_a_count_of_zero_no_bytes(tmp_path):
    clean, empty = tmp_path / "clean.txt", tmp_path / "empty.txt"
    assert sum(write_numbers_file(clean, 1_000, seed=1, dirty_fraction=0.0).values()) == 0
    assert all(line.lstrip(b"-").isdigit() for line in clean.read_bytes().splitlines())
    write_numbers_file(empty, 0, seed=1, dirty_fraction=0.5)
    assert empty.read_bytes() == b""
