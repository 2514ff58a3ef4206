"""The stages over several files (a range of days) write each file byte for byte as they
write it alone, whether the pool's tasks are every file's chunks or whole files."""

from pathlib import Path

import pytest

from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.kernel_choice import kernel_named
from data_pipeline.numbers.stages.cleaning import (
    CleaningJob,
    clean_files_to_parquet,
    clean_to_parquet,
)
from data_pipeline.numbers.stages.transform import (
    TransformJob,
    transform_files_to_parquet,
    transform_to_parquet,
)
from data_pipeline.numbers.stages.whole_files import whole_files_as_tasks
from data_pipeline.numbers.storage import file_digest
from data_pipeline.parallel.settings import PoolSettings

TWO_WORKERS = PoolSettings(2, mode="parallel")


def numbers_files(directory: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = directory / f"numbers_{index}.txt"
        write_numbers_file(path, 3_000 + 1_000 * index, seed=index, dirty_fraction=0.1)
        paths.append(path)
    paths[1].write_bytes(b"")  # an empty day (allowed by config) among them
    return paths


def alone(tmp_path: Path, sources: list[Path], kernel) -> list[list[str]]:
    """Each file cleaned and transformed on its own, serially: the reference digests."""
    digests = []
    for index, source in enumerate(sources):
        cleaned, rejected = tmp_path / f"alone_c{index}", tmp_path / f"alone_r{index}"
        transformed = tmp_path / f"alone_t{index}"
        clean_to_parquet(source, cleaned, rejected, PoolSettings(1), 16 * 1024, kernel=kernel)
        transform_to_parquet(cleaned, transformed, PoolSettings(1), 500, kernel=kernel)
        digests.append([file_digest(path) for path in (cleaned, rejected, transformed)])
    return digests


@pytest.mark.parametrize(
    ("files", "whole"), [(3, False), (4, True)], ids=["chunks of every file", "whole files"]
)
def test_several_files_on_one_pool_match_each_file_alone(tmp_path, files, whole):
    assert whole_files_as_tasks(files, TWO_WORKERS) is whole
    kernel = kernel_named("auto")
    sources = numbers_files(tmp_path, files)
    cleaning_jobs = [
        CleaningJob(source, tmp_path / f"c{index}", tmp_path / f"r{index}")
        for index, source in enumerate(sources)
    ]
    cleaned = list(clean_files_to_parquet(cleaning_jobs, TWO_WORKERS, 16 * 1024, kernel=kernel))
    transform_jobs = [
        TransformJob(job.cleaned_path, tmp_path / f"t{index}")
        for index, job in enumerate(cleaning_jobs)
    ]
    transformed = list(transform_files_to_parquet(transform_jobs, TWO_WORKERS, 500, kernel=kernel))
    written = [
        [
            file_digest(path)
            for path in (clean.cleaned_path, clean.rejected_path, job.transformed_path)
        ]
        for clean, job in zip(cleaning_jobs, transform_jobs, strict=True)
    ]
    assert written == alone(tmp_path, sources, kernel)
    # Each file's own counts, and the one pool run of all of them, ended, behind each.
    assert [summary.lines for summary in cleaned][:2] == [3_000, 0]
    assert [summary.rows for summary in transformed] == [s.accepted for s in cleaned]
    for summary in [*cleaned, *transformed]:
        assert summary.run is cleaned[0].run or summary.run is transformed[0].run
        assert summary.pool is not None and summary.pool.workers == 2


def test_a_refused_file_stops_the_files_after_it_and_the_pool(tmp_path):
    sources = numbers_files(tmp_path, 4)
    jobs = [
        CleaningJob(source, tmp_path / f"c{index}", tmp_path / f"r{index}")
        for index, source in enumerate(sources)
    ]

    def refuse_the_third(index, summary):
        if index == 2:
            raise ValueError(f"file {index} refused")

    summaries = clean_files_to_parquet(
        jobs, TWO_WORKERS, 16 * 1024, kernel=kernel_named("auto"), accept=refuse_the_third
    )
    seen: list[int] = []
    with pytest.raises(ValueError, match="file 2 refused"):
        seen.extend(summary.lines for summary in summaries)
    assert seen == [3_000, 0]
