"""What a killed run leaves behind: its temporary files and directories are removed the next
time the data directory is used, and only those whose writer process is gone; a set of files
(the cleaned pair) changes as a whole or not at all."""

import contextlib
import os
import signal
import subprocess
import sys
import threading

from data_pipeline.defs.resources import DataDirectoryResource
from data_pipeline.numbers import storage
from data_pipeline.numbers.storage import (
    atomic_file_set,
    atomic_output,
    file_digest,
    file_set,
    remove_abandoned_temporaries,
)

WRITE_FOREVER = """
import sys, time
from pathlib import Path
from data_pipeline.numbers.storage import atomic_directory, atomic_output
with atomic_output(Path(sys.argv[1]) / "cleaned_numbers.parquet") as temporary:
    temporary.write_bytes(b"half a file")
    with atomic_directory(Path(sys.argv[1]) / "parallelism_report") as staging:
        (staging / "inside.parquet").write_bytes(b"")
        print("writing", flush=True)
        time.sleep(600)
"""


def start_writer(directory) -> subprocess.Popen:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITE_FOREVER, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline() == "writing\n"
    return writer


def hidden(directory) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir() if entry.name.startswith("."))


def test_a_killed_writers_temporaries_go_and_a_live_writers_stay(tmp_path):
    killed, alive = start_writer(tmp_path), start_writer(tmp_path)
    try:
        assert len(hidden(tmp_path)) == 4  # a file and a directory each
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        removed = remove_abandoned_temporaries(tmp_path)
        assert len(removed) == 2
        assert all(f"-{killed.pid}." in path.name for path in removed)
        assert all(f"-{alive.pid}." in name for name in hidden(tmp_path))
        assert len(hidden(tmp_path)) == 2
    finally:
        alive.kill()
        alive.wait()
    DataDirectoryResource(path=str(tmp_path)).directory()  # every step begins with this
    assert hidden(tmp_path) == []


def test_files_that_only_look_temporary_are_left_alone(tmp_path):
    for name in (".notes.txt", ".data.parquet.otherhost-1.0123456789abcdef0123456789abcdef.tmp"):
        (tmp_path / name).write_text("keep")
    with atomic_output(tmp_path / "kept.txt") as temporary:
        temporary.write_text("done")
    assert remove_abandoned_temporaries(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == sorted(
        [".notes.txt", ".data.parquet.otherhost-1.0123456789abcdef0123456789abcdef.tmp", "kept.txt"]
    )


def test_a_set_moved_aside_by_a_killed_run_is_put_back_when_nothing_replaced_it(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    )
    dead = int(finished.stdout)
    aside = tmp_path / f".parallelism_report.{storage._HOST}-{dead}.{'0' * 32}.old"
    aside.mkdir()
    (aside / "cleaned_serial.parquet").write_text("the only copy")
    remove_abandoned_temporaries(tmp_path)
    assert (tmp_path / "parallelism_report" / "cleaned_serial.parquet").read_text() == (
        "the only copy"
    )
    assert hidden(tmp_path) == []


def write_pair(directory, text: str, digests: dict | None = None) -> None:
    names = ["cleaned_numbers.parquet", "rejected_lines.parquet"]
    with atomic_file_set(directory, "cleaned", names, digests) as temporary:
        for name, path in temporary.items():
            path.write_text(f"{text} {name}")


def read_pair(directory) -> tuple[str, str]:
    current = file_set(directory, "cleaned")
    return tuple(
        (current / name).read_text().split()[0]
        for name in ("cleaned_numbers.parquet", "rejected_lines.parquet")
    )


def test_a_file_set_is_replaced_as_a_whole_and_read_under_its_plain_names(tmp_path, monkeypatch):
    digests = {}
    write_pair(tmp_path, "first", digests)
    assert (tmp_path / "cleaned_numbers.parquet").read_text() == "first cleaned_numbers.parquet"
    assert digests["rejected_lines_sha256"] == file_digest(tmp_path / "rejected_lines.parquet")
    write_pair(tmp_path, "second")
    assert read_pair(tmp_path) == ("second", "second")
    for _ in range(3):
        write_pair(tmp_path, "later")
    versions = [name for name in hidden(tmp_path) if name.startswith(".cleaned.")]
    assert len(versions) == 5, "versions a reader may still be in are kept for a minute"
    monkeypatch.setattr(storage, "VERSION_GRACE_SECONDS", 0)
    write_pair(tmp_path, "last")
    versions = [name for name in hidden(tmp_path) if name.startswith(".cleaned.")]
    assert len(versions) == 2, "then the current version and the one before it"
    assert read_pair(tmp_path) == ("last", "last")


def test_a_failed_write_leaves_the_previous_set_whole(tmp_path):
    write_pair(tmp_path, "old")
    try:
        with atomic_file_set(tmp_path, "cleaned", ["cleaned_numbers.parquet"]) as temporary:
            temporary["cleaned_numbers.parquet"].write_text("half")
            raise RuntimeError("the step failed")
    except RuntimeError:
        pass
    assert read_pair(tmp_path) == ("old", "old")
    assert all(not name.endswith(".tmp") for name in hidden(tmp_path))


KILLED_MID_WRITE = """
import sys, time
from pathlib import Path
from data_pipeline.numbers.storage import atomic_file_set
names = ["cleaned_numbers.parquet", "rejected_lines.parquet"]
with atomic_file_set(Path(sys.argv[1]), "cleaned", names) as temporary:
    temporary["cleaned_numbers.parquet"].write_text("new cleaned_numbers.parquet")
    print("writing", flush=True)
    time.sleep(600)
"""


def test_a_writer_killed_mid_set_leaves_the_old_set_and_its_staging_is_removed(tmp_path):
    write_pair(tmp_path, "old")
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert read_pair(tmp_path) == ("old", "old")
    DataDirectoryResource(path=str(tmp_path)).directory()
    assert not [name for name in hidden(tmp_path) if name.endswith(".tmp")]
    assert read_pair(tmp_path) == ("old", "old")


def test_a_reader_racing_many_writes_never_sees_one_file_of_each(tmp_path):
    write_pair(tmp_path, "0")
    stop = threading.Event()
    mixed = []

    def reader():
        while not stop.is_set():
            with contextlib.suppress(FileNotFoundError):  # a version removed two writes later
                first, second = read_pair(tmp_path)
                if first != second:
                    mixed.append((first, second))

    thread = threading.Thread(target=reader)
    thread.start()
    for number in range(1, 300):
        write_pair(tmp_path, str(number))
    stop.set()
    thread.join()
    assert mixed == []
