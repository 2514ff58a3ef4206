"""The comparison behind team_map.py: the task shapes, the peers' maps as a team calls them,
the interleaved timed runs and the tables. No Dagster here: the asset hands in our pool's map."""

import hashlib
import importlib.util
import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Map = Callable[[Callable[[Any], Any], list], list]

SERIAL = "serial"
OURS = "ours"
# The peers whose best median ours is held against ("for the record" rows are not).
RIVALS = ("joblib", "mpire", "Pool.map")
# ours / best rival, per placement: a team's function should not lose more than this.
GOALS = {"own-module": 0.95, "asset-module": 0.9}


@dataclass(frozen=True)
class Shape:
    """``tasks`` tasks of about ``task_seconds`` each, returning an int or 256 KiB."""

    key: str
    tasks: int
    task_seconds: float
    returns_bytes: bool = False

    def title(self, scale: float) -> str:
        tasks = max(1, round(self.tasks * scale))
        text = f"{tasks:,} x {self.task_seconds * 1000:g} ms"
        return f"{text}, 256 KiB each" if self.returns_bytes else text


SHAPES = (
    Shape("16ms", 200, 0.016),
    Shape("1.6ms", 2_000, 0.0016),
    Shape("0.08ms", 20_000, 0.00008),
    Shape("1.6ms-256KiB", 2_000, 0.0016, returns_bytes=True),
)


@dataclass(frozen=True)
class Placement:
    """Where the task functions are defined: ``spin`` returns an int, ``spin_bytes`` 256 KiB."""

    name: str
    spin: Callable[[tuple[int, int]], int]
    spin_bytes: Callable[[tuple[int, int]], bytes]

    def function(self, shape: Shape) -> Callable[[tuple[int, int]], Any]:
        return self.spin_bytes if shape.returns_bytes else self.spin


@dataclass(frozen=True)
class Strategy:
    name: str
    run: Map


def loops_per_second(spin: Callable[[tuple[int, int]], int]) -> float:
    """This machine's speed for the loop: the best of five timed calls of ~0.1 s each."""
    loops, best = 20_000, float("inf")
    while True:
        started = time.perf_counter()
        spin((1, loops))
        if time.perf_counter() - started >= 0.02:
            break
        loops *= 2
    for seed in range(5):
        started = time.perf_counter()
        spin((seed, loops * 5))
        best = min(best, time.perf_counter() - started)
    return loops * 5 / best


def tasks_of(shape: Shape, loops: int, scale: float) -> list[tuple[int, int]]:
    """(seed, loops) per task; the seed is the task's index."""
    return [(index, loops) for index in range(max(1, round(shape.tasks * scale)))]


def seconds_per_task(function: Callable[[tuple[int, int]], Any], tasks: list) -> float:
    """Measured in this process over ~0.2 s of the shape's tasks."""
    count = max(3, min(len(tasks), round(0.2 / max(1e-6, _guess(function, tasks[0])))))
    started = time.perf_counter()
    for task in tasks[:count]:
        function(task)
    return (time.perf_counter() - started) / count


def _guess(function: Callable[[tuple[int, int]], Any], task: tuple[int, int]) -> float:
    started = time.perf_counter()
    function(task)
    return time.perf_counter() - started


def calibrated_tasks(
    shapes: Sequence[Shape],
    placements: Sequence[Placement],
    scale: float,
    say: Callable[[str], None],
) -> dict[str, list[tuple[int, int]]]:
    """Each shape's tasks, their loops set by this machine's speed and then corrected by timed
    samples of the shape's own tasks; says the time per task measured with each placement's
    function."""
    speed = loops_per_second(placements[0].spin)
    say(f"Calibrated: {speed / 1e6:.2f} million loops/s in this process")
    tasks = {}
    for shape in shapes:
        loops = max(1, round(shape.task_seconds * speed))
        # Twice: the first sample of 256 KiB results also pays the allocator's first pages.
        for _ in range(2):
            sample = tasks_of(shape, loops, scale)
            measured = seconds_per_task(placements[0].function(shape), sample)
            loops = max(1, round(loops * shape.task_seconds / measured))
        tasks[shape.key] = tasks_of(shape, loops, scale)
        per_task = ", ".join(
            f"{p.name} {seconds_per_task(p.function(shape), tasks[shape.key]) * 1e3:.3f} ms"
            for p in placements
        )
        say(f"  {shape.title(scale)}: {loops:,} loops; per task {per_task}")
    return tasks


# The maps as a team writes them: each creates its pool inside the call, with the library's
# defaults (joblib reuses its loky workers across calls: that is joblib, and it is kept).


def serial(function: Callable, tasks: list) -> list:
    return [function(task) for task in tasks]


def joblib_map(workers: int) -> Map:
    from joblib import Parallel, delayed

    def run(function: Callable, tasks: list) -> list:
        return Parallel(n_jobs=workers)(delayed(function)(task) for task in tasks)

    return run


def mpire_map(workers: int) -> Map:
    from mpire import WorkerPool

    def run(function: Callable, tasks: list) -> list:
        # mpire unpacks a tuple task into arguments: a 1-tuple is its way to pass one whole.
        with WorkerPool(n_jobs=workers) as pool:
            return pool.map(function, [(task,) for task in tasks])

    return run


def pool_map(workers: int) -> Map:
    def run(function: Callable, tasks: list) -> list:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(function, tasks)

    return run


def executor_map(workers: int) -> Map:
    def run(function: Callable, tasks: list) -> list:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=context) as executor:
            return list(executor.map(function, tasks))

    return run


def strategies(ours: Map, workers: int, say: Callable[[str], None]) -> list[Strategy]:
    """Serial first (the reference of the first repeat), then ours and every installed peer;
    a peer that is not installed is skipped with a line saying how to install it."""
    chosen = [Strategy(SERIAL, serial), Strategy(OURS, ours)]
    for name, module, make in (("joblib", "joblib", joblib_map), ("mpire", "mpire", mpire_map)):
        if importlib.util.find_spec(module) is None:
            say(
                f"{name} is not installed: skipped (pip install {module}, or "
                "pip install -e '.[bench]')"
            )
        else:
            chosen.append(Strategy(name, make(workers)))
    chosen.append(Strategy("Pool.map", pool_map(workers)))
    chosen.append(Strategy("Executor", executor_map(workers)))
    return chosen


def fingerprint(results: list) -> list:
    """Results as compared: 256 KiB results by digest, so two lists of them fit in memory."""
    return [
        hashlib.blake2b(result, digest_size=16).digest() if isinstance(result, bytes) else result
        for result in results
    ]


class ResultsDifferError(AssertionError):
    pass


@dataclass
class Comparison:
    """Every timed run: (placement, shape key, strategy) -> seconds, in run order."""

    shapes: Sequence[Shape]
    placements: Sequence[str]
    strategies: Sequence[str]
    scale: float
    seconds: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)

    def median(self, placement: str, shape: str, strategy: str) -> float:
        return statistics.median(self.seconds[placement, shape, strategy])

    def speedups(self, placement: str, shape: str, strategy: str) -> list[float]:
        """Serial's median over each of the strategy's runs."""
        reference = self.median(placement, shape, SERIAL)
        return [reference / run for run in self.seconds[placement, shape, strategy]]

    def ratio(self, placement: str, shape: str) -> tuple[float, str]:
        """Ours' median speedup over the best rival's, and that rival."""
        rivals = [name for name in self.strategies if name in RIVALS]
        best = min(rivals, key=lambda name: self.median(placement, shape, name))
        return self.median(placement, shape, best) / self.median(placement, shape, OURS), best

    def markdown(self, placement: str) -> str:
        others = [name for name in self.strategies if name != SERIAL]
        goal = GOALS[placement]
        header = ["shape", "serial median", *others, "ours / best peer", f"goal >= {goal}"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for shape in self.shapes:
            cells = [shape.title(self.scale), f"{self.median(placement, shape.key, SERIAL):.2f} s"]
            for name in others:
                runs = self.speedups(placement, shape.key, name)
                median = self.median(placement, shape.key, SERIAL) / self.median(
                    placement, shape.key, name
                )
                cells.append(f"{median:.2f}x ({min(runs):.2f}-{max(runs):.2f})")
            ratio, best = self.ratio(placement, shape.key)
            cells += [f"{ratio:.2f} (vs {best})", "MET" if ratio >= goal else "MISSED"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def compare(
    shapes: Sequence[Shape],
    placements: Sequence[Placement],
    chosen: Sequence[Strategy],
    tasks: dict[str, list[tuple[int, int]]],
    repeats: int,
    scale: float,
    say: Callable[[str], None],
) -> Comparison:
    """Every strategy on every shape and placement, ``repeats`` times, interleaved: per
    repeat, per shape, per placement (order alternating), the strategies in an order rotated
    by one each repeat. Nothing is warmed up: first runs count. Every run's results must
    equal serial's, in order, else :class:`ResultsDifferError`."""
    comparison = Comparison(shapes, [p.name for p in placements], [s.name for s in chosen], scale)
    reference: dict[str, list] = {}  # shape key -> serial's fingerprint
    for repeat in range(repeats):
        rotated = [*chosen[repeat % len(chosen) :], *chosen[: repeat % len(chosen)]]
        in_order = placements if repeat % 2 == 0 else list(reversed(placements))
        for shape in shapes:
            for placement in in_order:
                function = placement.function(shape)
                for strategy in rotated:
                    started = time.perf_counter()
                    results = strategy.run(function, tasks[shape.key])
                    seconds = time.perf_counter() - started
                    key = (placement.name, shape.key, strategy.name)
                    comparison.seconds.setdefault(key, []).append(seconds)
                    say(
                        f"repeat {repeat + 1}/{repeats}, {shape.title(scale)}, "
                        f"{placement.name}, {strategy.name}: {seconds:.3f} s"
                    )
                    found = fingerprint(results)
                    del results
                    if strategy.name == SERIAL and shape.key not in reference:
                        reference[shape.key] = found
                    _check(found, reference[shape.key], key)
    return comparison


def _check(found: list, expected: list, key: tuple[str, str, str]) -> None:
    if found == expected:
        return
    placement, shape, strategy = key
    where = f"{strategy} ({placement}, shape {shape})"
    if len(found) != len(expected):
        raise ResultsDifferError(f"{where}: {len(found)} results, serial gave {len(expected)}")
    first = next(i for i, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b)
    raise ResultsDifferError(f"{where}: result {first} differs from serial's (wrong or reordered)")
