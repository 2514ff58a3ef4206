import os
import shutil
import tempfile

import pytest

from data_pipeline.numbers.storage import DATA_DIR_VARIABLE
from data_pipeline.parallel.calibration import COSTS_DIR_VARIABLE, default_costs_directory

SETTINGS_PREFIX = "DATA_PIPELINE_"


def pytest_configure(config):
    """Before any test module imports the definitions: forget the caller's DATA_PIPELINE_*
    settings (the CPU budget, the data directory), and point the data directory and the
    pool's costs directory somewhere disposable, so no test depends on them or writes into
    the repository or this machine's cache. Both are environment variables, so CLI runs that
    the tests start as subprocesses inherit them.

    The costs directory is one for the session: measuring a pool's costs takes a second or
    two, and they are a fact about this machine, the same for every test. A test that needs
    fresh costs (or fresh lessons of ``auto``) passes its own ``costs_directory``."""
    for name in [name for name in os.environ if name.startswith(SETTINGS_PREFIX)]:
        del os.environ[name]
    os.environ[DATA_DIR_VARIABLE] = config.session_data_dir = tempfile.mkdtemp(prefix="dp_tests_")
    # XDG_CACHE_HOME too: a test that starts a CLI run without the caller's DATA_PIPELINE_*
    # variables still keeps the costs in this session's directory, not in ~/.cache.
    config.session_cache_dir = tempfile.mkdtemp(prefix="dp_test_cache_")
    os.environ["XDG_CACHE_HOME"] = config.session_cache_dir
    os.environ[COSTS_DIR_VARIABLE] = str(default_costs_directory())


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "session_data_dir", ""), ignore_errors=True)
    shutil.rmtree(getattr(config, "session_cache_dir", ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_directories(tmp_path_factory, monkeypatch):
    """Every test writes into its own data directory and Dagster instance, never the repo's."""
    data_dir = tmp_path_factory.mktemp("data")
    dagster_home = tmp_path_factory.mktemp("dagster_home")
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(data_dir))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return data_dir
