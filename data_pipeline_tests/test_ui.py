"""End to end through the UI's own path: a real `dagster dev` (webserver and daemon) on
127.0.0.1, started from workspace.yaml as the README says, driven through its GraphQL API."""

import datetime
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from data_pipeline.definitions import defs
from data_pipeline.defs.day_files import SET_WRITERS
from data_pipeline.defs.jobs import MAX_CONCURRENT_STEPS
from data_pipeline.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from data_pipeline.defs.schedules import SCHEDULE_CRON_VARIABLE
from data_pipeline.numbers.output_set import current_set
from data_pipeline.numbers.storage import LANDING_DIR_VARIABLE
from data_pipeline_tests.processes import process_group_alive
from data_pipeline_tests.ticks import daily_schedule_tick

pytestmark = [pytest.mark.slow, pytest.mark.ui]

REPOSITORY = Path(__file__).resolve().parent.parent
DAGSTER = str(Path(sys.executable).with_name("dagster"))
LOCATION = {"repositoryLocationName": "data_pipeline", "repositoryName": "__repository__"}
ASSETS = ["numbers_file", "cleaned_numbers", "transformed_numbers", "parallelism_report"]
CHECKS = {
    "cleaned_numbers": "every_line_accepted_or_rejected",
    "transformed_numbers": "one_transformed_row_per_accepted_value",
    "parallelism_report": "serial_and_parallel_outputs_identical",
}
POOL_CONFIG = {
    "resources": {"process_pool": {"config": {"workers": 2, "cleaning_chunk_bytes": 16384}}},
}
RUN_CONFIG = {
    "ops": {"numbers_file": {"config": {"count": 20_000, "dirty_fraction": 0.1}}},
    **POOL_CONFIG,
}
DAY = "2026-11-20"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class DagsterDev:
    def __init__(self, port: int, log: Path, landing: Path):
        self.url, self.port, self.log = f"http://127.0.0.1:{port}", port, log
        self.landing = landing

    def graphql(self, query: str, **variables) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            json.dumps({"query": query, "variables": variables}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def log_tail(self) -> str:
        return self.log.read_text()[-4000:]


@pytest.fixture
def dagster_dev(tmp_path, isolated_directories):
    yield from start_dagster_dev(tmp_path)


@pytest.fixture
def dagster_dev_ticking_every_minute(tmp_path, isolated_directories):
    yield from start_dagster_dev(tmp_path, {SCHEDULE_CRON_VARIABLE: "* * * * *"})


def start_dagster_dev(tmp_path, environment: dict | None = None):
    port, log = free_port(), tmp_path / "dagster_dev.log"
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The instance settings the project ships (its concurrency limits), as `dev.py ui` has them.
    (home / "dagster.yaml").write_text((REPOSITORY / "dagster.yaml").read_text())
    landing = tmp_path / "landing"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPOSITORY,
            env={
                **os.environ,
                "DAGSTER_HOME": str(home),
                LANDING_DIR_VARIABLE: str(landing),
                **(environment or {}),
            },
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so all of it can be stopped
        )
    server = DagsterDev(port, log, landing)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/server_info", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, f"dagster dev exited:\n{server.log_tail()}"
                assert time.monotonic() < deadline, f"never answered:\n{server.log_tail()}"
                time.sleep(0.5)
        yield server
    finally:
        stop_process_group(process)
        assert not port_open(port), "the webserver's port is still open"


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the whole group, SIGKILL after 20 s; fail if anything still runs."""
    for signal_number, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, signal_number)
        except ProcessLookupError:
            process.wait()
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()  # reap our direct child; the others are reparented and reaped
            if not process_group_alive(process.pid):
                process.wait()
                return
            time.sleep(0.2)
    raise AssertionError(f"processes of group {process.pid} survived SIGKILL")


def test_the_ui_loads_runs_the_job_and_shows_the_report(dagster_dev):
    server = dagster_dev
    workspace = server.graphql(
        """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
             locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    )
    entries = workspace["workspaceOrError"]["locationEntries"]
    assert {entry["name"] for entry in entries} == {"data_pipeline", "bucket_stats"}
    for entry in entries:
        assert entry["loadStatus"] == "LOADED"
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry

    repository = server.graphql(
        """query($selector: RepositorySelector!) {
             repositoryOrError(repositorySelector: $selector) {
               ... on Repository { jobs { name } schedules { name } sensors { name } } } }""",
        selector=LOCATION,
    )["repositoryOrError"]
    jobs = {job["name"] for job in repository["jobs"]}
    assert {"numbers_job", "report_job", "benchmark_job"} <= jobs
    assert {schedule["name"] for schedule in repository["schedules"]} == {"numbers_daily_schedule"}
    assert {sensor["name"] for sensor in repository["sensors"]} == {"landing_files_sensor"}
    nodes = server.graphql(
        """{ assetNodes { assetKey { path } groupName
             assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""
    )["assetNodes"]
    by_name = {node["assetKey"]["path"][-1]: node for node in nodes}
    groups = {name: node["groupName"] for name, node in by_name.items()}
    benchmarks = dict.fromkeys(("parallelism_benchmark", "parallelism_sweep"), "benchmarks")
    team = {"last_digit_statistics": "team_examples"}
    assert groups == {**dict.fromkeys(ASSETS, "numbers"), **benchmarks, **team}
    for asset, check in CHECKS.items():
        checks = by_name[asset]["assetChecksOrError"]["checks"]
        assert checks == [{"name": check, "blocking": True}]

    run_id = launch_and_wait(server, LOCATION, "numbers_job", RUN_CONFIG)
    report_run_id = launch_and_wait(server, LOCATION, "report_job", POOL_CONFIG)
    for asset in ASSETS:
        answer = server.graphql(
            """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
                 assetMaterializations(limit: 1) { runId metadataEntries { label
                   ... on FloatMetadataEntry { floatValue } } } } } }""",
            key={"path": [asset]},
        )["assetOrError"]
        [materialization] = answer["assetMaterializations"]
        assert materialization["runId"] == (
            report_run_id if asset == "parallelism_report" else run_id
        )
        if asset == "parallelism_report":
            floats = {
                entry["label"]: entry.get("floatValue")
                for entry in materialization["metadataEntries"]
            }
            assert floats["serial_seconds"] > 0 and floats["parallel_seconds"] > 0
    for asset, check in CHECKS.items():
        execution = server.graphql(
            """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
                 ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name
                   executionForLatestMaterialization { status } } } } } } }""",
            key={"path": [asset]},
        )["assetNodeOrError"]["assetChecksOrError"]["checks"]
        assert execution == [
            {"name": check, "executionForLatestMaterialization": {"status": "SUCCEEDED"}}
        ]
    # The team's location, not installed, loaded from workspace.yaml: its function runs on
    # a real pool (forced, so the tiny input still starts one) in its own step process.
    team = {"repositoryLocationName": "bucket_stats", "repositoryName": "__repository__"}
    pool_config = {"resources": {"process_pool": {"config": {"mode": "parallel", "workers": 2}}}}
    launch_and_wait(server, team, "last_digit_statistics_job", pool_config)


def launch_and_wait(server, location: dict, job: str, run_config: dict, day: str = DAY) -> str:
    """Launch ``job`` for ``day`` through the webserver, wait for it to end, and insist it
    succeeded."""
    launched = server.graphql(
        """mutation($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params) {
             __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
             ... on RunConfigValidationInvalid { errors { message } } } }""",
        params={
            "selector": {**location, "pipelineName": job},
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
        },
    )["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return wait_for_run(server, launched["run"]["runId"])


def wait_for_run(server, run_id: str) -> str:
    """Wait for the run to end, and insist it succeeded."""
    deadline = time.monotonic() + 300
    while True:
        status = server.graphql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", id=run_id
        )["runOrError"]["status"]
        if status in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        assert time.monotonic() < deadline, f"run still {status}:\n{server.log_tail()}"
        time.sleep(1)
    assert status == "SUCCESS", server.log_tail()
    return run_id


def test_a_backfill_launched_like_the_ui_runs_its_days_as_one_run(
    dagster_dev, isolated_directories
):
    """The UI's backfill of three days of the set writers: the daemon makes one run of the
    range (BackfillPolicy.multi_run(30)), which commits each day's set."""
    server, days = dagster_dev, ["2026-03-01", "2026-03-02", "2026-03-03"]
    launched = server.graphql(
        """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(
             backfillParams: $params) { __typename ... on LaunchBackfillSuccess { backfillId }
             ... on PythonError { message } } }""",
        params={
            "partitionNames": days,
            "assetSelection": [{"path": [name]} for name in SET_WRITERS],
            "runConfigData": {"ops": {"numbers_file": {"config": {"count": 20_000}}}},
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    tag = {"key": "dagster/backfill", "value": launched["backfillId"]}
    deadline = time.monotonic() + 300
    while True:
        runs = server.graphql(
            """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs {
                 results { runId status tags { key value } } } } }""",
            filter={"tags": [tag]},
        )["runsOrError"]["results"]
        if runs and all(run["status"] in {"SUCCESS", "FAILURE", "CANCELED"} for run in runs):
            break
        assert time.monotonic() < deadline, f"the backfill's runs: {runs}\n{server.log_tail()}"
        time.sleep(1)
    [run] = runs
    assert run["status"] == "SUCCESS", server.log_tail()
    tags = {each["key"]: each["value"] for each in run["tags"]}
    assert (tags[RANGE_START_TAG], tags[RANGE_END_TAG]) == (days[0], days[-1])
    for day in days:
        assert current_set(isolated_directories / day).run_id == run["runId"], day


def test_the_schedule_can_be_started_and_requests_a_valid_run(dagster_dev):
    server = dagster_dev
    started = server.graphql(
        """mutation($selector: ScheduleSelector!) { startSchedule(scheduleSelector: $selector) {
             __typename ... on ScheduleStateResult { scheduleState { status } }
             ... on PythonError { message } } }""",
        selector={**LOCATION, "scheduleName": "numbers_daily_schedule"},
    )["startSchedule"]
    assert started["scheduleState"]["status"] == "RUNNING", started
    # The next real tick is at 06:00 UTC: rather than wait for it, evaluate the schedule as
    # the daemon would and validate the run it requests.
    schedule = defs.resolve_schedule_def("numbers_daily_schedule")
    [request] = daily_schedule_tick("2026-11-25T06:00:00+00:00").run_requests
    assert request.partition_key == "2026-11-24", "the day before, its export complete"
    job = defs.resolve_job_def("numbers_job")
    assert schedule.job_name == job.name
    validated = dg.validate_run_config(job, request.run_config)  # raises if it is invalid
    # The day's defaults: 400,000 lines from the day's own seed, one step at a time.
    numbers_config = validated["ops"]["numbers_file"]["config"]
    assert (numbers_config["count"], numbers_config["seed"]) == (400_000, None)
    assert validated["execution"]["numbers_executor"]["max_concurrent"] == MAX_CONCURRENT_STEPS


def test_the_daemon_runs_the_sensor_and_a_landed_file_becomes_that_days_run(dagster_dev):
    server = dagster_dev
    started = server.graphql(
        """mutation($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
             __typename ... on Sensor { sensorState { status } }
             ... on PythonError { message } } }""",
        selector={**LOCATION, "sensorName": "landing_files_sensor"},
    )["startSensor"]
    assert started["__typename"] == "Sensor", started
    server.landing.mkdir()
    exported = server.landing / f"{DAY}.txt"
    exported.write_text("".join(f"{value}\n" for value in range(1, 501)) + "oops\n")
    os.utime(exported, (time.time() - 60, time.time() - 60))  # finished writing a while ago
    deadline = time.monotonic() + 150  # the daemon evaluates sensors every 30 s
    while True:
        runs = server.graphql(
            """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs {
                 results { runId status tags { key value } } } } }""",
            filter={"tags": [{"key": "dagster/partition", "value": DAY}]},
        )["runsOrError"]["results"]
        if runs:
            break
        assert time.monotonic() < deadline, f"no run requested:\n{server.log_tail()}"
        time.sleep(2)
    [run] = runs
    assert {"key": "dagster/sensor_name", "value": "landing_files_sensor"} in run["tags"]
    wait_for_run(server, run["runId"])
    metadata = latest_metadata(server, "cleaned_numbers")
    assert (metadata["lines"], metadata["accepted"], metadata["rejected"]) == (501, 500, 1)


def latest_metadata(server, asset: str) -> dict:
    answer = server.graphql(
        """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
             assetMaterializations(limit: 1) { metadataEntries { label
               ... on IntMetadataEntry { intValue } } } } } }""",
        key={"path": [asset]},
    )["assetOrError"]
    [materialization] = answer["assetMaterializations"]
    return {entry["label"]: entry.get("intValue") for entry in materialization["metadataEntries"]}


def test_a_schedule_tick_of_the_daemon_runs_the_day_before(dagster_dev_ticking_every_minute):
    server = dagster_dev_ticking_every_minute
    # Small exports for the days a tick may run (yesterday, or today after midnight).
    now = datetime.datetime.now(datetime.UTC)
    server.landing.mkdir()
    for day in (now - datetime.timedelta(days=1), now):
        (server.landing / f"{day:%Y-%m-%d}.txt").write_text("7\n11\n13\n")
    started = server.graphql(
        """mutation($selector: ScheduleSelector!) { startSchedule(scheduleSelector: $selector) {
             __typename ... on ScheduleStateResult { scheduleState { status } }
             ... on PythonError { message } } }""",
        selector={**LOCATION, "scheduleName": "numbers_daily_schedule"},
    )["startSchedule"]
    assert started["scheduleState"]["status"] == "RUNNING", started
    deadline = time.monotonic() + 150  # the next minute's tick, then the launch
    while True:
        runs = server.graphql(
            """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs {
                 results { runId tags { key value } } } } }""",
            filter={"tags": [{"key": "dagster/schedule_name", "value": "numbers_daily_schedule"}]},
        )["runsOrError"]["results"]
        if runs:
            break
        assert time.monotonic() < deadline, f"no tick launched a run:\n{server.log_tail()}"
        time.sleep(2)
    run = runs[-1]  # the first tick's
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    tick_day = datetime.date.fromisoformat(tags["dagster/partition"])
    assert tick_day in {(now - datetime.timedelta(days=1)).date(), now.date()}
    wait_for_run(server, run["runId"])
    assert latest_metadata(server, "cleaned_numbers")["accepted"] == 3


def screenshot_script():
    """docs/take_screenshots.py, whose browser the docs' pictures come from too."""
    spec = importlib.util.spec_from_file_location(
        "take_screenshots", REPOSITORY / "docs" / "take_screenshots.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_real_browser_shows_every_asset_and_the_reports_answer_and_table(dagster_dev, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip(
            "Debian's chromium is not installed: .ci/run installs it with apt-get when it can "
            "(here it could not); `apt-get install chromium` to run this test"
        )
    server = dagster_dev
    small = {"ops": {"numbers_file": {"config": {"count": 5_000}}}, **POOL_CONFIG}
    launch_and_wait(server, LOCATION, "numbers_job", small)
    launch_and_wait(server, LOCATION, "report_job", POOL_CONFIG)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    script = screenshot_script()
    with script.headless_chromium(chromium) as open_page:
        graph_page, graph_png = open_page(
            f"{server.url}/locations/data_pipeline/asset-groups/numbers", 1400, 640
        )
        report_page, report_png = open_page(f"{server.url}/assets/parallelism_report", 1400, 1150)
    (shots / "asset_graph.png").write_bytes(graph_png)
    (shots / "report_metadata.png").write_bytes(report_png)
    seen = f"(screenshots in {shots})"
    for asset in ASSETS:
        assert asset in graph_page, f"{asset} is not in the asset graph {seen}"
    headline = re.search(
        r"\d+\.\d\dx (faster|slower) on 2 of \d+ CPUs, outputs identical", report_page
    )
    assert headline, f"no headline on the report's page {seen}:\n{report_page[:3000]}"
    assert "speedup" in report_page and "comparison" in report_page, seen
    for column in ("stage", "run", "median_s", "range_s", "speedup", "cpu_wait"):
        assert column in report_page, f"the comparison table's {column} is missing {seen}"
    for row in ("cleaning", "transform", "both"):
        assert row in report_page, seen
