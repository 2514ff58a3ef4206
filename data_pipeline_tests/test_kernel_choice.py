"""Choosing a kernel: `auto` takes the fastest that passes its self-check; a kernel that
cannot run fails naming what can."""

import dagster as dg
import pytest

from data_pipeline.definitions import defs
from data_pipeline.defs.resources import DataDirectoryResource, ProcessPoolResource
from data_pipeline.numbers.kernel_choice import (
    KERNEL_NAMES,
    PYTHON,
    KernelUnavailableError,
    installed,
    kernel_named,
    start_seconds,
)


def test_the_python_kernel_is_the_reference_and_always_available():
    assert kernel_named("python") is PYTHON
    assert installed("python")


def test_auto_takes_the_fastest_kernel_that_is_installed_and_passes_its_self_check():
    usable = [name for name in ("numba", "numpy", "python") if installed(name)]
    assert kernel_named("auto").name == usable[0]


def test_a_compiled_kernel_reports_what_starting_it_cost_and_python_costs_nothing():
    kernel = kernel_named("auto")
    assert start_seconds("python") == 0
    if kernel.name != "python":
        assert 0 < start_seconds(kernel.name) < 600


def test_an_unknown_kernel_fails_naming_the_choices():
    with pytest.raises(KernelUnavailableError, match=r"kernel='fastest' is not a kernel: .*numba"):
        kernel_named("fastest")


def test_a_kernel_outside_the_list_is_refused_when_the_run_is_launched():
    with pytest.raises(dg.DagsterInvalidConfigError, match=r"kernel.*cuda"):
        dg.materialize(
            [defs.get_assets_def("numbers_file")],
            resources={
                "data_directory": DataDirectoryResource(path=dg.EnvVar("DATA_PIPELINE_DATA_DIR")),
                "process_pool": ProcessPoolResource.configure_at_launch(),
            },
            run_config={"resources": {"process_pool": {"config": {"kernel": "cuda"}}}},
        )


@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_every_installed_kernel_can_be_chosen_by_name(name):
    if not installed(name):
        pytest.skip(f"{name} is not installed")
    assert kernel_named(name).name == name
