"""What every pool does as a context manager: open on entry, close on exit (abort if the block
failed), and time both into its stats."""

import time
from typing import Self

from data_pipeline.parallel.stats import PoolStats


class PoolLife:
    """The base of both pools: subclasses set ``stats`` and give ``_open`` and ``_close``."""

    stats: PoolStats
    _created_at = 0.0

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self, abort: bool) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._created_at = time.monotonic()
        try:
            self._open()
        except BaseException:
            self._close(abort=True)
            raise
        self.stats.startup_seconds = time.monotonic() - self._created_at
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        closing = time.monotonic()
        self._close(abort=exc_type is not None)
        self.stats.shutdown_seconds = time.monotonic() - closing
        self.stats.wall_seconds = time.monotonic() - self._created_at
