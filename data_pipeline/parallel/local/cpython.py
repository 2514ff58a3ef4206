"""The local pool's only reliance on CPython's internals, where ``concurrent.futures`` offers
no public API: a worker's traceback, and the executor's worker processes."""

from multiprocessing.process import BaseProcess
from typing import Any

# The class concurrent.futures.process uses for the traceback it attaches (test_cpython_ground
# pins that it still does, on the running Python).
_REMOTE_TRACEBACK_CLASS = "_RemoteTraceback"


def remote_traceback(error: BaseException, label: str = "Worker traceback") -> str:
    """The traceback the executor attached as ``error``'s cause, after ``label``; "" if none.

    The executor attaches a worker's traceback as the ``__cause__`` of the error it raises in
    this process, an instance of its private ``_RemoteTraceback``: there is no public name for
    that class and no other way to reach the text, so it is recognised by its class name.
    """
    cause = error.__cause__
    if cause is not None and type(cause).__name__ == _REMOTE_TRACEBACK_CLASS:
        return f"\n{label}:{cause}"
    return ""


class RecordingContext:
    """A multiprocessing context that keeps every process the executor creates from it;
    everything else goes to the real one.

    The executor keeps its workers in a private table (``_processes``) and offers no public
    way to list them, but it creates each one by calling ``mp_context.Process(...)`` on the
    context it was given (test_cpython_ground pins that it still does): recording those calls
    gives every worker's pid, exit code and sentinel.
    """

    def __init__(self, context: Any):
        self._context = context
        self.processes: list[BaseProcess] = []

    def Process(self, *args: Any, **kwargs: Any) -> BaseProcess:
        process = self._context.Process(*args, **kwargs)
        self.processes.append(process)
        return process

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)
