"""Task functions for the pool tests. They live in an importable module, as every pool task
must: workers import them by name."""

import logging
import os
import signal
import sys
import time


def square_after_delay(task: tuple[int, float]) -> tuple[int, int]:
    """Sleep, then return (value squared, worker pid); later tasks may finish first."""
    value, delay = task
    time.sleep(delay)
    return value * value, os.getpid()


def square_in_a_set_order(task: tuple[int, str | None, str | None]) -> tuple[int, int]:
    """Create the file ``announce`` (if given), wait until the file ``wait_for`` exists (if
    given), then return (value squared, worker pid): lets a test choose which task of two
    workers finishes first."""
    value, announce, wait_for = task
    if announce:
        open(announce, "w").close()
    deadline = time.monotonic() + 60
    while wait_for and not os.path.exists(wait_for):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{wait_for} never appeared")
        time.sleep(0.01)
    return value * value, os.getpid()


def fail_on_three(value: int) -> int:
    if value == 3:
        raise ValueError(f"cannot handle {value}")
    return value


def die_on_one(task: tuple[int, str]) -> int:
    """Task 1 dies (``exit``: os._exit(13); ``sigkill``: as the out-of-memory killer does);
    the others take ten minutes, far longer than any test waits."""
    value, how = task
    if value == 1:
        if how == "exit":
            os._exit(13)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(600)
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


def raise_unpicklable_on_zero(value: int) -> int:
    """Task 0 raises an exception the pool cannot unpickle; the others take ten minutes."""
    if value == 0:
        raise NeedsTwoArguments("bad", "value")
    time.sleep(600)
    return value


def return_unpicklable(value: int):
    if value == 2:
        return lambda: value
    return value


def clean_into(task: tuple[str, str]) -> int:
    """Clean one file into fixed output paths (a 'run' for the concurrent-writers test)."""
    from pathlib import Path

    from data_pipeline.numbers.stages.cleaning import clean_to_parquet
    from data_pipeline.parallel.settings import PoolSettings

    source, directory = Path(task[0]), Path(task[1])
    summary = clean_to_parquet(
        source, directory / "cleaned.parquet", directory / "rejected.parquet", PoolSettings(1), 4096
    )
    return summary.accepted


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def own_a_busy_pool(start_method: str) -> None:
    """Run in a process of its own: start a pool, print the worker pids, stay busy (tasks of
    ten minutes)."""
    from data_pipeline.parallel.local.process_pool import ProcessPool

    with ProcessPool(2, start_method) as pool:
        print(" ".join(map(str, sorted(pool.worker_pids))), flush=True)  # noqa: T201
        list(pool.map(sleep_for, [600.0] * 4))


def outlast_sigterm(markers: str) -> None:
    """Ignore SIGTERM (noting its arrival in the ``markers`` folder) and sleep ten minutes:
    only SIGKILL ends this task early."""
    pid = os.getpid()
    signal.signal(
        signal.SIGTERM, lambda *_: open(os.path.join(markers, f"sigterm-{pid}"), "w").close()
    )
    open(os.path.join(markers, f"started-{pid}"), "w").close()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(deadline - time.monotonic())


def own_a_pool_that_outlasts_sigterm(start_method: str, markers: str) -> None:
    """Run in a process of its own: print the worker pids, run tasks that ignore SIGTERM,
    print ``interrupted`` once a KeyboardInterrupt has ended the pool, then stay alive (the
    workers' lifeline stays open) until stdin closes."""
    from data_pipeline.parallel.local import worker_processes
    from data_pipeline.parallel.local.process_pool import ProcessPool

    # Longer than the test waits: only the reaction to a second interrupt can end the workers.
    worker_processes.TERMINATE_GRACE_SECONDS = 600.0
    # Ctrl-C as in a terminal: a shell that runs the tests in the background starts them with
    # SIGINT ignored, and Python leaves an ignored SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with ProcessPool(2, start_method) as pool:
            print(" ".join(map(str, sorted(pool.worker_pids))), flush=True)  # noqa: T201
            list(pool.map(outlast_sigterm, [markers] * 2))
    except KeyboardInterrupt:
        print("interrupted", flush=True)  # noqa: T201
    sys.stdin.read()


def report_what_workers_saw_at_import(start_method: str) -> None:
    """Run in a fresh process (so that its fork server starts here, preloading the recording
    module): print, as JSON, what a worker's copy of ``environment_at_import`` saw, which
    process imported it, the worker's pid, and this process's limits after the pool."""
    import json

    from data_pipeline.parallel.local.process_pool import ProcessPool
    from data_pipeline_tests import environment_at_import

    module = environment_at_import.__name__
    with ProcessPool(2, start_method, preload_modules=[module]) as pool:
        [seen] = pool.map(environment_at_import.seen_at_import, [None])
    after = {name: os.environ.get(name) for name in environment_at_import.THREAD_LIMITS}
    print(json.dumps({**seen, "owner": os.getpid(), "owner_after_pool": after}))  # noqa: T201


def report_a_fork_server_started_ahead() -> None:
    """Run in a fresh process: start the fork server ahead of any pool (preloading the
    recording module), wait until the module is surely loaded, then start a pool; print, as
    JSON, what its worker saw, this process's pid, whether this process imported the module,
    the head start counted before the pool, and the pool's start-up."""
    import json

    from data_pipeline.parallel.local.process_pool import ProcessPool
    from data_pipeline.parallel.pool import fork_server_head_start, start_fork_server_early
    from data_pipeline.parallel.settings import PoolSettings

    module = "data_pipeline_tests.environment_at_import"
    start_fork_server_early(PoolSettings(2, "forkserver"), [module])
    time.sleep(1.0)
    head_start = fork_server_head_start(PoolSettings(2, "forkserver"))
    with ProcessPool(2, "forkserver", preload_modules=[module]) as pool:
        [seen] = pool.map(_seen_at_import, [None])
    report = {
        **seen,
        "owner": os.getpid(),
        "owner_imported_it": module in sys.modules,
        "head_start": head_start,
        "pool_startup_seconds": pool.stats.startup_seconds,
    }
    print(json.dumps(report))  # noqa: T201


def _seen_at_import(_: object) -> dict:
    from data_pipeline_tests import environment_at_import

    return environment_at_import.seen_at_import(None)


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


def log_beside_another_thread(value: int) -> int:
    """Log from this task and, while it runs, from another thread of the same process."""
    import logging
    import threading

    other = threading.Thread(
        target=logging.getLogger("data_pipeline_tests.elsewhere").warning,
        args=("another thread, during task %d", value),
    )
    other.start()
    other.join()
    logging.getLogger("data_pipeline_tests.pool_tasks").warning("the task itself, %d", value)
    return value


def wait_while_another_thread_burns_cpu(seconds: float) -> float:
    """Wait (using no CPU) while another thread of this process uses ``seconds`` of CPU
    time; return the CPU time that thread used."""
    import threading

    used = []

    def burn() -> None:
        started = time.thread_time()
        while time.thread_time() - started < seconds:
            pass
        used.append(time.thread_time() - started)

    burner = threading.Thread(target=burn)
    burner.start()
    burner.join()
    return used[0]


def log_a_lot(value: int) -> int:
    """Log far more than a pipe holds (about 64 KiB), so a reader that stops would block us."""
    import logging

    task_logger = logging.getLogger("data_pipeline_tests.pool_tasks")
    for line in range(1500):
        task_logger.info("task %d line %d %s", value, line, "x" * 80)
    return value


def log_info_here_and_in_another_thread(value: int) -> int:
    """Log at INFO from this task and, while it runs, from another thread."""
    import logging
    import threading

    other = threading.Thread(
        target=logging.getLogger("data_pipeline_tests.elsewhere").info,
        args=("another thread's info, during task %d", value),
    )
    other.start()
    other.join()
    logging.getLogger("data_pipeline_tests.pool_tasks").info("the task's info, %d", value)
    return value


def print_then_wait(seconds: float) -> int:
    """Print a line and log one, then wait: what a task says must arrive while it runs."""
    print(f"printed by {os.getpid()}")  # noqa: T201 (what a user's task does)
    print(f"warned by {os.getpid()}", file=sys.stderr)  # noqa: T201
    logging.getLogger("team.task").info(f"logged by {os.getpid()}")
    time.sleep(seconds)
    return os.getpid()


def print_a_megabyte(size: int) -> int:
    """One line of ``size`` characters on stdout, in a single write."""
    sys.stdout.write("x" * size + "\n")
    return size


def raise_for_three(value: int) -> int:
    if value == 3:
        raise ValueError(f"three is not allowed (got {value})")
    return value


def transform_but_kill_the_worker_once(marker: str, chunk):
    """The reference transform, except that the worker running chunk 3 the first time (the
    ``marker`` file remembers) is killed by SIGKILL, as the out-of-memory killer would."""
    from data_pipeline.numbers.transforms import transform_chunk

    if chunk.index == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return transform_chunk(chunk)
