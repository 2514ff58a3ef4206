"""The comparison in words and in a table. The verdict names only causes that were measured:
each sentence quotes a figure of this comparison, never a guess about the input."""

from data_pipeline.measure.comparison import Comparison, StageComparison

# At or above this speedup the pool was worth its processes.
PAYS_OFF_SPEEDUP = 1.2
# An overhead is worth a sentence from this share of the parallel time on.
NOTABLE_SHARE = 0.10
# Worth a sentence when the workers needed this much more CPU time than one process.
NOTABLE_CONTENTION = 1.10


def headline(comparison: Comparison) -> str:
    """The answer in a few words, for the first line a person reads, e.g. '1.95x faster on 2
    of 2 CPUs, outputs identical' (the comparison fails before this when they differ)."""
    on = f"on {comparison.workers} of {comparison.cpus_available} CPUs, outputs identical"
    if comparison.workers == 1:
        return "Nothing ran in parallel (one chunk or one worker): no speedup to report"
    speedup = comparison.speedup
    if speedup >= 1.0:
        return f"{speedup:.2f}x faster {on}"
    return f"{1 / speedup:.2f}x slower {on}"


def cpu_wait_share(comparison: Comparison) -> float:
    """The workers' share of time in tasks spent off the CPU, both stages, weighted by each
    stage's parallel time."""
    parallel = comparison.parallel_seconds
    if not parallel:
        return 0.0
    return sum(stage.cpu_wait_share * stage.parallel_seconds for stage in comparison.stages) / (
        parallel
    )


# The comparison as rows of a table: one per stage and run, as the UI renders it inline
# (narrow enough for the UI's metadata column: the verdict below it is not clipped).
COMPARISON_COLUMNS = (
    ("stage", "string", "cleaning, transform, or both"),
    ("run", "string", "serial (one process) or pool"),
    ("median_s", "float", "median seconds over the repeats"),
    ("range_s", "string", "fastest-slowest run, seconds"),
    ("speedup", "string", "median serial over median pool"),
    ("cpu_wait", "string", "share of the workers' task time spent off the CPU"),
)


def comparison_rows(comparison: Comparison) -> list[dict[str, object]]:
    """The figures of :data:`COMPARISON_COLUMNS`, seconds to two decimals."""
    sides = [
        (stage.name, run, measurement.seconds.median, measurement.seconds.minimum,
         measurement.seconds.maximum, stage.speedup, stage.cpu_wait_share)
        for stage in comparison.stages
        for run, measurement in (("serial", stage.serial), ("pool", stage.parallel))
    ]  # fmt: skip
    sides += [
        ("both", run, seconds, _total_of(comparison, run, min),
         _total_of(comparison, run, max), comparison.speedup, cpu_wait_share(comparison))
        for run, seconds in (("serial", comparison.serial_seconds),
                             ("pool", comparison.parallel_seconds))
    ]  # fmt: skip
    return [
        {
            "stage": stage,
            "run": run,
            "median_s": round(median, 2),
            "range_s": f"{fastest:.2f}-{slowest:.2f}",
            "speedup": f"{speedup:.2f}x" if run == "pool" else "",
            "cpu_wait": f"{wait:.0%}" if run == "pool" else "",
        }
        for stage, run, median, fastest, slowest, speedup, wait in sides
    ]


def _total_of(comparison: Comparison, run: str, pick) -> float:
    """The fastest (``min``) or slowest (``max``) repeat of both stages together."""
    side = "serial" if run == "serial" else "parallel"
    return pick(_totals_by_repeat(getattr(stage, side) for stage in comparison.stages))


def verdict(comparison: Comparison) -> str:
    """A headline (did the pool pay off, by how much, over how many runs) followed by the
    measured causes that weighed most, largest first."""
    if comparison.workers == 1:
        return _single_worker_verdict(comparison)
    speedup = comparison.speedup
    runs = f"{comparison.kernel} kernel, median of {comparison.repeats} runs each"
    if speedup >= PAYS_OFF_SPEEDUP:
        headline = (
            f"Parallelism paid off: {speedup:.2f}x faster on {comparison.workers} workers "
            f"({comparison.efficiency:.0%} efficiency; {runs})."
        )
    elif speedup >= 1.0:
        headline = (
            f"Parallelism did not pay off: only {speedup:.2f}x faster on "
            f"{comparison.workers} workers ({runs})."
        )
    else:
        headline = (
            f"Parallelism did not pay off: the pool was {1 / speedup:.2f}x slower than one "
            f"process on {comparison.workers} workers ({runs})."
        )
    fixed_costs = fixed_cost_sentence(comparison)
    sentences = [headline, *([fixed_costs] if fixed_costs else []), *_causes(comparison)]
    if _within_noise(comparison):
        sentences.append(
            "The serial and parallel run times overlap from run to run, so the difference is "
            "within this machine's noise."
        )
    return " ".join(sentences)


def fixed_cost_sentence(comparison: Comparison) -> str | None:
    """Whether the pools' fixed costs (start-up and shutdown) outweighed the work, or the work
    the pool saved; None when they did not (or nothing ran in parallel).

    The work is the serial side's median time (both stages, one process, kernel warm); the
    work saved is that time less the pool's time apart from its fixed costs. Fixed costs
    outweigh the work when they alone take at least the serial time (no number of workers
    could win at this size); they outweigh the work saved when the pool did the work faster
    but was slower in all (fixed costs above the saving)."""
    if comparison.workers == 1:
        return None
    fixed, serial = comparison.pool_fixed_seconds, comparison.serial_seconds
    work_on_pool = comparison.pool_work_seconds
    if fixed > 0 and fixed >= serial:
        return (
            f"Fixed costs outweigh the work: starting and stopping the pools took {fixed:.2f} s, "
            f"at least the {serial:.2f} s the whole work took in one process, so no number of "
            "workers could be faster at this size."
        )
    if comparison.parallel_seconds > serial and work_on_pool < serial:
        return (
            f"Fixed costs outweigh the work saved: the pool did the work in {work_on_pool:.2f} s "
            f"against {serial:.2f} s in one process, saving {serial - work_on_pool:.2f} s, but "
            f"starting and stopping the pools took {fixed:.2f} s."
        )
    return None


def _single_worker_verdict(comparison: Comparison) -> str:
    if comparison.requested_workers == 1:
        reason = "the pool is set to one worker (workers=1, or one CPU available)"
    else:
        chunks = max(stage.chunks for stage in comparison.stages)
        reason = (
            f"the input made {chunks} chunk{'s' if chunks != 1 else ''} per stage at most, "
            "and a pool never starts more workers than chunks"
        )
    return (
        f"Nothing ran in parallel: {reason}, so both runs were serial and there is no "
        "speedup to report."
    )


def _causes(comparison: Comparison) -> list[str]:
    """Measured figures that explain the result, weightiest first."""
    parallel = comparison.parallel_seconds
    weighed: list[tuple[float, str]] = []
    startup = comparison.total("startup_seconds")
    if parallel and startup / parallel >= NOTABLE_SHARE:
        weighed.append(
            (
                startup / parallel,
                f"Starting the pools took {startup:.2f} s, {startup / parallel:.0%} of the "
                "parallel time.",
            )
        )
    idle = comparison.total("idle_seconds")
    if parallel and idle / parallel >= NOTABLE_SHARE:
        weighed.append(
            (
                idle / parallel,
                f"Workers sat idle for {idle / parallel:.0%} of the parallel time (waiting for "
                "tasks and results to move, or for the slowest worker).",
            )
        )
    for stage in comparison.stages:
        if stage.workers == 1:
            continue
        if stage.cpu_wait_share >= NOTABLE_SHARE:
            weighed.append(
                (
                    stage.cpu_wait_share,
                    f"In the {stage.name}, the workers were off the CPU "
                    f"{stage.cpu_wait_share:.0%} of their time in tasks (waiting for a CPU "
                    "that other processes held, or for the disk).",
                )
            )
        if stage.cpu_contention >= NOTABLE_CONTENTION:
            weighed.append(
                (
                    stage.cpu_contention - 1,
                    f"In the {stage.name}, the workers needed {stage.cpu_contention - 1:.0%} "
                    "more CPU time than one process for the same work, so each CPU got less "
                    "done while both were busy.",
                )
            )
        elif 0 < stage.cpu_contention <= 1 / NOTABLE_CONTENTION:
            extra = 1 / stage.cpu_contention - 1
            weighed.append(
                (
                    extra,
                    f"In the {stage.name}, the serial runs needed {extra:.0%} more CPU time "
                    "than the workers for the same work: the serial baseline was slowed down, "
                    "so this stage's speedup overstates what the pool gained.",
                )
            )
    causes = [sentence for _, sentence in sorted(weighed, key=lambda pair: -pair[0])]
    return causes + [_stage_sentence(stage) for stage in comparison.stages if _stands_out(stage)]


def _stands_out(stage: StageComparison) -> bool:
    return stage.workers > 1 and stage.speedup < PAYS_OFF_SPEEDUP


def _stage_sentence(stage: StageComparison) -> str:
    per_item = stage.serial_microseconds_per_item
    cost = f" (serially {per_item:.1f} µs per item)" if per_item is not None else ""
    if stage.speedup >= 1.0:
        return f"The {stage.name} alone was only {stage.speedup:.2f}x faster on the pool{cost}."
    return f"The {stage.name} alone was {1 / stage.speedup:.2f}x slower on the pool{cost}."


def _within_noise(comparison: Comparison) -> bool:
    """Whether the ranges of the serial and the parallel totals (both stages, repeat by
    repeat) overlap: then neither side was reliably faster."""
    serial = _totals_by_repeat(stage.serial for stage in comparison.stages)
    parallel = _totals_by_repeat(stage.parallel for stage in comparison.stages)
    return min(serial) <= max(parallel) and min(parallel) <= max(serial)


def _totals_by_repeat(measurements) -> list[float]:
    return [sum(values) for values in zip(*(m.seconds.values for m in measurements), strict=True)]


def markdown_table(comparison: Comparison) -> str:
    """The comparison as a Markdown table a person reads at a glance, then the verdict."""
    rows = [
        "| stage | items | serial s | parallel s | speedup | efficiency | pool start s "
        "| compute s | worker idle s | shutdown s | parent collect s | CPU contention "
        "| waiting for CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows += [
        (
            f"| {stage.name} | {stage.items:,} | {_spread(stage.serial)} "
            f"| {_spread(stage.parallel)} | {stage.speedup:.2f}x | {stage.efficiency:.0%} "
            f"| {stage.pool_median('startup_seconds'):.2f} "
            f"| {stage.pool_median('compute_seconds'):.2f} "
            f"| {stage.pool_median('idle_seconds'):.2f} "
            f"| {stage.pool_median('shutdown_seconds'):.2f} "
            f"| {stage.pool_median('collect_seconds'):.2f} | {stage.cpu_contention:.2f}x "
            f"| {stage.cpu_wait_share:.0%} |"
        )
        for stage in comparison.stages
    ]
    rows.append(
        f"| **total** | | **{comparison.serial_seconds:.2f}** "
        f"| **{comparison.parallel_seconds:.2f}** | **{comparison.speedup:.2f}x** "
        f"| **{comparison.efficiency:.0%}** | {comparison.total('startup_seconds'):.2f} "
        f"| {comparison.total('compute_seconds'):.2f} | {comparison.total('idle_seconds'):.2f} "
        f"| {comparison.total('shutdown_seconds'):.2f} "
        f"| {comparison.total('collect_seconds'):.2f} | | |"
    )
    notes = (
        f"Times are medians of {comparison.repeats} runs each (fastest-slowest in brackets), "
        "serial and parallel alternating, after an untimed warm-up of both; outputs were "
        "compared after each run, outside the timed region. Parallel time = pool start + "
        "compute + worker idle + shutdown (the parent's collecting overlaps the compute). CPU "
        "contention above 1.00x means the workers together needed more CPU time than one "
        "process for the same work; waiting for CPU is the share of their time other "
        "processes held the CPUs."
    )
    return "\n".join(rows) + f"\n\n{verdict(comparison)}\n\n{notes}\n"


def _spread(measurement) -> str:
    seconds = measurement.seconds
    return f"{seconds.median:.2f} ({seconds.minimum:.2f}-{seconds.maximum:.2f})"
