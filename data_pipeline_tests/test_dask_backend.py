"""backend: dask, on a real dask.distributed LocalCluster of worker processes on 127.0.0.1:
the same chunks and worker functions as the local pool, the same outputs byte for byte, the
same failures named, and nothing left running afterwards."""

import contextlib
import dataclasses
import functools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.chunking import ByteRange
from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import kernel_named
from data_pipeline.numbers.parsing import clean_byte_range
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.numbers.stages.transform import transform_to_parquet
from data_pipeline.parallel.dask_cluster import dask_pool, distributed_module
from data_pipeline.parallel.errors import ChunkFailedError, WorkerDiedError
from data_pipeline.parallel.pool import open_pool
from data_pipeline.parallel.settings import PoolSettings
from data_pipeline_tests import pool_tasks
from data_pipeline_tests.processes import (
    assert_ended_interrupted,
    command_line,
    descendants,
    process_group_alive,
)

distributed = pytest.importorskip(
    "distributed", reason="backend dask needs the extra: pip install -e '.[dask]'"
)

DASK = PoolSettings(workers=2, mode="parallel", backend="dask")
LOCAL = PoolSettings(workers=2, mode="parallel")


class ListLog:
    """A log that keeps its lines, as a step's context.log would show them."""

    def __init__(self):
        self.lines: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def log(self, level: int, message: str) -> None:
        with self._lock:
            self.lines.append((level, message))

    def info(self, message: str) -> None:
        self.log(logging.INFO, message)

    def warning(self, message: str) -> None:
        self.log(logging.WARNING, message)

    def text(self) -> str:
        with self._lock:
            return "\n".join(message for _, message in self.lines)


def spawned_workers() -> set[int]:
    """This process's spawned children and their children (Dask's worker processes)."""
    return {pid for pid in descendants(os.getpid()) if "spawn_main" in command_line(pid)}


def wait_until(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def refuses_connections(address: str) -> bool:
    host, port = address.split("://")[-1].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


def run_pipeline(directory: Path, source: Path, settings: PoolSettings, kernel: str):
    """Clean and transform ``source`` into ``directory``; the SHA-256 of each output."""
    directory.mkdir()
    chosen = kernel_named(kernel)
    cleaning = clean_to_parquet(
        source,
        directory / "cleaned.parquet",
        directory / "rejected.parquet",
        settings,
        16 * 1024,
        kernel=chosen,
    )
    cleaned, transformed = directory / "cleaned.parquet", directory / "transformed.parquet"
    transform = transform_to_parquet(cleaned, transformed, settings, 2_000, kernel=chosen)
    return {**cleaning.digests, **transform.digests}, cleaning, transform


@pytest.mark.parametrize("kernel", ["python", "numba"])
def test_cleaning_and_transform_on_dask_write_the_local_pools_files_byte_for_byte(tmp_path, kernel):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, 30_000, seed=7, dirty_fraction=0.05)
    local, _, _ = run_pipeline(tmp_path / "local", source, LOCAL, kernel)
    on_dask, cleaning, transform = run_pipeline(tmp_path / "dask", source, DASK, kernel)
    assert on_dask == local, "identical files, digest for digest"
    for summary in (cleaning, transform):
        assert summary.pool.start_method == "dask"
        assert summary.pool.workers == 2
        assert summary.pool.chunks == summary.chunks > 2
        assert len(summary.pool.busy_seconds_by_worker) == 2, "insight for each Dask worker"


def test_results_keep_input_order_when_later_tasks_finish_first():
    tasks = [(value, 0.3 if value == 0 else 0.0) for value in range(8)]
    with open_pool(DASK, 8) as pool:
        results = list(pool.map(pool_tasks.square_after_delay, tasks))
    assert [square for square, _ in results] == [value * value for value in range(8)]


def test_tasks_are_named_only_when_something_goes_wrong():
    # Naming a byte range counts the lines before it: it must not happen once per task.
    named = []
    with open_pool(DASK, 4) as pool:
        results = list(pool.map(pool_tasks.own_pid, range(8), describe=named.append))
    assert len(results) == 8 and named == []


def test_a_task_that_raises_names_its_chunk_and_carries_the_worker_traceback():
    with pytest.raises(ChunkFailedError) as failure, open_pool(DASK, 6) as pool:
        list(pool.map(pool_tasks.fail_on_three, range(6), describe=lambda v: f"chunk {v}"))
    message = str(failure.value)
    assert message.startswith("chunk 3 failed on a Dask worker: ValueError: cannot handle 3")
    assert "Worker traceback:" in message and "fail_on_three" in message


def test_a_task_without_describe_is_named_by_its_position_and_value():
    with pytest.raises(ChunkFailedError) as failure, open_pool(DASK, 6) as pool:
        list(pool.map(pool_tasks.fail_on_three, range(6)))
    assert str(failure.value).startswith("task #3 (3) failed on a Dask worker: ValueError")


def test_a_file_the_workers_cannot_open_says_where_the_input_must_be(tmp_path):
    missing = ByteRange(str(tmp_path / "not_here.txt"), 0, 0, 100)
    with pytest.raises(ChunkFailedError) as failure, open_pool(DASK, 2) as pool:
        list(pool.map(clean_byte_range, [missing, missing], describe=str))
    message = str(failure.value)
    assert "chunk 0 (bytes 0-100 of" in message and "FileNotFoundError" in message
    assert "storage every worker reaches" in message


def test_a_worker_killed_mid_step_is_reported_and_the_output_is_still_identical(tmp_path):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, 30_000, seed=3, dirty_fraction=0.05)
    local, _, _ = run_pipeline(tmp_path / "local", source, LOCAL, "python")
    log = ListLog()
    started = time.monotonic()
    summary = transform_to_parquet(
        tmp_path / "local/cleaned.parquet",
        tmp_path / "transformed.parquet",
        dataclasses.replace(DASK, restarts_on_worker_death=1),
        2_000,
        log=log,
        kernel=kernel_killing_a_worker_once(tmp_path / "killed"),
    )
    assert (tmp_path / "killed").exists(), "a worker was killed while the step ran"
    assert time.monotonic() - started < 60
    assert summary.digests["transformed_sha256"] == local["transformed_sha256"]
    assert re.search(
        r"Dask worker tcp://127\.0\.0\.1:\d+ \(pid \d+\) left the cluster with .*chunk 3 "
        r"\(lines \d+-\d+, 2000 values\).* assigned to it",
        log.text(),
    ), log.text()
    assert "Dask runs its unfinished chunks again on the other workers" in log.text()


def test_without_restarts_a_killed_worker_fails_the_step_naming_its_chunk(tmp_path):
    source = tmp_path / "numbers.txt"
    write_numbers_file(source, 10_000, seed=3, dirty_fraction=0.05)
    run_pipeline(tmp_path / "local", source, LOCAL, "python")
    started = time.monotonic()
    # Dask sends each worker two chunks: the one queued behind chunk 3 dies with it too.
    died = r"^chunk \d+ \(lines \d+-\d+, 2000 values\) was on every Dask worker that died"
    with pytest.raises(WorkerDiedError, match=died):
        transform_to_parquet(
            tmp_path / "local/cleaned.parquet",
            tmp_path / "transformed.parquet",
            DASK,  # restarts_on_worker_death=0
            2_000,
            kernel=kernel_killing_a_worker_once(tmp_path / "killed"),
        )
    assert time.monotonic() - started < 30
    assert not (tmp_path / "transformed.parquet").exists(), "no partial output"


def kernel_killing_a_worker_once(marker: Path):
    """The python kernel, except that chunk 3's first worker is killed by SIGKILL."""
    transform = functools.partial(pool_tasks.transform_but_kill_the_worker_once, str(marker))
    return dataclasses.replace(kernel_named("python"), transform=transform)


@pytest.mark.parametrize("ending", ["normally", "by an exception"])
def test_no_worker_process_or_listening_port_is_left_after_the_pool(ending):
    failing = ending == "by an exception"
    expected = pytest.raises(RuntimeError) if failing else contextlib.nullcontext()
    with expected, open_pool(DASK, 4) as pool:
        addresses = pool.cluster_addresses()
        assert len(addresses) == 1 + 2 * 2, "the scheduler, and each worker with its nanny"
        workers = set(pool.worker_pids)
        assert workers <= spawned_workers()
        list(pool.map(pool_tasks.square_after_delay, [(value, 0.05) for value in range(4)]))
        if failing:
            raise RuntimeError("the step failed")
    assert wait_until(lambda: not workers & spawned_workers(), 10), "worker processes left"
    assert all(refuses_connections(address) for address in addresses), "ports still open"


def test_worker_logs_and_prints_reach_the_owners_log_tagged_with_the_worker():
    log = ListLog()
    settings = PoolSettings(workers=2, mode="parallel", backend="dask")
    with open_pool(settings, 2, log=log) as pool:
        pids = list(pool.map(pool_tasks.print_then_wait, [0.1, 0.1]))
        squares = list(pool.map(pool_tasks.log_and_square, [2, 3]))
    assert squares == [4, 9]
    text = log.text()
    for pid in pids:
        tag = rf"\[dask worker 127\.0\.0\.1:\d+ pid {pid}\]"
        assert _search(rf"{tag} stdout: printed by {pid}", text)
        assert _search(rf"{tag} stderr: warned by {pid}", text)
        assert _search(rf"{tag} team\.task: logged by {pid}", text)
    warnings = [message for level, message in log.lines if level == logging.WARNING]
    assert any("three is a suspicious value" in message for message in warnings)


def test_a_running_cluster_is_used_by_its_scheduler_address_and_left_running():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        settings = PoolSettings(
            workers=2, mode="parallel", backend="dask", scheduler_address=cluster.scheduler_address
        )
        with open_pool(settings, 4) as pool:
            results = list(pool.map(pool_tasks.own_pid, range(6)))
        assert set(results) <= set(pool.worker_pids)
        assert pool.stats.workers == 2
        with distributed.Client(cluster, set_as_default=False) as client:
            assert len(client.scheduler_info()["workers"]) == 2, "the cluster still runs"
            assert client.run(lambda: sys.path[-1]), "and answers"


def test_an_unreachable_scheduler_fails_naming_the_address(monkeypatch):
    monkeypatch.setattr(dask_pool, "CONNECT_TIMEOUT_SECONDS", 2)
    settings = PoolSettings(
        workers=2, mode="parallel", backend="dask", scheduler_address="tcp://127.0.0.1:9"
    )
    refused = pytest.raises(RuntimeError, match=r"cannot connect to the Dask scheduler at 'tcp://")
    with refused, open_pool(settings, 2):
        pass


def test_without_distributed_the_backend_fails_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    missing = pytest.raises(
        distributed_module.DaskUnavailableError, match=r"pip install -e '\.\[dask\]'"
    )
    with missing, open_pool(DASK, 2):
        pass


def test_a_scheduler_address_without_the_dask_backend_is_refused_by_name():
    with pytest.raises(ValueError, match="scheduler_address='tcp://x:1' is for backend 'dask'"):
        PoolSettings(workers=2, scheduler_address="tcp://x:1")


def _search(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


DAGSTER = str(Path(sys.executable).with_name("dagster"))
DASK_RUN_CONFIG = """
ops: {{numbers_file: {{config: {{count: {count}}}}}}}
resources:
  process_pool:
    config: {{backend: dask, workers: 2, mode: parallel, kernel: {kernel},
              worker_log_level: DEBUG, cleaning_chunk_bytes: 65536, transform_chunk_values: 5000}}
"""


def start_numbers_job(tmp_path: Path, count: int, kernel: str) -> tuple[subprocess.Popen, Path]:
    """`dagster job execute` of numbers_job on the Dask backend, in a session of its own."""
    config, log = tmp_path / "config.yaml", tmp_path / "run.log"
    config.write_text(DASK_RUN_CONFIG.format(count=count, kernel=kernel))
    command = [DAGSTER, "job", "execute", "-m", "data_pipeline.definitions", "-j", "numbers_job"]
    command += ["--tags", '{"dagster/partition": "2026-11-20"}', "-c", str(config)]
    with open(log, "w") as output:
        job = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True
        )
    return job, log


@pytest.mark.slow
def test_numbers_job_runs_its_pooled_steps_on_dask_through_the_multiprocess_executor(
    tmp_path, isolated_directories
):
    job, log = start_numbers_job(tmp_path, 40_000, "numba")
    try:
        assert job.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    text = log.read_text()
    assert text.count("a Dask LocalCluster on 127.0.0.1: scheduler tcp://127.0.0.1:") == 2
    assert re.search(r"\[dask worker 127\.0\.0\.1:\d+ pid \d+\] data_pipeline\.numbers\.", text)
    assert "RUN_SUCCESS" in text
    # Workers whose step process exited end as soon as they notice (they watch their parent).
    assert wait_until(lambda: not process_group_alive(job.pid), 10), "a Dask process outlived it"
    with dg.DagsterInstance.get() as instance:
        for asset in ("cleaned_numbers", "transformed_numbers"):
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            metadata = event.asset_materialization.metadata
            assert metadata["start_method"].value == "dask", asset
            assert metadata["workers"].value == 2, asset


@pytest.mark.slow
def test_interrupting_a_run_closes_its_dask_cluster_and_leaves_no_process(
    tmp_path, isolated_directories
):
    job, log = start_numbers_job(tmp_path, 300_000, "python")
    try:
        ready = re.compile(r"transformed_numbers - .*a Dask LocalCluster on 127\.0\.0\.1: ")
        assert wait_until(lambda: ready.search(log.read_text()), 180), log.read_text()[-3000:]
        time.sleep(1.0)  # the workers are busy with chunks now
        os.kill(job.pid, signal.SIGINT)
        interrupted = time.monotonic()
        job.wait(timeout=60)
        assert wait_until(lambda: not process_group_alive(job.pid), 30), "processes left"
        assert time.monotonic() - interrupted < 60
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert_ended_interrupted(job, log, isolated_directories)


def test_the_resource_refuses_backend_dask_without_the_extra_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ValueError, match=r"backend='dask': .*pip install -e '\.\[dask\]'"):
        ProcessPoolResource(backend="dask")


def test_the_resource_refuses_a_scheduler_address_without_backend_dask():
    with pytest.raises(ValueError, match=r"scheduler_address='tcp://h:8786' is for backend"):
        ProcessPoolResource(scheduler_address="tcp://h:8786")


def test_the_resource_hands_backend_and_address_to_the_pool_settings():
    resource = ProcessPoolResource(backend="dask", scheduler_address="tcp://h:8786", workers=2)
    settings = resource.settings()
    assert (settings.backend, settings.scheduler_address) == ("dask", "tcp://h:8786")
    assert "the workers of the Dask cluster at tcp://h:8786" in resource.describe_plan()


def test_the_whole_graph_and_its_report_on_dask_name_the_backend(isolated_directories):
    from data_pipeline_tests.test_assets import materialize, metadata_of

    pool = ProcessPoolResource(
        backend="dask",
        workers=2,
        mode="parallel",
        cleaning_chunk_bytes=8192,
        transform_chunk_values=500,
    )
    result = materialize({"count": 4_000, "seed": 5}, pool)
    assert result.success
    for asset in ("cleaned_numbers", "transformed_numbers"):
        assert metadata_of(result, asset)["start_method"] == "dask", asset
    report = metadata_of(result, "parallelism_report")
    details = report["details"]
    assert (details["backend"], details["start_method"], details["workers"]) == ("dask", "dask", 2)
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks)
