"""What past runs of a kind of step, at about a size, took over what ``auto``'s model predicted
(:class:`Corrections`): the median of these corrects the model, per choice."""

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any

# A second choice predicted within this factor of the first is run (twice) to measure it.
CLOSE_SECOND = 1.25
# Each mode's ratios kept per kind of step and size: the median of these corrects the model.
KEPT_RATIOS = 5
# A mode not run in this many runs at a size has its lessons forgotten: a lesson taught by a
# few slow runs on a loaded machine must not keep a choice from being tried again for ever.
FORGET_AFTER = 10


@dataclass(frozen=True)
class Corrections:
    """What past runs of this kind of step, at about this size, took: per mode, the time per
    item each run observed, and that time over the model's prediction (1.0: as predicted).
    Once both modes have run at this size, auto compares their medians directly: the sample
    each prediction starts from varies by 20 % from run to run on a shared machine, the
    median of a few whole runs much less. Until then the median ratio corrects the model (it
    cannot sample everything: workers slowing each other, pages touched the first time, a
    sample's batches costing more per item than the whole), and what it misses changes with
    the size."""

    size_class: int = 0
    serial_ratios: tuple[float, ...] = ()
    parallel_ratios: tuple[float, ...] = ()
    serial_seconds_per_item: tuple[float, ...] = ()
    parallel_seconds_per_item: tuple[float, ...] = ()
    # Threads, where ``auto`` weighs them beside processes (a kernel that releases the GIL).
    threads_ratios: tuple[float, ...] = ()
    threads_seconds_per_item: tuple[float, ...] = ()
    # The modes the last :data:`FORGET_AFTER` runs took, oldest first.
    recent_choices: tuple[str, ...] = ()

    def ratios(self, mode: str) -> tuple[float, ...]:
        return getattr(self, f"{mode}_ratios")

    def runs(self, mode: str) -> int:
        return len(self.ratios(mode))

    def factor(self, mode: str) -> float:
        """The median of ``mode``'s recent ratios (1.0 before any run of it)."""
        ratios = self.ratios(mode)
        return statistics.median(ratios) if ratios else 1.0

    def observed_seconds(self, mode: str, items: int) -> float | None:
        """``items`` at the median time per item that runs of ``mode`` took here (None before
        any)."""
        per_item = getattr(self, f"{mode}_seconds_per_item")
        return items * statistics.median(per_item) if per_item else None

    def after(self, decision: Any, observed_seconds: float) -> "Corrections":
        """With what this run of ``decision`` (a :class:`~.decision.Decision`) observed (the
        last :data:`KEPT_RATIOS` runs)."""
        mode = decision.choice
        predicted_seconds = getattr(decision, f"predicted_{mode}_seconds")
        if not predicted_seconds or observed_seconds <= 0 or not decision.items:
            return self
        # The model's own time for this run (without what past runs corrected).
        if decision.model_seconds is not None:
            model_seconds = decision.model_seconds[0 if mode == "serial" else 1]
        else:
            model_seconds = predicted_seconds / (decision.corrections or Corrections()).factor(mode)
        ratio = min(max(observed_seconds / model_seconds, 0.25), 4.0)
        per_item = observed_seconds / decision.items
        return dataclasses.replace(
            self,
            **{
                f"{mode}_ratios": (*self.ratios(mode), round(ratio, 4))[-KEPT_RATIOS:],
                f"{mode}_seconds_per_item": (
                    *getattr(self, f"{mode}_seconds_per_item"),
                    float(f"{per_item:.4g}"),
                )[-KEPT_RATIOS:],
                "recent_choices": (*self.recent_choices, mode)[-FORGET_AFTER:],
            },
        )

    def stale(self, mode: str) -> bool:
        """Whether ``mode`` ran here before but not in the last :data:`FORGET_AFTER` runs."""
        return (
            self.runs(mode) > 0
            and len(self.recent_choices) >= FORGET_AFTER
            and mode not in self.recent_choices
        )

    def without_stale(self) -> "Corrections":
        """These lessons with every :meth:`stale` mode's forgotten: the model predicts it
        again, and a close second is run again to measure it."""
        forgotten = {
            field: ()
            for mode in ("serial", "parallel", "threads")
            if self.stale(mode)
            for field in (f"{mode}_ratios", f"{mode}_seconds_per_item")
        }
        return dataclasses.replace(self, **forgotten) if forgotten else self

    def untried(self, mode: str, times_the_chosen: float) -> bool:
        """Whether ``mode``, predicted to take ``times_the_chosen`` the chosen mode's time, is
        close enough to be worth runs that measure it: twice, within :data:`CLOSE_SECOND`
        (a near tie rests on more than one noisy run). Further off, the runs of the chosen
        mode correct its prediction, and if it was wrong the two come close."""
        return times_the_chosen <= CLOSE_SECOND and self.runs(mode) < 2
