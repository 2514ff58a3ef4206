"""The cleaning's strategies: the Python and the vectorized cleaner, serially, on the
project pool and on Dask; each run takes the byte ranges and returns one chunk per range."""

from data_pipeline.measure.strategies.pools import DASK_NOTE, dask_pool, on_pool, project_pool
from data_pipeline.measure.strategies.strategy import (
    FULL,
    RunSettings,
    Strategy,
    StrategyRunDetail,
)
from data_pipeline.measure.timing import Outcome
from data_pipeline.numbers.chunking import ByteRange
from data_pipeline.numbers.fast_cleaning import clean_byte_range_fast
from data_pipeline.numbers.parsing import clean_byte_range


def run_clean(ranges: list[ByteRange], settings: RunSettings) -> Outcome:
    return Outcome([clean_byte_range(byte_range) for byte_range in ranges], StrategyRunDetail())


def run_clean_fast(ranges: list[ByteRange], settings: RunSettings) -> Outcome:
    return Outcome(
        [clean_byte_range_fast(byte_range) for byte_range in ranges], StrategyRunDetail()
    )


def run_pool_clean(ranges: list[ByteRange], settings: RunSettings) -> Outcome:
    return on_pool(project_pool(settings), clean_byte_range, ranges, list)


def run_pool_clean_fast(ranges: list[ByteRange], settings: RunSettings) -> Outcome:
    return on_pool(project_pool(settings), clean_byte_range_fast, ranges, list)


def run_dask_clean_fast(ranges: list[ByteRange], settings: RunSettings) -> Outcome:
    return on_pool(dask_pool(settings), clean_byte_range_fast, ranges, list)


def _byte_ranges(settings: RunSettings, items: int) -> str:
    return f"{settings.cleaning_chunk_bytes // 1024:,} KiB"


CLEANING_STRATEGIES = (
    Strategy("clean", "serial clean_byte_range", "python", run_clean, True, FULL, _byte_ranges),
    Strategy(
        "clean_fast", "serial clean_byte_range_fast", "fast", run_clean_fast, True, FULL,
        _byte_ranges,
    ),
    Strategy(
        "pool_clean", "clean_byte_range, project pool", "python", run_pool_clean, False, FULL,
        _byte_ranges,
    ),
    Strategy(
        "pool_clean_fast", "clean_byte_range_fast, project pool", "fast", run_pool_clean_fast,
        False, FULL, _byte_ranges,
    ),
    Strategy(
        "dask_clean_fast", "clean_byte_range_fast, Dask LocalCluster", "fast",
        run_dask_clean_fast, False, FULL, _byte_ranges, note=DASK_NOTE, requires="distributed",
    ),
)  # fmt: skip
