"""Input that cannot be right fails before it replaces anything: an empty file, UTF-16 or
UTF-32, random bytes, a file where too few lines are numbers. The day's current set stays
as it was, and the failure says why in one sentence. Dirty but usable input warns."""

import os
import random

import dagster as dg
import pytest

from data_pipeline.definitions import defs
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers.output_set import current_set

DAY = "2026-11-20"
NAMES = ("numbers_file", "cleaned_numbers", "transformed_numbers")
SERIAL = ProcessPoolResource(workers=1)


def materialize(root, numbers_config: dict, cleaning_config: dict | None = None):
    run_config = {"ops": {"numbers_file": {"config": numbers_config}}}
    if cleaning_config:
        run_config["ops"]["cleaned_numbers"] = {"config": cleaning_config}
    return dg.materialize(
        [defs.get_assets_def(name) for name in NAMES],
        partition_key=DAY,
        resources={"data_directory": DataDirectoryResource(path=str(root)), "process_pool": SERIAL},
        run_config=run_config,
        raise_on_error=False,
    )


def failure_of(result) -> str:
    [failure] = [event for event in result.all_events if event.is_step_failure]
    return failure.event_specific_data.user_failure_data.description


def utf16(path):
    path.write_bytes("\n".join(str(number) for number in range(1_001)).encode("utf-16"))


def utf32(path):
    path.write_bytes("1\n2\n3\n".encode("utf-32"))


def random_bytes(path):
    path.write_bytes(random.Random(5).randbytes(200_000))


def empty(path):
    path.write_bytes(b"")


def words(path):
    path.write_text("id,name\n" + "".join(f"{number},name {number}\n" for number in range(300)))


@pytest.mark.parametrize(
    ("write", "step", "message"),
    [
        (empty, "numbers_file", "input file is empty: "),
        (
            utf16,
            "numbers_file",
            "input file is UTF-16 LE (it starts with the byte order mark FF FE)",
        ),
        (utf32, "numbers_file", "input file is UTF-32 LE"),
        (
            random_bytes,
            "cleaned_numbers",
            "lines (0.0%) are numbers, fewer than min_accepted_share",
        ),
        (words, "cleaned_numbers", "most often not_a_number 301 (first at line 1)"),
    ],
)
def test_unusable_input_fails_clearly_and_leaves_the_current_set_untouched(
    tmp_path, write, step, message
):
    good = materialize(tmp_path, {"count": 500})
    assert good.success
    before = current_set(tmp_path / DAY)
    export = tmp_path / "export.txt"
    write(export)
    bad = materialize(tmp_path, {"source_path": str(export)})
    assert not bad.success
    assert message in failure_of(bad)
    [failed] = [event.step_key for event in bad.all_events if event.is_step_failure]
    assert failed == step
    assert current_set(tmp_path / DAY) == before, "the previous set stays current"
    assert not any(event.event_type_value == "STEP_UP_FOR_RETRY" for event in bad.all_events)


def test_the_refusal_names_the_three_most_frequent_reasons_with_their_first_lines(tmp_path):
    export = tmp_path / "export.txt"
    lines = ["x"] * 6 + ["1.5"] * 4 + [""] * 3 + ["0x1F"] * 2 + ["7"] * 5
    export.write_text("\n".join(lines) + "\n")
    bad = materialize(tmp_path, {"source_path": str(export)})
    assert failure_of(bad).startswith(
        "only 5 of 20 lines (25.0%) are numbers, fewer than min_accepted_share (50%): most "
        "often not_a_number 6 (first at line 1), non_integral 4 (first at line 7), blank 3 "
        "(first at line 11)."
    )


def test_the_share_and_an_empty_day_can_be_allowed_by_config(tmp_path):
    export = tmp_path / "export.txt"
    export.write_text("1\nx\ny\nz\n")
    allowed = materialize(tmp_path, {"source_path": str(export)}, {"min_accepted_share": 0.25})
    assert allowed.success
    export.write_bytes(b"")
    assert materialize(tmp_path, {"source_path": str(export), "allow_empty": True}).success
    assert current_set(tmp_path / DAY).files["numbers.txt"].rows == 0


def test_more_than_one_percent_rejected_is_a_warning_with_the_summary(tmp_path):
    export = tmp_path / "export.txt"
    export.write_text("".join(f"{number}\n" for number in range(97)) + "x\nx\n1.5\n")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [defs.get_assets_def(name) for name in NAMES],
            partition_key=DAY,
            resources={
                "data_directory": DataDirectoryResource(path=str(tmp_path)),
                "process_pool": SERIAL,
            },
            run_config={"ops": {"numbers_file": {"config": {"source_path": str(export)}}}},
            instance=instance,
        )
        assert result.success
        logged = [
            entry.user_message
            for entry in instance.all_logs(result.run_id)
            if entry.level == 30 and entry.step_key == "cleaned_numbers"
        ]
    assert logged == [
        "3 of 100 lines (3.0%) were rejected: most often not_a_number 2 (first at line 98), "
        "non_integral 1 (first at line 100) (rejected_lines.parquet has every one)"
    ]


def test_a_data_directory_that_cannot_be_created_names_the_setting(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = dg.materialize(
        [defs.get_assets_def("numbers_file")],
        partition_key=DAY,
        resources={
            "data_directory": DataDirectoryResource(path=str(blocker / "data")),
            "process_pool": SERIAL,
        },
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    message = failure.event_specific_data.user_failure_data.description
    assert message.startswith(f"cannot create {blocker / 'data' / DAY}: Not a directory")
    assert "comes from resources.data_directory.config.path" in message
    assert os.path.isfile(blocker)
