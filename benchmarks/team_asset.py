"""An asset module as teams write it (dagster and the project's definitions imported at the
top, the task functions next to the asset), whose one asset runs team_map.py's whole
comparison in its step."""

import dagster as dg
import team_compare
import team_work
from pydantic import Field

# Teams import the project's definitions at the top of their module; pool workers that
# unpickle a function of this module import all of it.
from data_pipeline import definitions as pipeline_definitions  # noqa: F401
from data_pipeline.api import ProcessPoolResource


# The same functions as team_work's, defined here: the asset-module placement.
def spin(task: tuple[int, int]) -> int:
    """``loops`` steps of a linear congruential generator from ``seed``."""
    seed, loops = task
    value = seed
    for _ in range(loops):
        value = (value * 1103515245 + 12345) % 2147483648
    return value


def spin_bytes(task: tuple[int, int]) -> bytes:
    """:func:`spin`, returned as 256 KiB (its 8 bytes repeated)."""
    return spin(task).to_bytes(8, "little") * (team_work.RESULT_BYTES // 8)


PLACEMENTS = {
    "own-module": team_compare.Placement("own-module", team_work.spin, team_work.spin_bytes),
    "asset-module": team_compare.Placement("asset-module", spin, spin_bytes),
}


class TeamMapConfig(dg.Config):
    repeats: int = Field(default=5, ge=1, description="Runs of every strategy per shape.")
    workers: int = Field(
        default=2, ge=1, description="Workers of each peer's pool (ours: the resource's)."
    )
    shapes: list[str] = Field(
        default=[shape.key for shape in team_compare.SHAPES],
        description="Task shapes to run: " + ", ".join(s.key for s in team_compare.SHAPES),
    )
    placements: list[str] = Field(
        default=list(PLACEMENTS),
        description="Where the function is defined: own-module, asset-module.",
    )
    scale: float = Field(default=1.0, gt=0, description="Fraction of each shape's tasks.")


@dg.asset(group_name="benchmarks", kinds={"python"})
def team_map_comparison(
    context: dg.AssetExecutionContext, config: TeamMapConfig, process_pool: ProcessPoolResource
) -> dg.MaterializeResult:
    """Our pool's map against serial, joblib, mpire, Pool.map and ProcessPoolExecutor on the
    same tasks, all in this step; every result checked against serial's."""

    def report(line: str) -> None:
        print(line)
        context.log.info(line)

    def ours(function, tasks: list) -> list:  # as a team calls it: no options
        return list(process_pool.map(context, function, tasks))

    shapes = [shape for shape in team_compare.SHAPES if shape.key in config.shapes]
    placements = [PLACEMENTS[name] for name in config.placements]
    tasks = team_compare.calibrated_tasks(shapes, placements, config.scale, report)
    chosen = team_compare.strategies(ours, config.workers, report)
    comparison = team_compare.compare(
        shapes, placements, chosen, tasks, config.repeats, config.scale, context.log.info
    )
    tables = {p.name: comparison.markdown(p.name) for p in placements}
    metadata: dict[str, object] = {}
    for name, table in tables.items():
        report(
            f"\nFunction in {name} (medians of {config.repeats}; speedup = serial median / "
            "median, in brackets serial median / each run; Executor = ProcessPoolExecutor "
            "with forkserver, for the record):\n"
        )
        report(table)
        metadata[f"{name}_table"] = dg.MetadataValue.md(table)
        for shape in shapes:
            ratio, _ = comparison.ratio(name, shape.key)
            metadata[f"{name}_{shape.key}_ours_over_best_peer"] = round(ratio, 3)
    return dg.MaterializeResult(metadata=metadata)
