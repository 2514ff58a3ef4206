import os
import shutil
import tempfile

import pytest

from data_pipeline.numbers.storage import DATA_DIR_VARIABLE

SETTINGS_PREFIX = "DATA_PIPELINE_"


def pytest_configure(config):
    """Before any test module imports the definitions: forget the caller's DATA_PIPELINE_*
    settings (the CPU budget, the data directory), and point the data directory somewhere
    disposable, so no test depends on them or writes into the repository."""
    for name in [name for name in os.environ if name.startswith(SETTINGS_PREFIX)]:
        del os.environ[name]
    os.environ[DATA_DIR_VARIABLE] = config.session_data_dir = tempfile.mkdtemp(prefix="dp_tests_")


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "session_data_dir", ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_directories(tmp_path_factory, monkeypatch):
    """Every test writes into its own data directory and Dagster instance, never the repo's."""
    data_dir = tmp_path_factory.mktemp("data")
    dagster_home = tmp_path_factory.mktemp("dagster_home")
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(data_dir))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return data_dir
