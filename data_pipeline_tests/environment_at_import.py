"""Records, when first imported, the native thread limits in the environment and which process
imported it: preloaded by a fork server, or imported by a spawned worker."""

import os

THREAD_LIMITS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)
IMPORTED_BY = os.getpid()
LIMITS_AT_IMPORT = {name: os.environ.get(name) for name in THREAD_LIMITS}


def seen_at_import(_: object) -> dict:
    return {"imported_by": IMPORTED_BY, "worker": os.getpid(), "limits": LIMITS_AT_IMPORT}
