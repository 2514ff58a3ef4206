"""The functions the strategies' pool processes import by name (top-level, no Dagster: the
fork server preloads this module)."""

from typing import Any

from data_pipeline.numbers.transforms import TRANSFORM_COLUMNS, transform_values


def transform_one(value: int) -> tuple:
    """The reference transform of one value, as a row (the unit of the per-item strategies)."""
    columns = transform_values((value,))
    return tuple(columns[name][0] for name in TRANSFORM_COLUMNS)


def naive_queue_worker(inputs: Any, outputs: Any) -> None:
    """The classic tutorial's worker: take one (index, value), put back one (index, row)."""
    while (item := inputs.get()) is not None:
        index, value = item
        outputs.put((index, transform_one(value)))


def ready() -> None:
    """A task that does nothing: its answer means a worker is up."""
