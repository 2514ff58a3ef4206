"""The run config of each asset that takes one (what the launchpad shows), and the one registry
of them that the executor checks before a run starts."""

import os
from pathlib import Path
from types import MappingProxyType

import dagster as dg
from pydantic import Field, field_validator


class NumbersFileConfig(dg.Config):
    """What numbers_file generates, or which existing file it ingests instead."""

    count: int = Field(
        default=400_000,
        ge=0,
        description=(
            "Lines to generate. The default makes the whole job take 40-60 s on two cores, "
            "with the pooled steps' compute well above process overheads."
        ),
    )
    seed: int | None = Field(
        default=None,
        description=(
            "Random seed: the same seed gives a byte-identical file. Default: the day as a "
            "number (2026-11-25: 20261125), so each day's file is different and reproducible."
        ),
    )
    dirty_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description=(
            "Share of lines made messy (blanks, whitespace, thousands separators, floats, "
            "scientific notation, hex, words, NaN/inf, values beyond int64, duplicates, CRLF)."
        ),
    )
    source_path: str | None = Field(
        default=None,
        description=(
            "Ingest this existing text file (one number per line) instead of the day's file "
            "in the landing directory or a generated one. It is only read, never changed; a "
            "copy goes to the day's directory."
        ),
    )

    allow_empty: bool = Field(
        default=False,
        description=(
            "Accept an empty input (a day with no lines). Off: an empty file fails the run "
            "with 'input file is empty' before anything is replaced."
        ),
    )

    @field_validator("source_path")
    @classmethod
    def _readable_file(cls, source_path: str | None) -> str | None:
        if source_path is None:
            return None
        path = Path(source_path).expanduser()
        if not path.exists():
            raise ValueError(f"source_path {source_path!r} does not exist")
        if not path.is_file():
            raise ValueError(f"source_path {source_path!r} is not a regular file")
        if not os.access(path, os.R_OK):
            raise ValueError(f"source_path {source_path!r} is not readable")
        return str(path)


class CleaningConfig(dg.Config):
    """How much of the input must be numbers for the cleaning to stand."""

    min_accepted_share: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Fail, before anything is replaced, when fewer than this share of the lines are "
            "accepted (a binary file, another column, the wrong export): the message names "
            "the three most frequent reasons with counts and the first line of each. 0 "
            "accepts any file."
        ),
    )


class ParallelismReportConfig(dg.Config):
    """How the report measures."""

    repeats: int = Field(
        default=3,
        ge=3,
        le=50,
        description=(
            "Timed runs of each side (serial, pool), alternating serial, pool, pool, serial, "
            "...; the report gives medians with the fastest and slowest run. Each repeat "
            "costs one more serial and one more pooled pass over the input."
        ),
    )


class ParallelismBenchmarkConfig(dg.Config):
    """How much work the benchmark times."""

    values: int = Field(
        default=400_000,
        ge=1_000,
        le=20_000_000,
        description=(
            "Values to transform (drawn like the default input) and lines to clean. At "
            "4,000,000 the compiled strategies show what a pool adds to them."
        ),
    )
    repeats: int = Field(
        default=3,
        ge=3,
        le=20,
        description="Timed runs of every strategy, alternating; medians with min and max.",
    )
    python_sample_values: int = Field(
        default=200_000,
        ge=1_000,
        description=(
            "Above this many values, the plain-Python strategies run on a sample of this "
            "size and are compared per value (serial Python takes ~20 µs a value)."
        ),
    )


class ParallelismSweepConfig(dg.Config):
    """Which sizes the sweep times, and how often."""

    sizes: list[int] = Field(
        default=[10, 100, 1_000, 10_000, 100_000, 400_000, 1_000_000, 4_000_000],
        min_length=2,
        description=(
            "Input sizes (lines to clean, values to transform), ascending, log-spaced. The "
            "whole sweep takes about 10 minutes on 2 CPUs with the default."
        ),
    )
    repeats: int = Field(default=3, ge=3, le=20, description="Timed runs per size and mode.")
    python_transform_max_size: int = Field(
        default=400_000,
        ge=10,
        description=(
            "The python kernel's transform stops at this size (~25 µs a value: 4,000,000 "
            "values would take 100 s a run, far past where the pool starts to pay)."
        ),
    )

    @field_validator("sizes")
    @classmethod
    def _ascending(cls, sizes: list[int]) -> list[int]:
        if sizes != sorted(set(sizes)) or sizes[0] < 1:
            raise ValueError(f"sizes={sizes} must be positive and strictly ascending")
        return sizes


# The config classes whose values the executor checks before a run starts (executor.py), by
# step: Dagster's own config check knows types, not the ranges and validators above. Read-only:
# the executor holds it from the moment the definitions load.
RUN_CONFIG_MODELS: MappingProxyType[str, type[dg.Config]] = MappingProxyType(
    {
        "numbers_file": NumbersFileConfig,
        "cleaned_numbers": CleaningConfig,
        "parallelism_report": ParallelismReportConfig,
        "parallelism_benchmark": ParallelismBenchmarkConfig,
        "parallelism_sweep": ParallelismSweepConfig,
    }
)
