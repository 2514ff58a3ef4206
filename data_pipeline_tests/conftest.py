import pytest

from data_pipeline.numbers.storage import DATA_DIR_VARIABLE


@pytest.fixture(autouse=True)
def isolated_directories(tmp_path_factory, monkeypatch):
    """Every test writes into its own data directory and Dagster instance, never the repo's."""
    data_dir = tmp_path_factory.mktemp("data")
    dagster_home = tmp_path_factory.mktemp("dagster_home")
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(data_dir))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return data_dir
