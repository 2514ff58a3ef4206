"""Which code does the work: the `python` kernels (the reference) or a faster one that must
give the same output, and `auto`, the fastest that is installed and passes a self-check."""

import functools
import importlib.util
import logging
import tempfile
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_pipeline.numbers.chunking import ByteRange
from data_pipeline.numbers.kernels.columns import ARROW_TYPES as TRANSFORMED_TYPES
from data_pipeline.numbers.parsing import CleanedChunk, clean_byte_range
from data_pipeline.numbers.transforms import ValueChunk, transform_chunk, transform_values
from data_pipeline.parallel.settings import PoolSettings

KERNEL_NAMES = ("python", "numpy", "numba")
AUTO = "auto"
# Fastest first: what `auto` tries.
_PREFERENCE = ("numba", "numpy", "python")
# What each kernel needs installed besides the core dependencies.
_REQUIRES = {
    "python": (),
    "numpy": ("numpy", "data_pipeline.numbers.fast_cleaning", "data_pipeline.numbers.kernels"),
    "numba": (
        "numba",
        "numpy",
        "data_pipeline.numbers.fast_cleaning",
        "data_pipeline.numbers.kernels",
    ),
}
# Values whose every column the self-check compares with the reference: signs, 0 and 1,
# primes, squares beyond int64, a Collatz path past int64, int64's ends.
SELF_CHECK_VALUES = (
    0,
    1,
    -1,
    2,
    7,
    -12,
    97,
    1_000_000,
    2**31 - 1,
    3_037_000_500,
    2**61 - 1,
    2**63 - 1,
    -(2**63),
)
# Lines of every kind the cleaning rules tell apart.
SELF_CHECK_LINES = (
    b"\xef\xbb\xbf12\n -7 \r\n+5\n007\n1,234\n12,34\n12.0\n1e3\n12.5\n0x1F\nNaN\n\n"
    b"99999999999999999999\n\xff\xfe\ntwelve\n-9223372036854775808\n42"
)


logger = logging.getLogger(__name__)

# How long each kernel's self-check took in this process: see start_seconds().
_START_SECONDS: dict[str, float] = {}
# The kernels whose failed self-check this process has logged (once each).
_FAILURES_LOGGED: set[str] = set()
_NOT_INSTALLED = "not installed"


class KernelUnavailableError(ValueError):
    """The kernel asked for cannot run here; the message says what is available."""


@dataclass(frozen=True)
class Kernel:
    """The worker functions of one kernel, and the modules a fork server preloads for it."""

    name: str
    clean: Callable[[ByteRange], CleanedChunk]
    # Columns as lists (the reference) or as Arrow arrays of the output's types.
    transform: Callable[[ValueChunk], dict[str, Any]]
    worker_modules: tuple[str, ...]
    # Whether its work is compiled or vectorized code that releases the GIL, so that threads of
    # one process run it at once (numba compiled with nogil=True, numpy, Arrow compute).
    releases_gil: bool = False


def transform_chunk_numpy(chunk: ValueChunk) -> dict[str, Any]:
    """The numpy kernel on one chunk (runs in a pool worker): Arrow columns."""
    from data_pipeline.numbers.kernels.numpy_kernel import transform_columns_numpy

    return transform_columns_numpy(chunk.values)


def transform_chunk_numba(chunk: ValueChunk) -> dict[str, Any]:
    """The numba kernel on one chunk (runs in a pool worker): Arrow columns."""
    from data_pipeline.numbers.kernels.numba_kernel import transform_columns_numba

    return transform_columns_numba(chunk.values)


def clean_byte_range_vectorized(byte_range: ByteRange) -> CleanedChunk:
    """The vectorized cleaning on one byte range (runs in a pool worker)."""
    from data_pipeline.numbers.fast_cleaning import clean_byte_range_fast

    return clean_byte_range_fast(byte_range)


_REFERENCE_MODULES = ("data_pipeline.numbers.parsing", "data_pipeline.numbers.transforms")
_FAST_CLEANING_MODULES = ("data_pipeline.numbers.fast_cleaning",)
PYTHON = Kernel("python", clean_byte_range, transform_chunk, _REFERENCE_MODULES)
_KERNELS = {
    "python": PYTHON,
    "numpy": Kernel(
        "numpy",
        clean_byte_range_vectorized,
        transform_chunk_numpy,
        (
            *_REFERENCE_MODULES,
            *_FAST_CLEANING_MODULES,
            "data_pipeline.numbers.kernels.warm_numpy",
        ),
        releases_gil=True,
    ),
    "numba": Kernel(
        "numba",
        clean_byte_range_vectorized,
        transform_chunk_numba,
        (
            *_REFERENCE_MODULES,
            *_FAST_CLEANING_MODULES,
            "data_pipeline.numbers.kernels.warm_numba",
        ),
        releases_gil=True,
    ),
}


def settings_for_kernel(settings: PoolSettings, kernel: Kernel, log: Any = logger) -> PoolSettings:
    """``settings`` as ``kernel`` may run them: backend ``threads`` only for a kernel that
    releases the GIL; for the ``python`` kernel (which holds it, so its threads would take turns)
    the pool is local processes instead, which ``log`` hears at WARNING."""
    if settings.backend != "threads" or kernel.releases_gil:
        return settings
    log.warning(
        f"backend 'threads' runs only kernels that release the GIL (numba, numpy); kernel "
        f"{kernel.name!r} holds it, so this step's pool is local processes instead"
    )
    return replace(settings, backend="local")


def installed(name: str) -> bool:
    """Whether the libraries the kernel needs can be imported (without importing them)."""
    try:
        return all(importlib.util.find_spec(module) is not None for module in _REQUIRES[name])
    except ModuleNotFoundError:  # a parent package of a module is missing
        return False


def kernel_named(name: str) -> Kernel:
    """The kernel called ``name``, or for ``auto`` the fastest one installed that passes its
    self-check. An explicit kernel that is not installed, or fails its self-check, raises
    :class:`KernelUnavailableError` naming what is available. Why an installed kernel failed
    its self-check is logged once per process, at WARNING."""
    if name == AUTO:
        chosen = next(choice for choice in _PREFERENCE if _self_check_failure(choice) is None)
        for skipped in _PREFERENCE[: _PREFERENCE.index(chosen)]:
            _log_failure_once(skipped, f"auto falls back to {chosen!r}")
        return _KERNELS[chosen]
    if name not in _KERNELS:
        raise KernelUnavailableError(
            f"kernel={name!r} is not a kernel: choose one of {', '.join((AUTO, *KERNEL_NAMES))}"
        )
    if _self_check_failure(name) is not None:
        _log_failure_once(name, "it was asked for by name, so nothing falls back")
        usable = [choice for choice in KERNEL_NAMES if _self_check_failure(choice) is None]
        reason = "is not installed" if not installed(name) else "failed its self-check"
        raise KernelUnavailableError(
            f"kernel={name!r} {reason} here: available kernels are {', '.join(usable)} (or {AUTO})"
        )
    return _KERNELS[name]


def likely_worker_modules(name: str) -> tuple[str, ...]:
    """The worker modules of the kernel ``name`` will most likely resolve to, known without
    importing it: for ``auto``, the most preferred installed one (its self-check may still
    fail, and a worker then imports what it lacks on its first task)."""
    if name == AUTO:
        name = next((choice for choice in _PREFERENCE if installed(choice)), "python")
    kernel = _KERNELS.get(name)
    return kernel.worker_modules if kernel else ()


def start_seconds(name: str) -> float:
    """What starting kernel ``name`` cost this process: importing it, compiling it (or
    loading the compiled code from numba's disk cache) and its self-check; 0 before."""
    return _START_SECONDS.get(name, 0.0)


def _log_failure_once(name: str, consequence: str) -> None:
    """Say once per process why an installed kernel failed its self-check (a kernel that is
    not installed was left out on purpose, and says nothing)."""
    reason = _self_check_failure(name)
    if reason in (None, _NOT_INSTALLED) or name in _FAILURES_LOGGED:
        return
    _FAILURES_LOGGED.add(name)
    logger.warning("kernel %r failed its self-check (%s): %s", name, reason, consequence)


@functools.cache
def _self_check_failure(name: str) -> str | None:
    """None if the kernel is installed and gives the reference's output on
    :data:`SELF_CHECK_VALUES` and :data:`SELF_CHECK_LINES`, else why not (once per process;
    it also pays a compiled kernel's start)."""
    if not installed(name):
        return _NOT_INSTALLED
    if name == "python":
        return None
    started = time.perf_counter()
    try:
        return _difference_from_the_reference(name)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        _START_SECONDS[name] = time.perf_counter() - started


def _difference_from_the_reference(name: str) -> str | None:
    """Where the kernel's output differs from the reference's on the self-check's input, or
    None; an exception of the kernel propagates."""
    kernel = _KERNELS[name]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "self_check.txt"
        path.write_bytes(SELF_CHECK_LINES)
        whole_file = ByteRange(str(path), 0, 0, len(SELF_CHECK_LINES))
        if kernel.clean(whole_file) != clean_byte_range(whole_file):
            return "its cleaning differs from the reference's"
    expected = transform_values(SELF_CHECK_VALUES)
    chunk = ValueChunk(0, 1, len(SELF_CHECK_VALUES), array("q", SELF_CHECK_VALUES))
    columns = kernel.transform(chunk)
    for column, arrow_type in TRANSFORMED_TYPES.items():
        if not pa.array(columns[column], arrow_type).equals(pa.array(expected[column], arrow_type)):
            return f"its {column} column differs from the reference's"
    return None
