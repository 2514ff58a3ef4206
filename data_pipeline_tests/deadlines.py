"""A bound for tests whose failure mode is a hang: far above the expected time, it only turns
a hang into a failure."""

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def fails_if_it_hangs(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the block (main thread) once ``seconds`` have passed."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
