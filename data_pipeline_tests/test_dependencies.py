"""Every import is a declared dependency, and every declared dependency is used."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
OWN_PACKAGES = {"data_pipeline", "data_pipeline_tests"}
# Declared but not imported, on purpose.
NOT_IMPORTED = {
    "dagster-webserver": "serves the UI; run as the `dagster dev` command",
    "dagster-dg-cli": "Dagster's current CLI, run as the `dg` command",
}


def declared(group: str | None = None) -> set[str]:
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    requirements = (
        project["dependencies"] if group is None else project["optional-dependencies"][group]
    )
    return {normalized(re.match(r"[A-Za-z0-9._-]+", line).group()) for line in requirements}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions(*folders: str) -> dict[str, set[str]]:
    """Distribution name -> files importing it, for the top-level imports of these folders."""
    owners = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (REPOSITORY / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules = [node.module]
                else:
                    continue
                # A benchmark's modules beside it import each other by their file names.
                siblings = {sibling.stem for sibling in path.parent.glob("*.py")}
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in OWN_PACKAGES | siblings:
                        continue
                    for distribution in owners.get(top, [top]):
                        found.setdefault(normalized(distribution), set()).add(path.name)
    return found


def test_the_package_imports_only_its_core_dependencies_and_optional_extras():
    optional = declared("bench") | declared("dask")
    undeclared = set(imported_distributions("data_pipeline")) - declared() - optional
    assert not undeclared, f"imported by the package but not declared: {undeclared}"


def test_tests_benchmarks_and_docs_import_only_declared_dependencies():
    used = imported_distributions("data_pipeline_tests", "benchmarks", "docs")
    undeclared = set(used) - declared() - declared("dev") - declared("dask") - declared("bench")
    assert not undeclared, f"not declared in pyproject.toml: {undeclared}"


def test_every_core_dependency_is_imported_by_the_package():
    unused = declared() - set(imported_distributions("data_pipeline")) - set(NOT_IMPORTED)
    assert not unused, f"in [project] dependencies but never imported by the package: {unused}"


# Each folder may import only the folders below it; only the Dagster layer imports Dagster.
LAYERS = ["defs", "measure", "numbers", "parallel"]


def package_imports() -> list[tuple[str, str]]:
    """(importing module's folder, imported module) for every import inside the package."""
    found = []
    for path in (REPOSITORY / "data_pipeline").rglob("*.py"):
        folder = path.relative_to(REPOSITORY / "data_pipeline").parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(folder, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.append((folder, node.module))
    return found


def test_imports_go_one_way_from_the_dagster_definitions_down_to_the_parallel_machinery():
    upward = [
        (folder, module)
        for folder, module in package_imports()
        if folder in LAYERS
        and module.split(".")[0] == "data_pipeline"
        and module.split(".")[1] in LAYERS
        and LAYERS.index(module.split(".")[1]) < LAYERS.index(folder)
    ]
    assert upward == []


def test_only_the_definitions_and_defs_import_dagster():
    outside = [
        (folder, module)
        for folder, module in package_imports()
        if module.split(".")[0] == "dagster" and folder not in {"defs", "definitions.py"}
    ]
    assert outside == []
