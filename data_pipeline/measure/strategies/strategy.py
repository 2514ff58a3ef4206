"""What a strategy of the table is: its row, the settings every strategy shares, its input
and what a run tells about itself."""

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_pipeline.measure.timing import Outcome

# Where the transform strategies run: on all values, on the Python sample, or on the
# smaller sample of the one-item-at-a-time queue.
FULL, PYTHON_SAMPLE, NAIVE_SAMPLE = "full", "python sample", "naive sample"


@dataclass(frozen=True)
class RunSettings:
    """What every strategy of one table shares: workers, chunk sizes, start method."""

    workers: int
    chunk_values: int
    compiled_chunk_values: int
    cleaning_chunk_bytes: int
    start_method: str


@dataclass(frozen=True)
class StrategyRunDetail:
    """What a strategy's run knows about itself besides its time: its pool's start-up, if it
    has one."""

    startup_seconds: float | None = None


@dataclass(frozen=True)
class Workload:
    """The transform's input twice: int64 for the compiled kernels, Python ints for the rest."""

    values: np.ndarray
    python_values: array

    @classmethod
    def of(cls, values: np.ndarray) -> "Workload":
        values = np.ascontiguousarray(values, dtype=np.int64)
        return cls(values, array("q", values.tobytes()))

    def head(self, count: int) -> "Workload":
        return Workload(self.values[:count], self.python_values[:count])

    def by_scope(self, python_sample: int, naive_sample: int) -> dict[str, "Workload"]:
        """What each scope runs on: every value, the first ``python_sample`` of them, and the
        first ``naive_sample`` of those."""
        return {
            FULL: self,
            PYTHON_SAMPLE: self.head(python_sample),
            NAIVE_SAMPLE: self.head(min(python_sample, naive_sample)),
        }

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Strategy:
    """One row of the table. ``run(input, settings)`` does the whole job as a caller would
    (pools started and stopped inside) and returns the output with a
    :class:`StrategyRunDetail`; ``kernel`` names the serial row it is compared with (the one
    with ``serial=True``)."""

    key: str
    title: str
    kernel: str
    run: Callable[[Any, RunSettings], Outcome]
    serial: bool = False
    scope: str = FULL
    chunking: Callable[[RunSettings, int], str] = lambda settings, items: "-"
    note: str = ""
    requires: str | None = None  # an optional module; the row is skipped without it
