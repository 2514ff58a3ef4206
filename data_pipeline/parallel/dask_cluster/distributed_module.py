"""The optional ``dask.distributed`` module, or an error that names the extra to install."""

from typing import Any

DASK_EXTRA = "pip install -e '.[dask]'"


class DaskUnavailableError(ImportError):
    """``backend: dask`` without ``dask.distributed`` installed; the message says how."""


def import_distributed() -> Any:
    """The ``distributed`` module, or an error naming the extra to install."""
    try:
        import distributed
    except ImportError as error:
        raise DaskUnavailableError(
            f"backend 'dask' needs dask.distributed, which is not installed here: {DASK_EXTRA} "
            "(or pip install 'dask[distributed]')"
        ) from error
    return distributed
