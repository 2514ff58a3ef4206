import importlib
import json
import re

import dagster as dg
import pandas
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline.definitions import defs
from data_pipeline.defs.checks import serial_and_parallel_outputs_identical
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.output_set import MANIFEST, current_file, current_set
from data_pipeline.numbers.storage import digest_key, file_digest
from data_pipeline_tests.fixed_costs import assert_fixed_costs_add_up, step_wall_seconds

ASSET_NAMES = ("numbers_file", "cleaned_numbers", "transformed_numbers", "parallelism_report")
ASSETS = [defs.get_assets_def(name) for name in ASSET_NAMES]
CHECKS = list(defs.asset_checks)  # the report's; the day's set is checked inside its steps
MIN_MEDIAN_MAX = ("_min", "", "_max")
# The report's figures the UI plots across runs; everything else is text, a table or JSON.
PLOTTED_REPORT_KEYS = (
    "speedup",
    "serial_seconds",
    "parallel_seconds",
    "efficiency",
    "cpu_wait_share",
)
# The day every test here materializes: its files are in the data directory's DAY/.
DAY = "2026-11-20"
# A pool forced on (mode auto would rightly run this little work serially).
SMALL_POOL = ProcessPoolResource(
    workers=2, cleaning_chunk_bytes=4096, transform_chunk_values=200, mode="parallel"
)


def resources(pool: ProcessPoolResource = SMALL_POOL) -> dict:
    """The test's own data directory (see conftest) and a pool."""
    data_directory = DataDirectoryResource(path=dg.EnvVar("DATA_PIPELINE_DATA_DIR"))
    return {"data_directory": data_directory, "process_pool": pool}


def materialize(numbers_config: dict, pool: ProcessPoolResource = SMALL_POOL, **kwargs):
    return dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=DAY,
        resources=resources(pool),
        run_config={"ops": {"numbers_file": {"config": numbers_config}}},
        **kwargs,
    )


def metadata_of(result, asset: str) -> dict:
    [materialization] = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.mark.parametrize("mode", ["parallel", "serial"])
def test_pooled_steps_separate_their_fixed_costs_from_the_work(isolated_directories, mode):
    pool = SMALL_POOL.model_copy(update={"mode": mode})
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            ASSETS[:3],
            partition_key=DAY,
            resources=resources(pool),
            run_config={"ops": {"numbers_file": {"config": {"count": 3_000, "seed": 7}}}},
            instance=instance,
        )
        assert result.success
        for asset in ("cleaned_numbers", "transformed_numbers"):
            metadata = metadata_of(result, asset)
            # materialize runs every step in this process: nothing was launched for a step.
            assert metadata["step_launch_seconds"] == 0
            # The first pool starts its workers; the next step reuses them (materialize
            # runs one process, and keeps a run's workers for its later maps).
            if mode == "parallel" and asset == "cleaned_numbers":
                assert metadata["pool_start_seconds"] > 0, asset
            assert_fixed_costs_add_up(metadata, step_wall_seconds(instance, result.run_id, asset))


def test_the_whole_graph_materializes_into_the_data_directory(isolated_directories):
    result = materialize({"count": 3_000, "seed": 7, "dirty_fraction": 0.2})
    assert result.success
    data = isolated_directories / DAY
    numbers = metadata_of(result, "numbers_file")
    cleaned = metadata_of(result, "cleaned_numbers")
    transformed = metadata_of(result, "transformed_numbers")
    report = metadata_of(result, "parallelism_report")

    assert numbers["lines"] == 3_000
    assert numbers["bytes"] == (current_file(data, "numbers.txt")).stat().st_size
    assert numbers["dirty_lines"] == sum(
        v for k, v in numbers.items() if k.startswith("dirty_lines_")
    )
    assert cleaned["accepted"] + cleaned["rejected"] == 3_000
    assert (
        cleaned["accepted"]
        == pq.read_metadata(current_file(data, "cleaned_numbers.parquet")).num_rows
    )
    assert (
        cleaned["rejected"]
        == pq.read_metadata(current_file(data, "rejected_lines.parquet")).num_rows
    )
    assert cleaned["workers"] == 2 and cleaned["chunks"] > 2
    assert transformed["rows"] == cleaned["accepted"]
    # Dagster's standard metadata: the catalog shows rows and columns of each Parquet file.
    assert cleaned["dagster/row_count"] == cleaned["accepted"]
    assert transformed["dagster/row_count"] == transformed["rows"]
    assert [c.name for c in transformed["dagster/column_schema"].columns][:2] == [
        "line_number",
        "value",
    ]
    for pooled, total in ((cleaned, cleaned["lines"]), (transformed, transformed["rows"])):
        per_worker = [key for key in pooled if key.startswith("worker_") and key.endswith("_items")]
        assert len(per_worker) == 2, "insight for each of the two workers"
        assert sum(pooled[key] for key in per_worker) == total
        chunk_keys = [key.replace("_items", "_chunks") for key in per_worker]
        assert sum(pooled[key] for key in chunk_keys) == pooled["chunks"]
        assert pooled["load_imbalance"] >= 1.0
        assert "compute" in pooled["conclusion"] and "start-up" in pooled["conclusion"]
        assert "| worker | pid |" in pooled["workers_table"]
    assert (
        transformed["rows"]
        == pq.read_metadata(current_file(data, "transformed_numbers.parquet")).num_rows
    )
    details = report["details"]
    for pooled in (cleaned, transformed, details):
        # auto picks the compiled kernel; its start (compile or cache load) is not compute, and
        # is counted by the step that paid it (here one process runs every step).
        assert pooled["kernel"] == "numba" and pooled["kernel_start_seconds"] >= 0

    # The answer first, then the table; numbers only for what is worth a chart across runs.
    assert list(report)[:3] == ["speedup", "headline", "comparison"]
    assert re.fullmatch(
        r"\d+\.\d\dx (faster|slower) on 2 of \d+ CPUs, outputs identical", report["headline"]
    )
    plotted = sorted(key for key, value in report.items() if isinstance(value, int | float))
    assert plotted == sorted(PLOTTED_REPORT_KEYS)
    for key in PLOTTED_REPORT_KEYS:
        assert isinstance(report[key], float) and report[key] >= 0, key
    rows = [record.data for record in report["comparison"].records]
    assert [(row["stage"], row["run"]) for row in rows] == [
        (stage, run) for stage in ("cleaning", "transform", "both") for run in ("serial", "pool")
    ]
    assert rows[-1]["median_s"] == round(report["parallel_seconds"], 2)
    assert rows[-1]["speedup"] == f"{report['speedup']:.2f}x"
    assert rows[-1]["cpu_wait"].endswith("%")
    for key in (
        "pool_start_seconds",
        "compute_seconds",
        "worker_idle_seconds",
        "shutdown_seconds",
        "collect_seconds",
        "transform_cpu_contention",
    ):
        assert isinstance(details[key], float) and details[key] >= 0, key
    assert details["workers"] == 2
    assert details["items"] == 3_000
    assert details["repeats"] == 3
    assert details["rows_compared"] == 3_000 + transformed["rows"], "every output row compared"
    for stage in ("cleaning", "transform"):
        low, median, high = (details[f"{stage}_parallel_seconds{end}"] for end in MIN_MEDIAN_MAX)
        assert 0 < low <= median <= high
    assert report["efficiency"] == pytest.approx(
        report["speedup"] / 2, abs=1e-3
    )  # rounded to 4 decimals
    assert "| transform |" in report["summary"]
    assert sorted(p.name for p in data.iterdir() if not p.name.startswith(".")) == [
        MANIFEST,
        "parallelism_report",
        "sets",
    ]
    current = current_set(data)
    assert sorted(current.files) == [
        "cleaned_numbers.parquet",
        "numbers.txt",
        "rejected_lines.parquet",
        "transformed_numbers.parquet",
    ]
    assert {entry.run_id for entry in current.files.values()} == {result.run_id}
    assert transformed["path"] == str(current.path("transformed_numbers.parquet"))
    assert sorted(p.name for p in (data / "parallelism_report").iterdir()) == [
        f"{output}_{run}.parquet"
        for output in ("cleaned", "rejected", "transformed")
        for run in ("parallel", "serial")
    ]


def test_an_existing_file_is_ingested_and_left_untouched(tmp_path, isolated_directories):
    source = tmp_path / "export.txt"
    source.write_bytes(b"1\r\n2\n\nthree\n4")
    result = materialize({"source_path": str(source)}, ProcessPoolResource(workers=1))
    assert result.success
    assert source.read_bytes() == b"1\r\n2\n\nthree\n4"
    assert (
        current_file(isolated_directories / DAY, "numbers.txt")
    ).read_bytes() == source.read_bytes()
    cleaned = metadata_of(result, "cleaned_numbers")
    assert (cleaned["lines"], cleaned["accepted"], cleaned["rejected"]) == (5, 3, 2)
    assert (cleaned["rejected_blank"], cleaned["rejected_not_a_number"]) == (1, 1)


@pytest.mark.parametrize(
    ("numbers_config", "resource_config", "field", "value"),
    [
        ({"count": -5}, {}, "count", "-5"),
        ({"dirty_fraction": 1.5}, {}, "dirty_fraction", "1.5"),
        ({"source_path": "/no/such/numbers.txt"}, {}, "source_path", "/no/such/numbers.txt"),
        ({"source_path": "/"}, {}, "source_path", "is not a regular file"),
        ({}, {"workers": 0}, "workers", "0"),
        ({}, {"workers": 1000}, "workers", "1000"),
        ({}, {"cleaning_chunk_bytes": 0}, "cleaning_chunk_bytes", "0"),
    ],
)
def test_bad_config_fails_naming_the_field_and_the_value_before_any_work(
    isolated_directories, numbers_config, resource_config, field, value
):
    result = dg.materialize(
        ASSETS,
        partition_key=DAY,
        resources={**resources(), "process_pool": ProcessPoolResource.configure_at_launch()},
        run_config={
            "ops": {"numbers_file": {"config": {"count": 100, **numbers_config}}},
            "resources": {"process_pool": {"config": resource_config}},
        },
        raise_on_error=False,
    )
    assert not result.success
    failures = [event for event in result.all_events if event.is_failure]
    message = "\n".join(str(event.event_specific_data.error) for event in failures)
    assert field in message and value in message, message
    assert list(isolated_directories.iterdir()) == [], "the first step must fail before writing"


def test_a_missing_upstream_file_fails_with_a_hint(isolated_directories):
    result = dg.materialize(
        [defs.get_assets_def("cleaned_numbers")],
        partition_key=DAY,
        resources=resources(),
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert "materialize numbers_file first" in str(failure.event_specific_data.error)


def test_the_asset_checks_pass_on_a_real_run():
    result = materialize({"count": 2_000, "dirty_fraction": 0.3})
    evaluations = {
        evaluation.check_name: evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }
    assert evaluations == {
        "every_line_accepted_or_rejected": True,
        "one_transformed_row_per_accepted_value": True,
        "serial_and_parallel_outputs_identical": True,
    }


def lose_first_row(path):
    pq.write_table(pq.read_table(path).slice(1), path)


def change_one_value(path):
    table = pq.read_table(path)
    values = table["value"].to_pylist()
    values[-1] += 1
    pq.write_table(table.set_column(1, "value", pa.array(values, pa.int64())), path)


def damaged_on_writing(monkeypatch, asset: str, writer: str, path_field: str, damage) -> None:
    """The asset's writer damages each file it just wrote (its job's ``path_field``), after
    computing the digest it records: as a disk or a bug might, between writing and checking."""
    module = importlib.import_module(f"data_pipeline.defs.assets.{asset}")
    original = getattr(module, writer)

    def write_then_damage(jobs, *args, **kwargs):
        for job, summary in zip(jobs, original(jobs, *args, **kwargs), strict=True):
            damage(getattr(job, path_field))
            yield summary

    monkeypatch.setattr(module, writer, write_then_damage)


def step_failure(result) -> str:
    [failure] = [event for event in result.all_events if event.is_step_failure]
    return str(failure.event_specific_data.error)


@pytest.mark.parametrize(
    ("asset", "writer", "path_field", "check", "damaged_file", "damage", "complaint"),
    [
        (
            "cleaned_numbers",
            "clean_files_to_parquet",
            "rejected_path",
            "every_line_accepted_or_rejected",
            "rejected_lines.parquet",
            lose_first_row,
            "1 line(s) of the file are in neither output",
        ),
        (
            "transformed_numbers",
            "transform_files_to_parquet",
            "transformed_path",
            "one_transformed_row_per_accepted_value",
            "transformed_numbers.parquet",
            change_one_value,
            "value differs first at row",
        ),
    ],
)
def test_a_blocking_check_that_refuses_the_files_just_written_fails_the_run_and_commits_nothing(
    isolated_directories,
    monkeypatch,
    asset,
    writer,
    path_field,
    check,
    damaged_file,
    damage,
    complaint,
):
    assert materialize({"count": 2_000, "seed": 1}).success
    day = isolated_directories / DAY
    earlier = current_set(day)
    damaged_on_writing(monkeypatch, asset, writer, path_field, damage)
    result = materialize({"count": 2_000, "seed": 2}, raise_on_error=False)
    assert not result.success
    # The refused step's check, the only one that failed (the report's never ran).
    [evaluation] = [each for each in result.get_asset_check_evaluations() if not each.passed]
    assert evaluation.check_name == check
    assert complaint in evaluation.description, evaluation.description
    assert f"{damaged_file} (sets/" in evaluation.description
    assert "no longer has the SHA-256 its set recorded" in evaluation.description
    assert evaluation.metadata, "the check's figures are reported with its result"
    assert f"{asset}: {check}" in step_failure(result)
    assert current_set(day) == earlier, "the refused set never became current"
    refused = metadata_of(result, asset)
    assert refused["set_committed"] is False and refused["refused_by_check"] == check


def test_after_a_refused_set_the_current_one_still_passes_the_checks(
    isolated_directories, monkeypatch
):
    assert materialize({"count": 2_000, "seed": 1}).success
    with monkeypatch.context() as patched:
        damaged_on_writing(
            patched, "cleaned_numbers", "clean_files_to_parquet", "rejected_path", lose_first_row
        )
        assert not materialize({"count": 2_000, "seed": 2}, raise_on_error=False).success
    # transformed_numbers alone reads the current set's cleaned values: the refused
    # materialization of cleaned_numbers is not taken for the set's.
    result = dg.materialize(
        [defs.get_assets_def("transformed_numbers")], partition_key=DAY, resources=resources()
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed, evaluation.description


@pytest.mark.parametrize(
    ("damaged_file", "damage", "complaint"),
    [
        (
            "transformed_parallel.parquet",
            change_one_value,
            "transformed_parallel.parquet differs from transformed_serial.parquet: column value",
        ),
        ("rejected_serial.parquet", lose_first_row, "rejected_parallel.parquet:"),
    ],
)
def test_the_reports_blocking_check_fails_the_run_on_a_corrupted_file(
    isolated_directories, damaged_file, damage, complaint
):
    assert materialize({"count": 2_000}).success
    damage(isolated_directories / DAY / "parallelism_report" / damaged_file)
    result = dg.materialize(
        [*ASSETS, *CHECKS],
        tags={"dagster/partition": DAY},  # a check alone: the day is its tag
        resources=resources(),
        selection=dg.AssetSelection.checks(serial_and_parallel_outputs_identical),
        raise_on_error=False,
    )
    assert not result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert complaint in evaluation.description, evaluation.description


def test_an_unknown_start_method_is_refused_when_the_run_is_launched():
    with pytest.raises(dg.DagsterInvalidConfigError, match=r"start_method.*got fork"):
        dg.materialize(
            ASSETS,
            partition_key=DAY,
            resources={**resources(), "process_pool": ProcessPoolResource.configure_at_launch()},
            run_config={"resources": {"process_pool": {"config": {"start_method": "fork"}}}},
        )


def test_the_current_input_ingested_again_is_only_read(isolated_directories):
    assert materialize({"count": 50}, ProcessPoolResource(workers=1)).success
    source = current_file(isolated_directories / DAY, "numbers.txt")
    inode, modified = source.stat().st_ino, source.stat().st_mtime_ns
    result = materialize({"source_path": str(source)}, ProcessPoolResource(workers=1))
    assert result.success
    assert (source.stat().st_ino, source.stat().st_mtime_ns) == (inode, modified)
    assert file_digest(current_file(isolated_directories / DAY, "numbers.txt")) == file_digest(
        source
    )


def test_the_outputs_read_back_with_pandas_as_the_readme_shows(isolated_directories):
    assert materialize({"count": 500, "seed": 3}, ProcessPoolResource(workers=1)).success
    transformed = pandas.read_parquet(
        current_file(isolated_directories / DAY, "transformed_numbers.parquet")
    )
    cleaned = pandas.read_parquet(
        current_file(isolated_directories / DAY, "cleaned_numbers.parquet")
    )
    assert list(transformed.columns[:2]) == ["line_number", "value"]
    assert transformed["value"].tolist() == cleaned["value"].tolist()
    exact_squares = [int(square) for square in transformed["square"]]
    assert exact_squares == [value * value for value in cleaned["value"].tolist()]


def test_by_default_a_step_decides_for_itself_and_records_why(isolated_directories):
    # 3,000 values are milliseconds of compiled work: auto runs them without a pool.
    pool = ProcessPoolResource(workers=2, transform_chunk_values=1_000)
    result = materialize({"count": 3_000, "seed": 7}, pool)
    assert result.success
    for asset in ("cleaned_numbers", "transformed_numbers"):
        metadata = metadata_of(result, asset)
        assert metadata["mode"] == "auto"
        assert metadata["decision"] == "serial" and metadata["workers"] == 1
        assert metadata["decision_reason"].startswith("serial: ")
    cleaned, transformed = (metadata_of(result, name) for name in ASSET_NAMES[1:3])
    # The file is smaller than a chunk: its first 16 KiB and the rest, both sampled.
    assert cleaned["decision_reason"] == "serial: all 2 tasks ran while sampling"
    # Three chunks, the first cut small to time the values. How many tasks the sample took
    # depends on the machine's pace; what is left after it is too little for any pool.
    assert transformed["chunks"] >= 4
    assert re.fullmatch(
        r"serial: (all \d tasks ran while sampling"
        r"|one chunk, nothing to split \(after the first, timed in the step\)"
        r"|.* less than any pool takes to start .*)",
        transformed["decision_reason"],
    ), transformed["decision_reason"]


def test_each_output_records_the_digest_of_exactly_the_file_it_wrote(isolated_directories):
    result = materialize({"count": 2_000})
    current = current_set(isolated_directories / DAY)
    for asset, files in {
        "numbers_file": ["numbers.txt"],
        "cleaned_numbers": ["cleaned_numbers.parquet", "rejected_lines.parquet"],
        "transformed_numbers": ["transformed_numbers.parquet"],
    }.items():
        metadata = metadata_of(result, asset)
        for name in files:
            assert metadata[digest_key(name)] == file_digest(current.path(name))
            assert metadata[digest_key(name)] == current.files[name].sha256
    transformed = metadata_of(result, "transformed_numbers")
    cleaned_digest = current.files["cleaned_numbers.parquet"].sha256
    assert transformed["upstream_cleaned_numbers_sha256"] == cleaned_digest
    assert metadata_of(result, "cleaned_numbers")["upstream_numbers_sha256"] == (
        current.files["numbers.txt"].sha256
    )


def test_a_check_fails_when_another_runs_set_became_current_since(isolated_directories):
    with dg.instance_for_test() as instance, dg.instance_for_test() as elsewhere:
        assert materialize({"count": 2_000, "seed": 1}, instance=instance).success
        # A run on another instance, with the same data directory, commits its own set.
        assert materialize({"count": 2_000, "seed": 2}, instance=elsewhere).success
        other = current_set(isolated_directories / DAY)
        # cleaned_numbers alone reads that set's numbers.txt, which is not the one this
        # instance's latest numbers_file materialization wrote.
        result = dg.materialize(
            [defs.get_assets_def("cleaned_numbers")],
            partition_key=DAY,
            resources=resources(),
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "numbers.txt is not the file that numbers_file's latest" in evaluation.description
    assert "another run's set is current since" in evaluation.description
    assert current_set(isolated_directories / DAY) == other, "nothing committed"


def test_transformed_values_from_other_cleaned_data_than_the_sets_fail_their_check(
    isolated_directories, monkeypatch
):
    assert materialize({"count": 2_000, "seed": 1}).success
    day = isolated_directories / DAY

    def replace_cleaned_pair(_target):
        # While the transform runs, the set's cleaned pair is replaced by another one, as if
        # written by hand.
        manifest = json.loads((day / MANIFEST).read_text())
        entry = manifest["files"]["cleaned_numbers.parquet"]
        lose_first_row(day / entry["path"])
        entry["sha256"] = file_digest(day / entry["path"])
        (day / MANIFEST).write_text(json.dumps(manifest))

    damaged_on_writing(
        monkeypatch,
        "transformed_numbers",
        "transform_files_to_parquet",
        "transformed_path",
        replace_cleaned_pair,
    )
    result = dg.materialize(
        [defs.get_assets_def("transformed_numbers")],
        partition_key=DAY,
        resources=resources(),
        raise_on_error=False,
    )
    by_hand = json.loads((day / MANIFEST).read_text())
    assert not result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "transformed_numbers.parquet was computed from other cleaned_numbers.parquet" in (
        evaluation.description
    )
    assert by_hand["run_id"] != result.run_id, "the refused transform committed nothing"
