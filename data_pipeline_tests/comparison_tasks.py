"""Transform workers that misbehave in ways the comparison must catch or absorb."""

import multiprocessing
import time

from data_pipeline.numbers.transforms import ValueChunk, transform_chunk

FIRST_CALL_SECONDS = 2.0


def transform_wrongly_in_a_pool_worker(chunk: ValueChunk) -> dict[str, list]:
    """The real transform, except that a pool worker gets the last digit sum wrong."""
    columns = transform_chunk(chunk)
    if multiprocessing.parent_process() is not None:
        columns["digit_sum"][-1] += 1
    return columns


_first_call_in_this_process = True


def transform_slowly_on_the_first_call(chunk: ValueChunk) -> dict[str, list]:
    """The real transform, with a two-second set-up on its first call in the test process
    (as a compiled kernel's first call compiles): the warm-up must absorb it."""
    global _first_call_in_this_process
    if _first_call_in_this_process and multiprocessing.parent_process() is None:
        _first_call_in_this_process = False
        time.sleep(FIRST_CALL_SECONDS)
    return transform_chunk(chunk)
