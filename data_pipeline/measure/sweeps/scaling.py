"""Arithmetic over measured timings: from which input size the pool pays, and what Amdahl's
law says about machines with more cores. No Dagster, no plotting."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

# The core counts a reader most often asks about; those above the measuring machine are quoted.
CORE_COUNTS_TO_PREDICT = (4, 8, 16)
# The serial fraction is searched on a coarse grid over [0, 1], then on a fine one around the
# best coarse value: bounded, deterministic, and to about 1e-8 without scipy.
_COARSE_STEPS = 10_000
_FINE_STEPS = 2_000


def _is_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def speedup(serial_seconds: float, parallel_seconds: float) -> float | None:
    """Serial time over parallel time; None unless both are positive, finite times."""
    if not (_is_positive(serial_seconds) and _is_positive(parallel_seconds)):
        return None
    return serial_seconds / parallel_seconds


def crossover_size(
    sizes: Sequence[int], serial_seconds: Sequence[float], parallel_seconds: Sequence[float]
) -> int | None:
    """The smallest size from which parallel is faster at every larger size of the sweep.

    Parallel is faster at a size when its median is strictly below serial's. Winning once is
    not enough: a dip after an early win (parallel slower again at a larger size) moves the
    crossover past the dip. A size whose times are not both positive and finite counts as a
    loss, since a broken measurement proves nothing. None means parallel never wins through
    to the largest size, and is also the answer for an empty sweep.

    For the warm crossover, pass parallel times minus the pool's start-up.

    Raises:
        ValueError: the sequences differ in length, or the sizes are not strictly ascending.
    """
    if not len(sizes) == len(serial_seconds) == len(parallel_seconds):
        raise ValueError(
            f"sizes, serial and parallel times differ in length: {len(sizes)}, "
            f"{len(serial_seconds)}, {len(parallel_seconds)}"
        )
    if any(later <= earlier for earlier, later in pairwise(sizes)):
        raise ValueError(f"sizes must be strictly ascending, got {list(sizes)}")
    crossover = None
    for size, serial, parallel in reversed(
        list(zip(sizes, serial_seconds, parallel_seconds, strict=True))
    ):
        if speedup(serial, parallel) is None or not parallel < serial:
            break
        crossover = size
    return crossover


def _times(factor: float) -> str:
    return f"{factor:.1f}x" if factor < 100 else f"{factor:,.0f}x"


@dataclass(frozen=True)
class AmdahlFit:
    """Amdahl's law, S(p) = 1 / (f + (1 - f) / p), with its serial fraction f in [0, 1]."""

    serial_fraction: float

    def predicted(self, workers: float) -> float:
        """The speedup the law predicts on ``workers`` cores (at least 1)."""
        if not workers >= 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        fraction = self.serial_fraction
        return 1 / (fraction + (1 - fraction) / workers)

    @property
    def max_speedup(self) -> float:
        """The limit for any number of cores: 1 / f, infinite when nothing stays serial."""
        return math.inf if self.serial_fraction == 0 else 1 / self.serial_fraction

    def in_words(self, cpus_here: int) -> str:
        """What the fit means for machines with more cores than the ``cpus_here`` it was
        measured on, in one or two sentences."""
        counts = [count for count in CORE_COUNTS_TO_PREDICT if count > cpus_here]
        counts = counts or [2 * cpus_here, 4 * cpus_here]
        speedups = [f"{count} cores {_times(self.predicted(count))}" for count in counts]
        measured_on = f"fitted on {cpus_here} CPU{'s' if cpus_here != 1 else ''}"
        fraction = self.serial_fraction
        if fraction == 0:
            return (
                f"None of the work stays serial ({measured_on}): Amdahl's law sets no ceiling, "
                f"speedup keeps growing with cores ({', '.join(speedups)}). In practice "
                "start-up, memory bandwidth and the serial steps around the pool will set one."
            )
        if fraction >= 0.995:
            return (
                f"All of the work stays serial ({measured_on}): more cores would not make it "
                f"faster ({', '.join(speedups)})."
            )
        share = "Under 1%" if fraction < 0.005 else f"About {fraction:.0%}"
        first_count, *others = speedups
        at_most = first_count.replace(" cores ", " cores would give at most ")
        return (
            f"{share} of the work stays serial ({measured_on}): {', '.join([at_most, *others])}, "
            f"and no number of cores more than {_times(self.max_speedup)}."
        )


def _best_fraction(candidates: np.ndarray, workers: np.ndarray, speedups: np.ndarray) -> float:
    predicted = 1 / (candidates[:, None] + (1 - candidates[:, None]) / workers[None, :])
    squared_errors = ((predicted - speedups[None, :]) ** 2).sum(axis=1)
    return float(candidates[int(np.argmin(squared_errors))])


def amdahl_fit(workers: Sequence[float], speedups: Sequence[float]) -> AmdahlFit | None:
    """The serial fraction f in [0, 1] whose Amdahl curve is nearest the measured speedups
    (least squares on the speedups themselves).

    Points whose worker count is below 1 or whose speedup is not positive and finite are
    ignored. Speedups above the worker count pull f to 0; parallel slower than serial pulls
    it to 1. A single point with more than one worker determines f. None when no usable point
    has more than one worker: one worker gives S = 1 for every f, so there is nothing to fit.
    """
    usable = [
        (float(count), float(factor))
        for count, factor in zip(workers, speedups, strict=True)
        if math.isfinite(count) and count >= 1 and _is_positive(factor)
    ]
    if not any(count > 1 for count, _ in usable):
        return None
    counts = np.array([count for count, _ in usable])
    factors = np.array([factor for _, factor in usable])
    coarse = _best_fraction(np.linspace(0.0, 1.0, _COARSE_STEPS + 1), counts, factors)
    step = 1 / _COARSE_STEPS
    fine = np.linspace(max(0.0, coarse - step), min(1.0, coarse + step), _FINE_STEPS + 1)
    return AmdahlFit(serial_fraction=_best_fraction(fine, counts, factors))


def karp_flatt(workers: float, speedup: float) -> float | None:
    """The experimentally determined serial fraction e = (1/S - 1/p) / (1 - 1/p).

    Returned as measured, not clipped: below 0 means a superlinear speedup (above p, caches
    say), above 1 means the pool was slower than one process. None when ``workers`` is not
    above 1 (the formula divides by zero at p = 1) or the speedup is not positive and finite.
    """
    if not (math.isfinite(workers) and workers > 1 and _is_positive(speedup)):
        return None
    return (1 / speedup - 1 / workers) / (1 - 1 / workers)
