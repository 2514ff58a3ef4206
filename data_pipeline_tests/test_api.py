"""The public face a team's code location imports (data_pipeline.api): what it exports, that
importing it does nothing else, and that the example team's code uses nothing but it."""

import ast
import inspect
import itertools
import json
import subprocess
import sys
from pathlib import Path

import data_pipeline.api as api

REPOSITORY = Path(__file__).resolve().parent.parent
TEAM_EXAMPLE = REPOSITORY / "examples" / "bucket_stats"
# Where the example may reach into data_pipeline: its code only through the public face; its
# tests also through the definitions Dagster loads, to materialize data_pipeline's own assets
# as the upstream day (as a team's CI would), rather than rebuild a day's set from internals.
ALLOWED = {
    "bucket_stats": {"data_pipeline.api"},
    "bucket_stats_tests": {"data_pipeline.api", "data_pipeline.definitions"},
}


def test_the_public_face_exports_the_pool_the_days_the_data_directory_and_the_current_set():
    needed = {"ProcessPoolResource", "CPU_POOL", "daily_partitions", "current_file"}
    assert needed <= set(api.__all__)
    public = {name for name, value in vars(api).items() if not name.startswith("_")}
    assert set(api.__all__) == public, "__all__ lists every export, and nothing else"


def test_every_export_has_a_docstring():
    documented_values = attribute_docstrings(Path(api.__file__))
    for name in api.__all__:
        value = getattr(api, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name
        else:
            assert documented_values.get(name), f"{name} needs a docstring below it in api.py"


def attribute_docstrings(path: Path) -> dict[str, str]:
    """name -> the string literal that follows its assignment at module level."""
    body = ast.parse(path.read_text()).body
    found = {}
    for statement, following in itertools.pairwise(body):
        if isinstance(statement, ast.AnnAssign | ast.Assign) and isinstance(following, ast.Expr):
            targets = (
                [statement.target] if isinstance(statement, ast.AnnAssign) else statement.targets
            )
            if isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
                found |= {target.id: following.value.value for target in targets}
    return found


IMPORT_ONLY = """
import json, multiprocessing, sys, threading
import data_pipeline.api
print(json.dumps({
    "modules": sorted(name for name in sys.modules if name.startswith("data_pipeline.")),
    "threads": threading.active_count(),
    "children": len(multiprocessing.active_children()),
}))
"""


def test_importing_the_public_face_loads_no_definitions_and_touches_nothing(tmp_path):
    data, costs = tmp_path / "data", tmp_path / "costs"
    finished = subprocess.run(
        [sys.executable, "-c", IMPORT_ONLY],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "DATA_PIPELINE_DATA_DIR": str(data),
            "DATA_PIPELINE_COSTS_DIR": str(costs),
        },
        cwd=tmp_path,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    seen = json.loads(finished.stdout.splitlines()[-1])
    assert "data_pipeline.definitions" not in seen["modules"]
    assert not [name for name in seen["modules"] if name.startswith("data_pipeline.measure")]
    assert (seen["threads"], seen["children"]) == (1, 0)
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "nothing is created"


def test_the_team_example_imports_data_pipeline_only_through_its_public_face():
    reached = {}
    for path in sorted(TEAM_EXAMPLE.rglob("*.py")):
        folder = path.relative_to(TEAM_EXAMPLE).parts[0]
        for module in imported_modules(path):
            if module.split(".")[0] == "data_pipeline" and module not in ALLOWED[folder]:
                reached.setdefault(str(path.relative_to(REPOSITORY)), []).append(module)
    assert reached == {}
    assert list(TEAM_EXAMPLE.glob("bucket_stats/*.py")), "the example is where it was"


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (``from data_pipeline import x`` as
    ``data_pipeline.x``)."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "data_pipeline":
            modules += [f"data_pipeline.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.append(node.module)
    return modules
