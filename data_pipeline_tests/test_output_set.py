"""A day's outputs change as one set: a run's files are unseen until its commit, one
os.replace of current.json; the manifest always names a complete set whose every file has
the digest it records; files carried over from an earlier set are kept only while they
belong; old sets go, never the current one; one writer at a time, by a kernel lock."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from data_pipeline.numbers import output_set
from data_pipeline.numbers.output_set import (
    MANIFEST,
    ManifestError,
    commit,
    current_set,
    record_file,
    remove_old_sets,
    resolve,
    run_directory,
)
from data_pipeline.numbers.storage import file_digest
from data_pipeline.numbers.writer_lock import DirectoryBusyError, exclusive_writer

NUMBERS, CLEANED, REJECTED, TRANSFORMED = (
    "numbers.txt",
    "cleaned_numbers.parquet",
    "rejected_lines.parquet",
    "transformed_numbers.parquet",
)


def write(directory, run_id, name, text, upstream=None):
    """A run writes one file into its own directory and records it."""
    path = run_directory(directory, run_id) / name
    path.write_text(text)
    record_file(directory, run_id, name, file_digest(path), len(text.split()), upstream or {})
    return file_digest(path)


def whole_run(directory, run_id, text):
    """numbers -> cleaned + rejected -> transformed, as numbers_job writes them, committed."""
    numbers = write(directory, run_id, NUMBERS, f"{text} numbers")
    cleaned = write(directory, run_id, CLEANED, f"{text} cleaned", {NUMBERS: numbers})
    write(directory, run_id, REJECTED, f"{text} rejected", {NUMBERS: numbers})
    write(directory, run_id, TRANSFORMED, f"{text} transformed", {CLEANED: cleaned})
    return commit(directory, run_id)


def contents(directory) -> dict[str, str]:
    """Every file of the current set, read through the manifest, checked against its digest."""
    current = current_set(directory)
    found = {}
    for name, entry in current.files.items():
        path = directory / entry.path
        assert file_digest(path) == entry.sha256, f"{name} does not match its manifest entry"
        found[name] = path.read_text().split()[0]
    return found


def test_a_runs_files_are_unseen_until_it_commits_then_current_together(tmp_path):
    whole_run(tmp_path, "run-a", "a")
    write(tmp_path, "run-b", NUMBERS, "b numbers")
    assert contents(tmp_path) == dict.fromkeys([NUMBERS, CLEANED, REJECTED, TRANSFORMED], "a")
    assert resolve(tmp_path, NUMBERS, ["run-b"]).run_id == "run-b", "a run reads its own first"
    assert resolve(tmp_path, CLEANED, ["run-b"]).run_id == "run-a", "else the current set's"

    whole_run(tmp_path, "run-b", "b")
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["run_id"] == "run-b"
    assert manifest["files"][CLEANED]["path"] == f"sets/run-b/{CLEANED}"
    assert manifest["files"][CLEANED]["rows"] == 2
    assert contents(tmp_path) == dict.fromkeys([NUMBERS, CLEANED, REJECTED, TRANSFORMED], "b")


def test_a_run_that_fails_before_its_commit_leaves_the_previous_set_current(tmp_path):
    whole_run(tmp_path, "run-a", "a")
    numbers = write(tmp_path, "run-b", NUMBERS, "b numbers")
    write(tmp_path, "run-b", CLEANED, "b cleaned", {NUMBERS: numbers})
    # run-b's transform fails (or is interrupted, or the disk fills): no commit.
    assert contents(tmp_path) == dict.fromkeys([NUMBERS, CLEANED, REJECTED, TRANSFORMED], "a")


def test_files_not_rewritten_are_carried_over_only_while_they_belong(tmp_path):
    whole_run(tmp_path, "run-a", "a")
    # A run of the transform alone keeps the input and the cleaned pair it was computed from.
    cleaned = current_set(tmp_path).files[CLEANED].sha256
    write(tmp_path, "run-b", TRANSFORMED, "b transformed", {CLEANED: cleaned})
    done = commit(tmp_path, "run-b")
    assert contents(tmp_path) == {NUMBERS: "a", CLEANED: "a", REJECTED: "a", TRANSFORMED: "b"}
    assert done.left_out == {}
    assert all(entry.path.startswith("sets/run-b/") for entry in done.current.files.values())
    assert os.path.samefile(tmp_path / "sets/run-a" / NUMBERS, tmp_path / "sets/run-b" / NUMBERS)

    # A new input alone: what was computed from the old one no longer belongs.
    write(tmp_path, "run-c", NUMBERS, "c numbers")
    done = commit(tmp_path, "run-c")
    assert contents(tmp_path) == {NUMBERS: "c"}
    assert set(done.left_out) == {CLEANED, REJECTED, TRANSFORMED}
    assert "computed from another numbers.txt" in done.left_out[CLEANED]


def test_the_same_input_again_keeps_everything_computed_from_it(tmp_path):
    whole_run(tmp_path, "run-a", "a")
    write(tmp_path, "run-b", NUMBERS, "a numbers")  # byte for byte the same
    done = commit(tmp_path, "run-b")
    assert done.left_out == {}
    assert set(contents(tmp_path)) == {NUMBERS, CLEANED, REJECTED, TRANSFORMED}


def test_old_sets_go_after_a_grace_period_and_the_current_one_never(tmp_path, monkeypatch):
    for number in range(5):
        whole_run(tmp_path, f"run-{number}", str(number))
    sets = sorted(path.name for path in (tmp_path / "sets").iterdir())
    assert len(sets) == 5, "sets superseded less than a minute ago stay for their readers"
    monkeypatch.setattr(output_set, "SUPERSEDED_GRACE_SECONDS", -1)
    removed = remove_old_sets(tmp_path, keep_sets=2)
    assert sorted(path.name for path in removed) == ["run-0", "run-1", "run-2"]
    assert sorted(path.name for path in (tmp_path / "sets").iterdir()) == ["run-3", "run-4"]
    remove_old_sets(tmp_path, keep_sets=1)
    assert [path.name for path in (tmp_path / "sets").iterdir()] == ["run-4"]
    assert contents(tmp_path) == dict.fromkeys([NUMBERS, CLEANED, REJECTED, TRANSFORMED], "4")


def test_a_failed_runs_directory_goes_once_it_has_been_left_for_an_hour(tmp_path):
    whole_run(tmp_path, "run-a", "a")
    write(tmp_path, "run-failed", NUMBERS, "half")
    assert remove_old_sets(tmp_path, keep_sets=1) == [], "it may still be re-executed"
    later = (tmp_path / "sets" / "run-failed").stat().st_mtime + 3601
    assert remove_old_sets(tmp_path, keep_sets=1, now=later) == [tmp_path / "sets/run-failed"]


def test_a_reader_racing_many_commits_always_sees_one_whole_set(tmp_path):
    whole_run(tmp_path, "run-0", "0")
    stop, mixed, errors = threading.Event(), [], []

    def reader():
        while not stop.is_set():
            try:
                seen = set(contents(tmp_path).values())
            except FileNotFoundError:  # a set removed under a slow reader: never here
                errors.append("missing")
                continue
            if len(seen) != 1:
                mixed.append(seen)

    thread = threading.Thread(target=reader)
    thread.start()
    for number in range(1, 150):
        whole_run(tmp_path, f"run-{number}", str(number))
    stop.set()
    thread.join()
    assert mixed == [] and errors == []


KILLED_WHILE_WRITING = """
import sys, time
from pathlib import Path
from data_pipeline.numbers.output_set import record_file, run_directory
directory = Path(sys.argv[1])
(run_directory(directory, "run-b") / "numbers.txt").write_text("b numbers")
record_file(directory, "run-b", "numbers.txt", "0" * 64, 1)
print("writing", flush=True)
time.sleep(600)
"""


def test_a_writer_killed_mid_run_leaves_the_previous_set_current(tmp_path):
    whole_run(tmp_path, "run-a", "a")
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WHILE_WRITING, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert contents(tmp_path) == dict.fromkeys([NUMBERS, CLEANED, REJECTED, TRANSFORMED], "a")


def test_a_damaged_manifest_is_named_with_what_to_do(tmp_path):
    (tmp_path / MANIFEST).write_text("{ half a manifest")
    with pytest.raises(ManifestError, match=r"current.json is not a manifest .* move it aside"):
        current_set(tmp_path)


def test_a_run_id_cannot_leave_the_sets_directory(tmp_path):
    with pytest.raises(ValueError, match="is not a run id"):
        run_directory(tmp_path, "../elsewhere")


HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from data_pipeline.numbers.writer_lock import exclusive_writer
with exclusive_writer(Path(sys.argv[1]), "run-holder"):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_second_writer_is_refused_naming_the_holder_until_the_holder_dies(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        refused = r"run run-hold is writing .* stopped before"
        with pytest.raises(DirectoryBusyError, match=refused), exclusive_writer(tmp_path, "run-x"):
            pass
        with exclusive_writer(tmp_path, "run-holder") as took:
            assert took is False, "the holder's own run goes on under the lock it holds"
    finally:
        holder.send_signal(signal.SIGKILL)  # killed outright: the kernel releases the lock
        holder.wait()
    with exclusive_writer(tmp_path, "run-other") as took:
        assert took is True
