import pytest

from data_pipeline.parallel.progress import Progress


class Recorder:
    def __init__(self):
        self.lines = []

    def info(self, message):
        self.lines.append(message)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run(total_chunks: int, seconds_per_chunk: float) -> list[str]:
    log, clock = Recorder(), FakeClock()
    progress = Progress(log, "transform", total_chunks, "values", clock=clock)
    for _ in range(total_chunks):
        clock.now += seconds_per_chunk
        progress.update(1000)
    return log.lines


def test_a_long_step_logs_about_every_ten_percent():
    lines = run(total_chunks=200, seconds_per_chunk=1.0)
    assert len(lines) == 10
    assert lines[0] == "transform: 20/200 chunks (10%), 1,000 values/s, ETA 180 s"
    assert lines[-1].startswith("transform: 200/200 chunks (100%)")


def test_a_step_with_fast_chunks_logs_every_few_seconds_at_most():
    lines = run(total_chunks=1000, seconds_per_chunk=0.02)  # 20 s in all
    assert 3 <= len(lines) <= 4


@pytest.mark.parametrize(("chunks", "seconds"), [(5, 0.1), (1, 1.0), (0, 1.0)])
def test_a_short_step_stays_quiet(chunks, seconds):
    assert run(chunks, seconds) == []
