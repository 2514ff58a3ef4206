"""A transform worker with a bug that shows only in a pool: the comparison must catch it."""

import multiprocessing

from data_pipeline.numbers.transforms import ValueChunk, transform_chunk


def transform_wrongly_in_a_pool_worker(chunk: ValueChunk) -> dict[str, list]:
    """The real transform, except that a pool worker gets the last digit sum wrong."""
    columns = transform_chunk(chunk)
    if multiprocessing.parent_process() is not None:
        columns["digit_sum"][-1] += 1
    return columns
