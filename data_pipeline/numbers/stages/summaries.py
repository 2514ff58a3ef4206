"""What each stage reports once its output is written: counts, its pool run (the decision and
the pool's statistics) and the SHA-256 of every file it wrote."""

from collections import Counter
from dataclasses import dataclass, field

from data_pipeline.numbers.parsing import CleanedChunk
from data_pipeline.parallel.decision import Decision
from data_pipeline.parallel.pool_run import PoolRun
from data_pipeline.parallel.stats import PoolStats


@dataclass
class StepSummary:
    """What every pooled step keeps: its chunks, the run (decision and pool statistics) and
    the SHA-256 of each file written, by digest_key (storage.py)."""

    chunks: int = 0
    run: PoolRun | None = None
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def pool(self) -> PoolStats | None:
        return self.run.stats if self.run else None

    @property
    def decision(self) -> Decision | None:
        return self.run.decision if self.run else None


@dataclass
class CleaningSummary(StepSummary):
    """Counts of one cleaning run; filled in while the batches stream past."""

    lines: int = 0
    accepted: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    # The first line (from 1) rejected for each reason, to show the user where to look.
    first_line_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    def note_rejections(self, chunk: CleanedChunk, first_line_number: int) -> None:
        """Count a chunk's rejected lines by reason, keeping the first line of each."""
        self.rejected_by_reason.update(chunk.rejected_reasons)
        for position, reason in zip(chunk.rejected_positions, chunk.rejected_reasons, strict=True):
            self.first_line_by_reason.setdefault(reason, first_line_number + position)


@dataclass
class TransformSummary(StepSummary):
    """Rows of one transform run."""

    rows: int = 0
