"""How many CPUs this process may really use, and how many workers a pool should start."""

import contextlib
import math
import os
import time
from pathlib import Path

# available_cpus() reads a dozen cgroup files (~0.3 ms); a decision per step reuses the count
# for this long (a container's CPU limit changes rarely, and never mid-step here).
CPU_COUNT_MAX_AGE_SECONDS = 60.0
_counted: tuple[float, int] | None = None


def available_cpus(cgroup_root: str | os.PathLike = "/sys/fs/cgroup") -> int:
    """CPUs this process may really use: the smallest of the machine's count, the CPU
    affinity set and the cgroup CPU quota (rounded up). Containers report the host's count
    through ``os.cpu_count()``; the quota is what the scheduler enforces."""
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        counts.append(math.ceil(quota))
    return max(1, min(counts))


def available_cpus_recently(max_age_seconds: float = CPU_COUNT_MAX_AGE_SECONDS) -> int:
    """:func:`available_cpus`, counted at most once every ``max_age_seconds``."""
    global _counted
    now = time.monotonic()
    if _counted is None or now - _counted[0] > max_age_seconds:
        _counted = (now, available_cpus())
    return _counted[1]


def cgroup_cpu_quota(
    cgroup_root: str | os.PathLike = "/sys/fs/cgroup", own_cgroup: str | None = None
) -> float | None:
    """The tightest CPU quota, in CPUs (e.g. 1.5), on this process's cgroup and its
    ancestors, from cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``; None when unlimited.

    ``own_cgroup`` is the process's cgroup path (read from ``/proc/self/cgroup`` when None);
    a container with its own cgroup namespace sees just ``/``.
    """
    root = Path(cgroup_root)
    paths = own_cgroup_paths() if own_cgroup is None else {"v2": own_cgroup, "v1": own_cgroup}
    quotas = []
    for version, base in (("v2", root), ("v2", root / "unified"), ("v1", root / "cpu")):
        relative = Path(paths.get(version, "/").lstrip("/"))
        for directory in [base / relative, *(base / parent for parent in relative.parents)]:
            quota = _read_quota(directory, version)
            if quota is not None:
                quotas.append(quota)
    return min(quotas, default=None)


def own_cgroup_paths(proc_file: str = "/proc/self/cgroup") -> dict[str, str]:
    """This process's cgroup path for v2 (the ``0::`` line) and for v1's cpu controller."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path(proc_file).read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                paths["v2"] = path
            elif "cpu" in controllers.split(","):
                paths["v1"] = path
    return paths


def _read_quota(directory: Path, version: str) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        if version == "v2":
            quota, period = (directory / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    return None


def effective_workers(requested: int | None, chunk_count: int) -> int:
    """Workers to start: the request (or every available CPU), never more than there are
    chunks, never fewer than one."""
    wanted = available_cpus() if requested is None else requested
    return max(1, min(wanted, chunk_count))
