"""The CPU budget: how many steps run at once and how many workers each pool gets, so that
steps x workers never exceeds the CPUs the pipeline may use."""

import os
from collections.abc import Mapping
from dataclasses import dataclass

from data_pipeline.parallel.cpus import available_cpus

# Read when the definitions load (so set them for `dagster dev`, the daemon and `dagster job
# execute` alike). CPUs the pipeline may use (default: every CPU available to it, affinity and
# cgroup quota aware; a larger value is capped there):
CPUS_VARIABLE = "DATA_PIPELINE_CPUS"
# Steps of a run that may execute at the same time, pooled or not (default 1); each pool gets
# the CPUs divided by this many workers:
STEPS_VARIABLE = "DATA_PIPELINE_STEPS_AT_ONCE"

# Native thread pools in workers are capped to one thread each (see child_processes.py), so a
# worker is one busy CPU at most.


@dataclass(frozen=True)
class CpuPlan:
    cpus_available: int
    cpus: int
    steps_at_once: int
    workers_per_step: int

    @property
    def processes(self) -> int:
        """Busy processes at most: pooled steps at once times their workers."""
        return self.steps_at_once * self.workers_per_step

    def __str__(self) -> str:
        return (
            f"CPU plan: {self.steps_at_once} step(s) at once x {self.workers_per_step} "
            f"worker(s) per pool = {self.processes} of a budget of {self.cpus} CPU(s) "
            f"({self.cpus_available} available; set {CPUS_VARIABLE} and {STEPS_VARIABLE} "
            "to change)"
        )


def cpu_plan(environ: Mapping[str, str] = os.environ, cpus_available: int | None = None) -> CpuPlan:
    """The plan for this machine and environment; bad values fail naming the variable."""
    available = available_cpus() if cpus_available is None else cpus_available
    cpus = min(_positive(environ, CPUS_VARIABLE, available), available)
    steps = min(_positive(environ, STEPS_VARIABLE, 1), cpus)
    return CpuPlan(
        cpus_available=available,
        cpus=cpus,
        steps_at_once=steps,
        workers_per_step=max(1, cpus // steps),
    )


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={text!r}: expected a whole number of at least 1")
    return value
