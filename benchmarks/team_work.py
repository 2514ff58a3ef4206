"""team_map.py's task functions in a module of their own, with no Dagster import: pure-Python
integer arithmetic whose work is set by the task."""

# A result of spin_bytes: 256 KiB.
RESULT_BYTES = 256 * 1024


def spin(task: tuple[int, int]) -> int:
    """``loops`` steps of a linear congruential generator from ``seed``: CPU only, and the
    result depends on the seed, so results out of order are caught."""
    seed, loops = task
    value = seed
    for _ in range(loops):
        value = (value * 1103515245 + 12345) % 2147483648
    return value


def spin_bytes(task: tuple[int, int]) -> bytes:
    """:func:`spin`, returned as 256 KiB (its 8 bytes repeated)."""
    return spin(task).to_bytes(8, "little") * (RESULT_BYTES // 8)
