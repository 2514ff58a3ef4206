import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from data_pipeline.definitions import defs
from data_pipeline.defs.executor import GuardedExecutor
from data_pipeline.defs.jobs import MAX_CONCURRENT_STEPS
from data_pipeline.defs.resources.data_directory import data_directory_resource
from data_pipeline.numbers.stages.parquet_output import CLEANED_SCHEMA, TRANSFORMED_SCHEMA
from data_pipeline.numbers.storage import DATA_DIR_VARIABLE, REPOSITORY_DATA_DIR
from data_pipeline_tests.ticks import daily_schedule_tick

ASSET_NAMES = ["numbers_file", "cleaned_numbers", "transformed_numbers", "parallelism_report"]


def test_the_definitions_load_and_hold_every_asset_in_the_numbers_group():
    graph = defs.resolve_asset_graph()
    for name in ASSET_NAMES:
        node = graph.get(dg.AssetKey(name))
        assert node.group_name == "numbers"
        assert node.description, f"{name} needs a description for the UI"


def test_the_report_runs_after_both_pooled_steps():
    graph = defs.resolve_asset_graph()
    upstream = graph.get(dg.AssetKey("parallelism_report")).parent_keys
    assert dg.AssetKey("transformed_numbers") in upstream
    assert dg.AssetKey("numbers_file") in upstream


def test_the_job_and_ui_materializations_share_the_multiprocess_executor():
    job = defs.resolve_job_def("numbers_job")
    assert job.executor_def is defs.executor
    assert job.executor_def.name == "numbers_executor"
    executor = _executor_of(job, job.executor_def)
    assert isinstance(executor, GuardedExecutor), "checks config and takes the day's lock first"
    multiprocess = _executor_of(job, dg.multiprocess_executor)
    assert type(executor.inner) is type(multiprocess), "then runs each step in a process"
    assert MAX_CONCURRENT_STEPS == 1, "each pooled step already uses every CPU"


def numbers_job_definition() -> dg.JobDefinition:
    """numbers_job as the run's own process loads it (for dg.reconstructable)."""
    return defs.resolve_job_def("numbers_job")


def _executor_of(job: dg.JobDefinition, executor_def: dg.ExecutorDefinition) -> dg.Executor:
    """The executor ``executor_def`` makes for a run of ``job`` with the job's default
    executor config, built as Dagster builds it."""
    [config] = dg.validate_run_config(job)["execution"].values()
    context = dg.InitExecutorContext(
        job=dg.reconstructable(numbers_job_definition),
        executor_def=executor_def,
        executor_config=config,
        instance=dg.DagsterInstance.ephemeral(),
    )
    return executor_def.executor_creation_fn(context)


def test_a_run_config_value_of_the_wrong_type_is_refused_naming_its_field():
    job = defs.resolve_job_def("numbers_job")
    with pytest.raises(dg.DagsterInvalidConfigError, match="ops:numbers_file:config:count"):
        dg.validate_run_config(job, {"ops": {"numbers_file": {"config": {"count": "many"}}}})


def test_the_data_directory_comes_from_the_environment_variable_when_set(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(tmp_path))
    resource = data_directory_resource()
    assert isinstance(resource.path, dg.EnvVar)  # resolved in each step process
    assert resource.path.get_value() == str(tmp_path)


def test_the_data_directory_defaults_to_data_in_the_repository(monkeypatch):
    monkeypatch.delenv(DATA_DIR_VARIABLE)
    assert data_directory_resource().directory() == REPOSITORY_DATA_DIR


def test_the_daily_schedule_requests_a_numbers_job_run():
    schedule = defs.resolve_schedule_def("numbers_daily_schedule")
    assert schedule.job_name == "numbers_job"
    assert schedule.cron_schedule == "0 6 * * *"
    requests = daily_schedule_tick("2026-11-25T06:00:00+00:00").run_requests
    assert len(requests) == 1


NUMBERS_ASSETS = ("numbers_file", "cleaned_numbers", "transformed_numbers", "parallelism_report")


def test_every_numbers_asset_has_owners_tags_and_a_code_version_in_the_catalog():
    for name in NUMBERS_ASSETS:
        asset = defs.get_assets_def(name)
        key = dg.AssetKey(name)
        assert asset.owners_by_key[key] == ["team:data-engineering"], name
        assert asset.tags_by_key[key]["domain"] == "numbers", name
        assert asset.code_versions_by_key[key], name


def test_the_parquet_assets_show_their_columns_before_any_materialization():
    for name, schema in (
        ("cleaned_numbers", CLEANED_SCHEMA),
        ("transformed_numbers", TRANSFORMED_SCHEMA),
    ):
        [metadata] = defs.get_assets_def(name).metadata_by_key.values()
        columns = metadata["dagster/column_schema"].columns
        assert [column.name for column in columns] == schema.names, name
        assert all(column.description for column in columns), name


def test_dagsters_current_cli_loads_the_definitions():
    dg_command = Path(sys.executable).with_name("dg")
    checked = subprocess.run(
        [str(dg_command), "check", "defs"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    assert "does not match the virtual environment" not in checked.stdout + checked.stderr
