"""Task functions for the pool tests. They live in an importable module, as every pool task
must: workers import them by name."""

import os
import signal
import time


def square_after_delay(task: tuple[int, float]) -> tuple[int, int]:
    """Sleep, then return (value squared, worker pid); later tasks may finish first."""
    value, delay = task
    time.sleep(delay)
    return value * value, os.getpid()


def fail_on_three(value: int) -> int:
    if value == 3:
        raise ValueError(f"cannot handle {value}")
    return value


def exit_abruptly(value: int) -> int:
    if value == 1:
        os._exit(13)
    time.sleep(0.2)
    return value


def killed_on_one(value: int) -> int:
    """Die by SIGKILL on 1, as a worker hit by the out-of-memory killer does."""
    if value == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.1)
    return value


def die_once(task: tuple[int, str]) -> int:
    """Die the first time value 2 is seen (the marker file remembers), then succeed."""
    value, marker = task
    if value == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return value


def own_pid(_: object) -> int:
    return os.getpid()


class NeedsTwoArguments(Exception):
    """Pickles, but cannot be unpickled: Exception's pickling passes only the message on."""

    def __init__(self, first: str, second: str):
        super().__init__(f"{first} {second}")


def raise_unpicklable(value: int) -> int:
    if value == 2:
        raise NeedsTwoArguments("bad", "value")
    return value


def return_unpicklable(value: int):
    if value == 2:
        return lambda: value
    return value


def clean_into(task: tuple[str, str]) -> int:
    """Clean one file into fixed output paths (a 'run' for the concurrent-writers test)."""
    from pathlib import Path

    from data_pipeline.numbers.pipeline import clean_to_parquet
    from data_pipeline.parallel.pool import PoolSettings

    source, directory = Path(task[0]), Path(task[1])
    summary = clean_to_parquet(
        source, directory / "cleaned.parquet", directory / "rejected.parquet", PoolSettings(1), 4096
    )
    return summary.accepted


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def own_a_busy_pool(start_method: str) -> None:
    """Run in a process of its own: start a pool, print the worker pids, stay busy."""
    from data_pipeline.parallel.pool import ProcessPool

    with ProcessPool(2, start_method) as pool:
        print(" ".join(map(str, sorted(pool.worker_pids))), flush=True)  # noqa: T201
        list(pool.map(sleep_for, [60.0] * 4))


def log_and_square(value: int) -> int:
    """Log at two levels from inside a worker, then work."""
    import logging

    task_logger = logging.getLogger("data_pipeline_tests.pool_tasks")
    task_logger.info("squaring %d", value)
    if value == 3:
        task_logger.warning("three is a suspicious value")
    return value * value


def log_then_die(value: int) -> int:
    import logging

    logging.getLogger("data_pipeline_tests.pool_tasks").error("last words of task %d", value)
    if value == 1:
        os._exit(9)
    time.sleep(0.2)
    return value


def thread_limits(_: object) -> dict[str, str | None]:
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {name: os.environ.get(name) for name in names}


def log_a_lot(value: int) -> int:
    """Log far more than a pipe holds (about 64 KiB), so a reader that stops would block us."""
    import logging

    task_logger = logging.getLogger("data_pipeline_tests.pool_tasks")
    for line in range(1500):
        task_logger.info("task %d line %d %s", value, line, "x" * 80)
    return value
