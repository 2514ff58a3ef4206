"""What a killed run leaves behind: its temporary files and directories are removed the next
time the data directory is used, and only those whose writer process is gone (how a run's
files change together: test_output_set.py)."""

import os
import signal
import subprocess
import sys

from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.numbers import storage
from data_pipeline.numbers.storage import (
    atomic_output,
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
