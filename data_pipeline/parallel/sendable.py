"""Whether a function can reach pool workers, and the directories workers need on
``sys.path`` to import it."""

import functools
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

_WHAT_TO_DO = (
    "define it with `def` at the top level of a module that the workers can import (a module "
    "of your package or code location), then pass that function"
)


class NotSendableError(TypeError):
    """The function cannot reach pool workers (a lambda, a closure, a function of __main__)."""


def check_sendable(function: Callable[..., Any]) -> None:
    """Refuse, before any worker starts, a function that workers could not unpickle."""
    target = function
    while isinstance(target, functools.partial):
        target = target.func
    name = getattr(target, "__qualname__", type(target).__qualname__)
    module = getattr(target, "__module__", None)
    if "<lambda>" in name:
        reason = "is a lambda: workers receive a function by module and name, and it has none"
    elif "<locals>" in name:
        reason = "is defined inside another function, which workers cannot import"
    elif module == "__main__":
        reason = "is defined in __main__ (the running script or notebook), which workers lack"
    else:
        try:
            pickle.dumps(function)
            return
        except Exception as error:
            reason = f"cannot be pickled ({type(error).__name__}: {error})"
    raise NotSendableError(f"{name} {reason}: {_WHAT_TO_DO}")


def import_paths_of(*objects: Any) -> tuple[str, ...]:
    """Directories that the modules of ``objects`` import from under their own names but that
    are not on ``sys.path`` now. Dagster puts a code location's working directory on
    ``sys.path`` only while it loads the location, so workers would not find its modules."""
    on_path = {os.path.abspath(entry or os.curdir) for entry in sys.path}
    paths: list[str] = []
    for target in objects:
        while isinstance(target, functools.partial):
            target = target.func
        name = getattr(target, "__module__", None) or type(target).__module__
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if module is None or not file:
            continue
        root = Path(file).resolve().parent
        depth = name.count(".") + (Path(file).name == "__init__.py")
        for _ in range(depth):
            root = root.parent
        if str(root) not in on_path and str(root) not in paths:
            paths.append(str(root))
    return tuple(paths)
