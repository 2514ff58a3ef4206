"""Reading the process table (Linux /proc) for tests about leftover processes, and how an
interrupted command must end."""

import os
import subprocess
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [0] state, [1] parent, [2] group."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    fields = _stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[1]))


def alive(pid: int) -> bool:
    """Running or sleeping: not gone, not a zombie waiting to be reaped."""
    found = _state_and_parent(pid)
    return found is not None and found[0] not in "ZX"


def children_by_parent() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            found = _state_and_parent(int(entry))
            if found:
                tree.setdefault(found[1], []).append(int(entry))
    return tree


def descendants(pid: int) -> set[int]:
    tree, found, todo = children_by_parent(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def process_group_alive(group: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and int(fields[2]) == group and fields[0] not in "ZX":
                return True
    return False


def assert_ended_interrupted(job: subprocess.Popen, log: Path, data_directory: Path) -> None:
    """The command failed as an interrupted run, and no temporary file is left behind."""
    assert job.returncode != 0
    assert "DagsterExecutionInterruptedError" in log.read_text()
    assert not [path.name for path in data_directory.rglob("*.tmp")]
