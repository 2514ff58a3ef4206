import multiprocessing
import os
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
from data_pipeline.parallel.pool import (
    ChunkFailedError,
    PoolSettings,
    ProcessPool,
    WorkerDiedError,
    _process_running,
    _start_time,
)
from data_pipeline_tests.pool_tasks import (
    die_once,
    exit_abruptly,
    fail_on_three,
    killed_on_one,
    own_pid,
    raise_unpicklable,
    return_unpicklable,
    square_after_delay,
    thread_limits,
)
from data_pipeline_tests.processes import alive

START_METHODS = ["forkserver", "spawn"]


def assert_no_worker_left(pool: ProcessPool) -> None:
    assert pool.worker_pids, "the pool should have recorded its workers"
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pool.worker_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pool.worker_pids if alive(pid)]
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("start_method", START_METHODS)
def test_results_come_back_in_input_order_even_when_later_tasks_finish_first(start_method):
    # Early tasks sleep longest, so a completion-ordered pool would return them last.
    tasks = [(value, 0.2 if value < 2 else 0.0) for value in range(12)]
    with ProcessPool(2, start_method) as pool:
        results = list(pool.map(square_after_delay, tasks))
    assert [square for square, _ in results] == [value * value for value in range(12)]
    assert len({pid for _, pid in results}) == 2, "both workers should have taken tasks"
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


@pytest.mark.parametrize(
    ("task", "how"),
    [(exit_abruptly, "exited with code 13"), (killed_on_one, "was killed by SIGKILL")],
)
def test_a_dead_worker_is_named_with_its_chunk_and_fails_fast(task, how):
    started = time.monotonic()
    with (
        pytest.raises(WorkerDiedError, match=rf"worker \d+ {how}.* while running chunk #1\."),
        ProcessPool(2) as pool,
    ):
        list(pool.map(task, range(4), describe=lambda value: f"chunk #{value}"))
    assert time.monotonic() - started < 5
    assert_no_worker_left(pool)


def test_chunks_lost_with_a_dead_worker_are_retried_once_on_a_fresh_pool(tmp_path, caplog):
    tasks = [(value, str(tmp_path / "died")) for value in range(8)]
    with ProcessPool(2, restarts_on_worker_death=1) as pool:
        results = list(pool.map(die_once, tasks, describe=lambda task: f"chunk #{task[0]}"))
    assert results == list(range(8))
    assert "exited with code 3 while running chunk #2. Retrying" in caplog.text
    assert len(pool.worker_pids) == 4, "a second set of workers replaced the first"
    assert_no_worker_left(pool)


def test_a_chunk_that_kills_every_pool_fails_after_its_retry():
    with (
        pytest.raises(WorkerDiedError, match="killed by SIGKILL"),
        ProcessPool(2, restarts_on_worker_death=1) as pool,
    ):
        list(pool.map(killed_on_one, range(4)))
    assert len(pool.worker_pids) == 4
    assert_no_worker_left(pool)


def test_a_result_that_cannot_be_pickled_names_its_chunk():
    with (
        pytest.raises(ChunkFailedError, match=r"chunk #2 failed.*Can't pickle"),
        ProcessPool(2) as pool,
    ):
        list(pool.map(return_unpicklable, range(5), describe=lambda value: f"chunk #{value}"))
    assert_no_worker_left(pool)


def test_an_exception_that_cannot_be_unpickled_is_reported_not_hung():
    started = time.monotonic()
    with (
        pytest.raises(ChunkFailedError, match=r"(?s)pool broke.*missing 1 required positional"),
        ProcessPool(2) as pool,
    ):
        list(pool.map(raise_unpicklable, range(5)))
    assert time.monotonic() - started < 5
    assert_no_worker_left(pool)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_workers_of_a_killed_pool_owner_exit_on_their_own(start_method):
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from data_pipeline_tests.pool_tasks import own_a_busy_pool; "
            f"own_a_busy_pool({start_method!r})",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    workers = [int(pid) for pid in owner.stdout.readline().split()]
    assert len(workers) == 2
    owner.kill()  # SIGKILL: the owner gets no chance to clean up
    owner.wait()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)]


def test_a_task_the_workers_cannot_import_fails_fast_instead_of_respawning_forever(monkeypatch):
    # Importable here, unknown to the workers: like running without `pip install -e .`.
    phantom = types.ModuleType("phantom_tasks")
    exec("def double(value):\n    return 2 * value\n", phantom.__dict__)
    monkeypatch.setitem(sys.modules, "phantom_tasks", phantom)
    started = time.monotonic()
    with (
        pytest.raises(WorkerDiedError, match=r"between chunks.*import"),
        ProcessPool(2, "spawn") as pool,
    ):
        list(pool.map(phantom.double, [1, 2, 3]))
    assert time.monotonic() - started < 10
    assert_no_worker_left(pool)


def test_leaving_the_block_early_terminates_busy_workers():
    with pytest.raises(KeyboardInterrupt), ProcessPool(2) as pool:
        for _ in pool.map(square_after_delay, [(1, 0.0)] + [(2, 30.0)] * 4):
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


def test_every_worker_is_started_before_any_work_even_beyond_the_cpu_count():
    with ProcessPool(6) as pool:
        started = set(pool._executor._processes)
    assert len(pool.worker_pids) == 6
    assert started == pool.worker_pids


def test_the_orphan_watchdog_tells_a_reused_pid_from_its_owner():
    own_start = _start_time(os.getpid())
    assert _process_running(os.getpid(), own_start)
    assert not _process_running(os.getpid(), "0")  # same pid, another process
    assert not _process_running(2**22 + 12345, own_start)  # no such process


def test_workers_cap_native_thread_pools_at_one_thread(monkeypatch):
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    with ProcessPool(2, "spawn") as pool:
        [limits] = list(pool.map(thread_limits, [None]))
    assert limits == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_the_time_breakdown_adds_up_to_the_pool_lifetime():
    with ProcessPool(2) as pool:
        list(pool.map(square_after_delay, [(value, 0.05) for value in range(8)]))
    stats = pool.stats
    parts = stats.startup_seconds + stats.map_seconds + stats.shutdown_seconds
    assert parts == pytest.approx(stats.wall_seconds, abs=0.05)
    assert stats.compute_seconds + stats.idle_seconds == pytest.approx(stats.map_seconds)
    assert stats.busy_seconds == pytest.approx(8 * 0.05, rel=0.5)


@pytest.mark.parametrize(
    ("requested", "chunks", "expected"),
    [(None, 1000, available_cpus()), (3, 1000, 3), (4, 2, 2), (2, 0, 1), (1, 50, 1)],
)
def test_never_more_workers_than_chunks(requested, chunks, expected):
    assert effective_workers(requested, chunks) == expected


def test_settings_open_a_pool_sized_for_the_chunks():
    pool = PoolSettings(workers=8, start_method="spawn").open(chunk_count=3)
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
