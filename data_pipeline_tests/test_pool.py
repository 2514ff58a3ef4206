import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import types

import pytest

from data_pipeline.parallel.cpus import (
    available_cpus,
    cgroup_cpu_quota,
    effective_workers,
    own_cgroup_paths,
)
from data_pipeline.parallel.errors import ChunkFailedError, WorkerDiedError
from data_pipeline.parallel.local.process_pool import ProcessPool
from data_pipeline.parallel.pool import open_pool
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline_tests.deadlines import fails_if_it_hangs
from data_pipeline_tests.environment_at_import import THREAD_LIMITS
from data_pipeline_tests.pool_tasks import (
    die_on_one,
    die_once,
    fail_on_three,
    killed_on_one,
    own_pid,
    raise_unpicklable_on_zero,
    return_unpicklable,
    square_after_delay,
    square_in_a_set_order,
    wait_while_another_thread_burns_cpu,
)
from data_pipeline_tests.processes import alive, descendants

START_METHODS = ["forkserver", "spawn"]
# Tasks that stand for "the rest of the work" sleep ten minutes: a test over within this bound
# proves that the pool did not wait for them (and a hang fails instead of blocking the run).
NOT_WAITED_FOR = 60


def wait_until_gone(pids, timeout: float = 30) -> list[int]:
    """The pids still running after ``timeout`` (a bound that only catches leftovers: the
    tasks of these tests would keep a leftover worker busy for ten minutes)."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def assert_no_worker_left(pool: ProcessPool) -> None:
    assert pool.worker_pids, "the pool should have recorded its workers"
    assert wait_until_gone(pool.worker_pids) == []
    assert multiprocessing.active_children() == []


def run_python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], text=True, **kwargs)


def output_of_a_fresh_process(code: str, environment: dict | None = None) -> str:
    """What ``code`` prints in a fresh Python process (so that its fork server starts there),
    which must succeed within a minute."""
    owner = run_python(code, stdout=subprocess.PIPE, env=environment)
    with fails_if_it_hangs(60):
        output, _ = owner.communicate()
    assert owner.returncode == 0
    return output


def environment_without_thread_limits() -> dict[str, str]:
    """This environment without native thread limits or the project's own variables."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in THREAD_LIMITS and not name.startswith("DATA_PIPELINE_")
    }


@pytest.mark.parametrize("start_method", START_METHODS)
def test_results_come_back_in_input_order_even_when_a_later_task_finishes_first(
    start_method, tmp_path
):
    # Task 0 waits until task 3 has started, which the other worker does only after task 1.
    marker = str(tmp_path / "task 3 started")
    tasks = [(0, None, marker), (1, None, None), (2, None, None), (3, marker, None)]
    tasks += [(value, None, None) for value in range(4, 12)]
    with fails_if_it_hangs(60), ProcessPool(2, start_method) as pool:
        results = list(pool.map(square_in_a_set_order, tasks))
    assert [square for square, _ in results] == [value * value for value in range(12)]
    assert results[0][1] != results[1][1], "tasks 0 and 1 ran on different workers"
    assert_no_worker_left(pool)


def test_one_worker_runs_in_this_process_with_the_same_results():
    tasks = [(value, 0.0) for value in range(5)]
    with ProcessPool(1) as pool:
        results = list(pool.map(square_after_delay, tasks))
    assert results == [(value * value, os.getpid()) for value in range(5)]
    assert pool.worker_pids == set()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_exception_names_its_chunk_and_carries_the_worker_traceback(workers):
    with (
        pytest.raises(ChunkFailedError) as failure,
        ProcessPool(workers) as pool,
    ):
        list(pool.map(fail_on_three, range(6), describe=lambda value: f"chunk #{value}"))
    message = str(failure.value)
    assert "chunk #3 failed" in message
    assert "ValueError: cannot handle 3" in message
    if workers > 1:
        assert "Worker traceback" in message
        assert "fail_on_three" in message
        assert_no_worker_left(pool)


@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.parametrize(
    ("how", "reported"),
    [("exit", "exited with code 13"), ("sigkill", "was killed by SIGKILL")],
)
def test_a_dead_worker_is_named_with_its_chunk_without_waiting_for_the_other_tasks(
    start_method, how, reported
):
    with (
        fails_if_it_hangs(NOT_WAITED_FOR),
        pytest.raises(WorkerDiedError, match=rf"worker \d+ {reported}.* while running chunk #1\."),
        ProcessPool(2, start_method) as pool,
    ):
        tasks = [(value, how) for value in range(4)]
        list(pool.map(die_on_one, tasks, describe=lambda task: f"chunk #{task[0]}"))
    assert_no_worker_left(pool)


def test_a_chunk_lost_with_a_dead_worker_is_retried_once_on_a_fresh_worker(tmp_path, caplog):
    tasks = [(value, str(tmp_path / "died")) for value in range(8)]
    with ProcessPool(2, restarts_on_worker_death=1) as pool:
        results = list(pool.map(die_once, tasks, describe=lambda task: f"chunk #{task[0]}"))
    assert results == list(range(8))
    assert "exited with code 3 while running chunk #2." in caplog.text
    assert "Retrying it on a fresh worker (1 of 1); the other tasks go on." in caplog.text
    assert len(pool.worker_pids) == 3, "one fresh worker replaced the one that died"
    assert_no_worker_left(pool)


def test_a_chunk_that_kills_every_pool_fails_after_its_retry():
    with (
        pytest.raises(WorkerDiedError, match="killed by SIGKILL"),
        ProcessPool(2, restarts_on_worker_death=1) as pool,
    ):
        list(pool.map(killed_on_one, range(4)))
    assert len(pool.worker_pids) >= 3, "the task was tried again on a fresh worker"
    assert_no_worker_left(pool)


def test_a_result_that_cannot_be_pickled_names_its_chunk():
    with (
        pytest.raises(
            ChunkFailedError,
            match=r"chunk #2 returned a result that cannot be sent back .*Can't pickle local",
        ),
        ProcessPool(2) as pool,
    ):
        list(pool.map(return_unpicklable, range(5), describe=lambda value: f"chunk #{value}"))
    assert_no_worker_left(pool)


def test_an_exception_that_cannot_be_unpickled_is_reported_without_waiting_for_the_others():
    with (
        fails_if_it_hangs(NOT_WAITED_FOR),
        pytest.raises(
            ChunkFailedError,
            match=r"(?s)task #0 \(0\) failed in a pool worker: .*NeedsTwoArguments: bad value.*"
            r"raise NeedsTwoArguments.*could not travel back",
        ),
        ProcessPool(2) as pool,
    ):
        list(pool.map(raise_unpicklable_on_zero, range(4)))
    assert_no_worker_left(pool)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_workers_exit_when_their_pool_owner_is_killed(start_method):
    owner = run_python(
        "from data_pipeline_tests.pool_tasks import own_a_busy_pool; "
        f"own_a_busy_pool({start_method!r})",
        stdout=subprocess.PIPE,
    )
    with fails_if_it_hangs(60):
        workers = [int(pid) for pid in owner.stdout.readline().split()]
    try:
        assert len(workers) == 2
        owner.kill()  # SIGKILL: the owner gets no chance to clean up
        owner.wait()
        # Their tasks sleep ten minutes: gone within a minute, they did not wait for them.
        assert wait_until_gone(workers, timeout=NOT_WAITED_FOR) == []
    finally:
        owner.kill()
        owner.wait()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_second_interrupt_kills_workers_that_ignore_sigterm(start_method, tmp_path):
    # The owner survives the interrupts and keeps running, so the workers' lifeline stays
    # open: only the pool's own reaction can end them. Their grace period is ten minutes.
    owner = run_python(
        "from data_pipeline_tests.pool_tasks import own_a_pool_that_outlasts_sigterm; "
        f"own_a_pool_that_outlasts_sigterm({start_method!r}, {str(tmp_path)!r})",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    workers: list[int] = []
    try:
        with fails_if_it_hangs(60):
            workers = [int(pid) for pid in owner.stdout.readline().split()]
            assert len(workers) == 2
            wait_for_files(tmp_path, [f"started-{pid}" for pid in workers])
            owner.send_signal(signal.SIGINT)
            # Both workers got SIGTERM and ignored it: the pool is in its grace period.
            wait_for_files(tmp_path, [f"sigterm-{pid}" for pid in workers])
            owner.send_signal(signal.SIGINT)
            assert owner.stdout.readline() == "interrupted\n"
        assert wait_until_gone(workers) == []
        assert owner.poll() is None, "the owner should still be running"
    finally:
        owner.kill()
        owner.wait()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def wait_for_files(folder, names: list[str]) -> None:
    while not all((folder / name).exists() for name in names):
        time.sleep(0.01)


def test_a_task_the_workers_cannot_import_fails_instead_of_respawning_forever(monkeypatch):
    # Importable here, unknown to the workers: like running without `pip install -e .`.
    phantom = types.ModuleType("phantom_tasks")
    exec("def double(value):\n    return 2 * value\n", phantom.__dict__)
    monkeypatch.setitem(sys.modules, "phantom_tasks", phantom)
    with (
        fails_if_it_hangs(60),
        pytest.raises(
            ChunkFailedError,
            match=r"task #\d \(\d\) could not be read by a pool worker: ModuleNotFoundError: No "
            "module named 'phantom_tasks'",
        ),
        ProcessPool(2, "spawn") as pool,
    ):
        list(pool.map(phantom.double, [1, 2, 3]))
    assert_no_worker_left(pool)


def test_leaving_the_block_by_an_exception_ends_busy_workers():
    with (
        fails_if_it_hangs(NOT_WAITED_FOR),
        pytest.raises(KeyboardInterrupt),
        ProcessPool(2) as pool,
    ):
        for _ in pool.map(square_after_delay, [(1, 0.0)] + [(2, 600.0)] * 4):
            raise KeyboardInterrupt
    assert_no_worker_left(pool)


def test_the_pool_refuses_tasks_defined_in_main():
    def local_task(value):  # pragma: no cover - never runs
        return value

    local_task.__module__ = "__main__"
    with ProcessPool(2) as pool, pytest.raises(ValueError, match="importable module"):
        list(pool.map(local_task, [1]))


def test_workers_start_once_and_serve_every_chunk():
    with ProcessPool(2) as pool:
        pids = set(pool.map(own_pid, range(50)))
    assert pids <= pool.worker_pids
    assert pool.stats.chunks == 50
    assert sum(pool.stats.chunks_by_worker.values()) == 50
    assert pool.stats.startup_seconds > 0


def test_every_worker_is_running_before_any_work_even_beyond_the_cpu_count():
    with ProcessPool(6) as pool:
        running_before_work = {pid for pid in descendants(os.getpid()) if pid in pool.worker_pids}
        assert pool.stats.chunks == 0
    assert len(pool.worker_pids) == 6
    assert running_before_work == pool.worker_pids


@pytest.mark.parametrize("start_method", START_METHODS)
def test_workers_are_started_with_native_thread_pools_capped(start_method):
    # A fresh process, so that its fork server starts with this pool and preloads the module
    # that records the environment at import time. A limit the user set is kept.
    environment = environment_without_thread_limits() | {"OMP_NUM_THREADS": "3"}
    output = output_of_a_fresh_process(
        "from data_pipeline_tests.pool_tasks import report_what_workers_saw_at_import; "
        f"report_what_workers_saw_at_import({start_method!r})",
        environment,
    )
    seen = json.loads(output)
    expected = {name: "1" for name in THREAD_LIMITS} | {"OMP_NUM_THREADS": "3"}
    assert seen["limits"] == expected
    if start_method == "forkserver":
        # Imported by the fork server before any worker existed, not by the worker itself.
        assert seen["imported_by"] not in (seen["worker"], seen["owner"])
    else:
        assert seen["imported_by"] == seen["worker"]
    unset = {name: None for name in THREAD_LIMITS}
    assert seen["owner_after_pool"] == unset | {"OMP_NUM_THREADS": "3"}


def test_a_fork_server_started_ahead_preloads_for_the_first_pool_which_then_starts_warm():
    # A fresh process, so that its fork server starts when asked, before any pool.
    output = output_of_a_fresh_process(
        "from data_pipeline_tests.pool_tasks import report_a_fork_server_started_ahead; "
        "report_a_fork_server_started_ahead()",
        environment_without_thread_limits(),
    )
    seen = json.loads(output)
    # The fork server imported the module before any worker existed, with native thread
    # pools capped; the owner never imported it.
    assert seen["imported_by"] not in (seen["worker"], seen["owner"])
    assert seen["limits"] == {name: "1" for name in THREAD_LIMITS}
    assert not seen["owner_imported_it"]
    assert seen["head_start"] >= 1.0, "auto counts the start-up paid ahead"
    # Nothing left to load: the first pool forks its workers from the ready server.
    assert seen["pool_startup_seconds"] < 1.0


def test_a_fork_server_is_not_started_ahead_where_no_forkserver_pool_would_run():
    for settings in (
        PoolSettings(2, "spawn"),
        PoolSettings(1, "forkserver"),
        PoolSettings(2, "forkserver", mode="serial"),
        PoolSettings(2, "forkserver", backend="threads"),
    ):
        output = output_of_a_fresh_process(
            "from data_pipeline.parallel.pool import start_fork_server_early; "
            "from data_pipeline.parallel.settings import PoolSettings; "
            "import multiprocessing.forkserver as server; "
            f"start_fork_server_early(PoolSettings(**{settings_arguments(settings)!r}), []); "
            "print(server._forkserver._forkserver_pid)"
        )
        assert output.strip() == "None", settings


def settings_arguments(settings: PoolSettings) -> dict:
    return {
        "workers": settings.workers,
        "start_method": settings.start_method,
        "mode": settings.mode,
        "backend": settings.backend,
    }


def test_cpu_seconds_count_only_the_thread_running_the_task():
    # In a one-worker pool the task runs in this process, beside other threads: a second of
    # CPU used by another thread while the task waits is not the task's.
    with ProcessPool(1) as pool:
        [burned] = list(pool.map(wait_while_another_thread_burns_cpu, [1.0]))
    assert burned >= 1.0
    assert pool.stats.cpu_seconds < 0.5


def test_the_time_breakdown_covers_the_pool_and_leaves_out_the_callers_time():
    with ProcessPool(2) as pool:
        time.sleep(0.3)  # the caller's own time, between start-up and the map
        list(pool.map(square_after_delay, [(value, 0.05) for value in range(8)]))
    stats = pool.stats
    parts = stats.startup_seconds + stats.map_seconds + stats.shutdown_seconds
    assert stats.wall_seconds - parts >= 0.3
    assert stats.map_seconds >= 4 * 0.05, "8 tasks of 50 ms on 2 workers"
    assert stats.busy_seconds >= 8 * 0.05
    assert stats.compute_seconds + stats.idle_seconds == pytest.approx(stats.map_seconds)


@pytest.mark.parametrize(
    ("requested", "chunks", "expected"),
    [(None, 1000, available_cpus()), (3, 1000, 3), (4, 2, 2), (2, 0, 1), (1, 50, 1)],
)
def test_never_more_workers_than_chunks(requested, chunks, expected):
    assert effective_workers(requested, chunks) == expected


def test_settings_open_a_pool_sized_for_the_chunks():
    pool = open_pool(PoolSettings(workers=8, start_method="spawn"), chunk_count=3)
    assert (pool.workers, pool.start_method) == (3, "spawn")


@pytest.mark.parametrize(
    ("files", "own_cgroup", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, "/", 1.5),
        ({"cpu.max": "max 100000\n"}, "/", None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, "/", 2.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "/", None),
        ({}, "/", None),
        # A limit on the process's own cgroup, or on an ancestor, counts; the tightest wins.
        ({"app.slice/job/cpu.max": "50000 100000\n"}, "/app.slice/job", 0.5),
        (
            {"app.slice/cpu.max": "300000 100000\n", "app.slice/job/cpu.max": "max 100000\n"},
            "/app.slice/job",
            3.0,
        ),
        ({"unified/app/cpu.max": "120000 100000\n"}, "/app", 1.2),
    ],
)
def test_the_cgroup_cpu_quota_is_read_from_v1_and_v2_files(tmp_path, files, own_cgroup, quota):
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    assert cgroup_cpu_quota(tmp_path, own_cgroup) == quota


def test_own_cgroup_paths_are_read_for_v1_and_v2(tmp_path):
    proc_file = tmp_path / "cgroup"
    proc_file.write_text("4:memory:/a\n1:cpu,cpuacct:/b/c\n0::/d/e\n")
    assert own_cgroup_paths(str(proc_file)) == {"v1": "/b/c", "v2": "/d/e"}


def test_available_cpus_respects_a_fractional_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(tmp_path) == 1


@pytest.mark.parametrize(("workers", "start_method"), [(0, "spawn"), (2, "fork")])
def test_nonsense_settings_are_refused_by_name(workers, start_method):
    with pytest.raises(ValueError, match=r"workers|start_method"):
        ProcessPool(workers, start_method)
