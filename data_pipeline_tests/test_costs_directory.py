"""Where ``auto`` keeps the pool's measured costs: this machine's cache directory unless told,
and a directory that cannot be used is said once, never silently."""

import logging
import time
from pathlib import Path

import pytest

from data_pipeline.parallel import calibration
from data_pipeline.parallel.calibration import (
    COSTS_DIR_VARIABLE,
    COSTS_FILE,
    costs_directory_in_use,
    default_costs_directory,
)
from data_pipeline.parallel.decision import PoolCosts, WorkSample
from data_pipeline.parallel.pool_decision import predicted_decision
from data_pipeline.parallel.settings import PoolSettings

COSTS = PoolCosts(2, 0.3, 0.05, 3e-4, time.time())


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({COSTS_DIR_VARIABLE: "/srv/costs", "XDG_CACHE_HOME": "/xdg"}, "/srv/costs"),
        ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/data_pipeline"),
        ({COSTS_DIR_VARIABLE: "", "XDG_CACHE_HOME": ""}, "~/.cache/data_pipeline"),
    ],
)
def test_the_costs_live_in_the_variables_directory_else_this_users_cache(environ, expected):
    assert default_costs_directory(environ) == Path(expected).expanduser()


def test_a_costs_directory_is_created_when_missing(tmp_path):
    wanted = tmp_path / "cache" / "data_pipeline"
    assert costs_directory_in_use(str(wanted)) == wanted
    assert wanted.is_dir()


def test_a_directory_that_cannot_be_created_is_said_once_with_its_reason(tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger=calibration.__name__):
        for _ in range(3):
            assert costs_directory_in_use(str(blocker / "costs")) is None
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert f"cannot be kept in {blocker / 'costs'} (" in warning.getMessage()
    assert "Error" in warning.getMessage(), "the reason, by its error"
    assert COSTS_DIR_VARIABLE in warning.getMessage()


def measured_here(monkeypatch) -> list[int]:
    """Replace measuring (a second or two in a fresh process) by the fixed COSTS; return the
    list of the worker counts measured."""
    measured: list[int] = []

    def measure(shape):
        measured.append(shape.workers)
        return COSTS

    monkeypatch.setattr(calibration, "measure_in_a_fresh_process", measure)
    return measured


def heavy_sample() -> WorkSample:
    """10 ms an item: any pool is worth asking about."""
    return WorkSample(100, 1.0, 0.0, 0.0)


def test_without_a_costs_directory_auto_keeps_the_costs_in_the_cache(tmp_path, monkeypatch):
    measured = measured_here(monkeypatch)
    monkeypatch.setenv(COSTS_DIR_VARIABLE, str(tmp_path / "machine"))
    settings = PoolSettings(2, mode="auto")
    for _ in range(2):
        predicted_decision(settings, 10_000, 10, "values", heavy_sample())
    assert (tmp_path / "machine" / COSTS_FILE).exists()
    assert measured == [2], "measured once, then read back"


def test_costs_that_cannot_be_kept_are_measured_each_time_and_said_once(
    tmp_path, monkeypatch, caplog
):
    measured = measured_here(monkeypatch)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    settings = PoolSettings(2, mode="auto", costs_directory=str(blocker / "costs"))
    log = logging.getLogger("a_step")
    with caplog.at_level(logging.WARNING, logger="a_step"):
        for _ in range(2):
            decision = predicted_decision(settings, 10_000, 10, "values", heavy_sample(), log=log)
            assert decision.parallel, decision.reason
    assert measured == [2, 2]
    assert len([record for record in caplog.records if record.name == "a_step"]) == 1
