"""Choosing a kernel: `auto` takes the fastest that passes its self-check, saying once why it
passed over one; a kernel that cannot run fails naming what can."""

import dataclasses
import logging

import dagster as dg
import pytest

from data_pipeline.definitions import defs
from data_pipeline.defs.resources.data_directory import DataDirectoryResource
from data_pipeline.defs.resources.process_pool import ProcessPoolResource
from data_pipeline.numbers import kernel_choice
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


@pytest.fixture
def numba_self_check_raises(monkeypatch):
    """The numba kernel as on a machine where its transform raises; self-checks run afresh."""
    if not (installed("numba") and installed("numpy")):
        pytest.skip("needs the numba and numpy kernels installed")

    def transform(chunk):
        raise RuntimeError("no AVX2 on this CPU")

    numba = dataclasses.replace(kernel_choice._KERNELS["numba"], transform=transform)
    monkeypatch.setitem(kernel_choice._KERNELS, "numba", numba)
    monkeypatch.setattr(kernel_choice, "_FAILURES_LOGGED", set())
    kernel_choice._self_check_failure.cache_clear()
    yield
    kernel_choice._self_check_failure.cache_clear()


def self_check_warnings(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == kernel_choice.__name__ and record.levelno == logging.WARNING
    ]


@pytest.mark.usefixtures("numba_self_check_raises")
def test_auto_passes_over_a_kernel_whose_self_check_raises():
    assert kernel_named("auto").name == "numpy"


@pytest.mark.usefixtures("numba_self_check_raises")
def test_auto_logs_the_kernel_it_passed_over_with_the_exception_and_its_fallback(caplog):
    kernel_named("auto")
    assert self_check_warnings(caplog) == [
        "kernel 'numba' failed its self-check (RuntimeError: no AVX2 on this CPU): "
        "auto falls back to 'numpy'"
    ]


@pytest.mark.usefixtures("numba_self_check_raises")
def test_a_failed_self_check_is_logged_once_per_process(caplog):
    for _ in range(3):
        kernel_named("auto")
    assert len(self_check_warnings(caplog)) == 1


@pytest.mark.usefixtures("numba_self_check_raises")
def test_a_kernel_asked_for_by_name_that_fails_its_self_check_is_refused_naming_the_others():
    with pytest.raises(
        KernelUnavailableError,
        match=r"kernel='numba' failed its self-check here: available kernels are python, numpy "
        r"\(or auto\)",
    ):
        kernel_named("numba")
