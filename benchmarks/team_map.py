"""Our pool's ``map`` against serial, joblib, mpire, ``Pool.map`` and ``ProcessPoolExecutor``
on a team's pure-Python function (tasks of ~16, ~1.6 and ~0.08 ms, and ~1.6 ms returning
256 KiB), all inside one Dagster step, with the function in a module of its own and in the
asset's module. Prints each strategy's speedup over serial and ours / the best peer.

    .venv/bin/python benchmarks/team_map.py [--repeats 5] [--workers 2] [--shapes 16ms ...]
        [--function-in own-module|asset-module|both] [--quick]
"""

import argparse
import importlib.metadata
import os
import platform
import sys
from pathlib import Path

# benchmarks/ is not a package: its modules import from this directory, here and in every
# peer's workers (fork inherits sys.path; loky and forkserver workers are handed it).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import dagster as dg  # noqa: E402
import team_asset  # noqa: E402
import team_compare  # noqa: E402

from data_pipeline.api import ProcessPoolResource  # noqa: E402


def machine() -> str:
    load = ", ".join(f"{figure:.2f}" for figure in os.getloadavg())
    return f"{len(os.sched_getaffinity(0))} CPUs available ({os.cpu_count()}), load {load}"


def versions() -> str:
    found = []
    for name in ("dagster", "data_pipeline", "joblib", "mpire"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="5 (2 with --quick)")
    parser.add_argument("--workers", type=int, default=2)
    keys = [shape.key for shape in team_compare.SHAPES]
    parser.add_argument("--shapes", nargs="+", choices=keys, default=keys)
    parser.add_argument(
        "--function-in", choices=["own-module", "asset-module", "both"], default="both"
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the tasks: a smoke run")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    placements = (
        ["own-module", "asset-module"] if args.function_in == "both" else [args.function_in]
    )
    print(f"Machine: {machine()}")
    print(f"{versions()}; {args.workers} workers, {repeats} repeats")
    config = team_asset.TeamMapConfig(
        repeats=repeats,
        workers=args.workers,
        shapes=args.shapes,
        placements=placements,
        scale=0.1 if args.quick else 1.0,
    )
    # In process: the asset's step is this process, and everything runs inside it.
    dg.materialize(
        [team_asset.team_map_comparison],
        resources={"process_pool": ProcessPoolResource(mode="parallel", workers=args.workers)},
        run_config=dg.RunConfig({"team_map_comparison": config}),
    )
    print(f"\nMachine afterwards: {machine()}")


if __name__ == "__main__":
    main()
